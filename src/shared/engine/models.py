"""The engine's models, loaded lazily once per process.

dlib keeps HOG detection and the 5-point landmarks; the two networks (the ResNet face descriptor
and the MMOD detector) run on ONNX Runtime from `.onnx` files that onnx_convert.py makes from
face_recognition_models' `.dat` files. Where the converted files are (`converted_dir()`):

- $LAMBDAFACE_ONNX_DIR when set;
- next to the `.dat` files when they are there (the Lambda package ships them so);
- else <sys.prefix>/share/lambdaface/models, which `make install` fills. A file missing there
  is converted on first use (a few seconds, once; needs the onnx package).

dlib's own networks (`cnn_detector`, `face_encoder`) stay available as the reference.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

import dlib

from shared.config import MODELS_DIR_ENV, ONNX_DIR_ENV

from shared.engine.model_files import (CNN_DETECTOR, DESCRIPTOR_ONNX, HOG_DETECTOR, MMOD_ONNX, MMOD_OPTIONS,  # noqa: F401
                                       RECOGNITION_MODEL, SHAPE_PREDICTOR)

log = logging.getLogger(__name__)


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


@cache
def converted_dir() -> Path:
    """Where the converted models are (see the module's docstring)."""
    override = os.environ.get(ONNX_DIR_ENV)
    if override:
        return Path(override)
    if (models_dir() / DESCRIPTOR_ONNX).is_file():
        return models_dir()
    return Path(sys.prefix) / "share" / "lambdaface" / "models"


def model_path(name: str) -> str:
    """The path of one .dat model file, checked to exist."""
    path = models_dir() / name
    if not path.is_file():
        raise RuntimeError(f"model file {path} is missing")
    return str(path)


def converted_path(name: str) -> str:
    """The path of one converted model, converting the networks first if it is missing."""
    path = converted_dir() / name
    if not path.is_file():
        try:
            from shared.engine.onnx_convert import convert_all
        except ImportError as exc:
            raise RuntimeError(f"model file {path} is missing and cannot be converted here ({exc})") from None
        log.warning("converting dlib's networks to ONNX into %s (once)", converted_dir())
        convert_all(str(models_dir()), str(converted_dir()))
    return str(path)


@cache
def hog_detector() -> "dlib.fhog_object_detector":
    """dlib's HOG + linear SVM frontal face detector (from its saved copy when there is one)."""
    saved = converted_dir() / HOG_DETECTOR
    if saved.is_file():
        return dlib.fhog_object_detector(str(saved))
    return dlib.get_frontal_face_detector()


@cache
def shape_predictor() -> "dlib.shape_predictor":
    """The 5-point landmark predictor used to align faces."""
    return dlib.shape_predictor(model_path(SHAPE_PREDICTOR))


@cache
def descriptor_session(threads: int = 1) -> Any:
    """The ResNet face descriptor on ONNX Runtime: [N,3,150,150] raw RGB -> [N,128]."""
    return _session(converted_path(DESCRIPTOR_ONNX), threads)


@cache
def mmod_detector(threads: int = 1) -> Any:
    """The MMOD CNN face detector on ONNX Runtime (shared.engine.mmod.MmodDetector)."""
    from shared.engine.mmod import MmodDetector

    return MmodDetector(converted_path(MMOD_ONNX), converted_path(MMOD_OPTIONS), threads)


def _session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@cache
def cnn_detector() -> "dlib.cnn_face_detection_model_v1":
    """dlib's own MMOD CNN face detector (the reference; production uses `mmod_detector`)."""
    return dlib.cnn_face_detection_model_v1(model_path(CNN_DETECTOR))


@cache
def face_encoder() -> "dlib.face_recognition_model_v1":
    """dlib's own ResNet face descriptor (the reference; production uses `descriptor_session`)."""
    return dlib.face_recognition_model_v1(model_path(RECOGNITION_MODEL))


def warm_up(detector: str = "hog", threads: int = 1) -> None:
    """Load every model a job of this configuration uses (before a SnapStart snapshot)."""
    hog_detector() if detector == "hog" else mmod_detector(threads)
    shape_predictor()
    descriptor_session(threads)
