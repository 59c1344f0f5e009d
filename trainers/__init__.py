"""Training infrastructure shared by every learned node: one loop, shared losses and
discriminators, and datasets over the project's Zarr dataset layout."""
