"""dlib models, loaded lazily once per process from the `face_recognition_models` package."""
from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path

import dlib

from shared.config import MODELS_DIR_ENV

SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"


@cache
def models_dir() -> Path:
    """Where the .dat files are: $LAMBDAFACE_MODELS_DIR, else face_recognition_models/models/.

    The package is located without importing it: its __init__ needs pkg_resources.
    """
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face_recognition_models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_path(name: str) -> str:
    """The path of one model file, checked to exist."""
    path = models_dir() / name
    if not path.is_file():
        raise RuntimeError(f"model file {path} is missing")
    return str(path)


@cache
def hog_detector() -> "dlib.fhog_object_detector":
    """dlib's HOG + linear SVM frontal face detector."""
    return dlib.get_frontal_face_detector()


@cache
def cnn_detector() -> "dlib.cnn_face_detection_model_v1":
    """dlib's MMOD CNN face detector."""
    return dlib.cnn_face_detection_model_v1(model_path(CNN_DETECTOR))


@cache
def shape_predictor() -> "dlib.shape_predictor":
    """The 5-point landmark predictor used to align faces."""
    return dlib.shape_predictor(model_path(SHAPE_PREDICTOR))


@cache
def face_encoder() -> "dlib.face_recognition_model_v1":
    """The ResNet that maps an aligned face to a 128-D descriptor."""
    return dlib.face_recognition_model_v1(model_path(RECOGNITION_MODEL))
