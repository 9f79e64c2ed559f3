"""The names of the engine's model files: dlib's `.dat` files (face_recognition_models) and what
onnx_convert.py makes of them. Constants only, so the loader (models.py) and the converter share
them without importing each other."""
from __future__ import annotations

SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
DESCRIPTOR_ONNX = "dlib_face_recognition_resnet_model_v1.onnx"
MMOD_ONNX, MMOD_OPTIONS = "mmod_human_face_detector.onnx", "mmod_human_face_detector.json"
HOG_DETECTOR = "frontal_face_detector.svm"  # dlib's HOG detector saved once: loads in 1 ms, not 250
