"""Yi et al., "Audio-driven Talking Face Video Generation with Natural Head Pose" (2020):
audio -> expression + pose (§3.2), 3DMM rendering with background matching (§3.3), the
memory-augmented GAN that refines rendered frames (§3.4), the HS head-pose metric (§4.4)."""
