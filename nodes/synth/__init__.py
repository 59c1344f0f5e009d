"""The synthetic talking-face generator (docs/nodes/synth.md): espeak-ng speech, visemes, motion, rendering, datasets."""
