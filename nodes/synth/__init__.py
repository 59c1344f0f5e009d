"""The synthetic talking-face generator (DESIGN §5): espeak-ng speech, visemes, motion, rendering, datasets."""
