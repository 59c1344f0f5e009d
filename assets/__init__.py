"""talkgraph's bundled data: sample inputs, the project's 3DMM and the checkpoints its trainers
made (each folder with a MANIFEST.json: sha256, how it was made). Shipped as package data, so
code finds these files through importlib.resources (nodes/bundled.py), in a checkout and in an
installed wheel alike."""
