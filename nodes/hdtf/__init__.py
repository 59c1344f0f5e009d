"""HDTF (Zhang et al., CVPR 2021): the style-specific animation generator (§4.1) and the
flow-guided video generator (§4.2), their trainers and nodes."""
