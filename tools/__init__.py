"""Offline tools: they build or describe the project's assets and figures; nothing at run time imports them."""
