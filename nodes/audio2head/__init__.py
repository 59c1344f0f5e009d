"""Audio2Head (Wang et al., IJCAI 2021): head motion predictor, motion field generator, and
the FOMM keypoint detector / renderer it builds on. See docs/audio2head.md."""
