"""Rule-based lip sync (phonemes -> visemes -> 3DMM mouth) and the lip-sync evaluation."""
