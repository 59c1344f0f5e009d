"""Shared face geometry: the project's 3DMM on the MediaPipe mesh (model.py, built by
build_model.py), the scaled orthographic camera (camera.py), the mesh topology (topology.py),
3DMM fitting (fitting.py) and the approximate dense flow of HDTF §4.2 (flow.py)."""
