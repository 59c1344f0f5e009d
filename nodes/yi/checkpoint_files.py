"""The Yi et al. checkpoints shipped in assets/ (no torch here: the nodes module reads it when
nodes are listed, to name the bundled file each node falls back to)."""
AUDIO_ARCH, GAN_ARCH = "yi_audio_exp_pose", "yi_memory_gan"  # audio_to_exp_pose.ARCH, memory_gan.ARCH
BUNDLED = {
    AUDIO_ARCH: "assets/checkpoints/yi/audio_exp_pose_tiny.pt",
    GAN_ARCH: "assets/checkpoints/yi/memory_gan_tiny.pt",
}
