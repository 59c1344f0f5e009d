"""Shared pieces of the lip-sync tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def assert_rests_in_silence(method: str, cache_dir: Path, max_openness: float, max_motion: float) -> dict[str, Any]:
    """3 s of digital silence through a benchmark method (nodes/lipsync/benchmark.py) gives a closed,
    still mouth: openness (0 = its 5th-percentile lip gap while speaking, 1 = its 95th) below
    `max_openness`, and the gap's spread below `max_motion` of its speaking range."""
    from nodes.lipsync import benchmark as B

    got = B.silence_check([method], cache_dir=cache_dir)[method]
    assert got["silence_openness"] < max_openness, got
    assert got["silence_std"] < max_motion * (got["speech_p95"] - got["speech_p5"]), got  # and still
    return got
