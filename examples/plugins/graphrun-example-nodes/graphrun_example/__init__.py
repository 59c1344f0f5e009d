"""Example graphrun node plugin (see docs/custom-nodes.md)."""
