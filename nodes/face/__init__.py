"""Shared face geometry and its nodes.

- landmarks.py / landmark_nodes.py: MediaPipe face mesh (DetectLandmarks, DrawLandmarks)
- crop.py / crop_nodes.py: the HDTF fixed per-video crop (CropAlign, PasteBack)
- model.py (built offline by tools/build_face_model.py), model_nodes.py: the project's 3DMM on the MediaPipe mesh
- camera.py: the scaled orthographic camera; topology.py: mesh topology and operators
- fitting.py / fit_nodes.py: Fit3DMM (HDTF eq. 2)
- raster.py, flow.py / flow_nodes.py: DenseFlowBuilder (HDTF §4.2's F_app)
"""
