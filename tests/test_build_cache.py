"""Concurrent builds into one empty build cache (src/Makefile) both succeed, and use nothing half-built.

`sam build` builds the functions in parallel (samconfig.toml), each running src/Makefile, so two
makes create the cache's shared entries at the same time. The dangerous step was the converter's
venv: a second build that found the venv's python already there ran the converter while the first
was still pip-installing numpy into it (`ModuleNotFoundError: No module named 'numpy'`). This test
makes that interleaving happen every time: build B starts the moment build A's converter venv has
a python, long before A's pip install can have finished.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from support import ROOT
from support.build import python312

SRC = ROOT / "src"


def make_env(cache: Path) -> dict[str, str]:
    """A build as `sam build` runs it on a new machine: python3.12 on PATH, no converter python given."""
    env = {k: v for k, v in os.environ.items() if k not in ("LAMBDAFACE_CONVERTER_PYTHON", "MAKEFLAGS", "MAKELEVEL")}
    models = ROOT / ".venv" / "lib" / "python3.12" / "site-packages" / "face_recognition_models" / "models"
    env.update(PATH=f"{Path(python312()).parent}{os.pathsep}{env['PATH']}", LAMBDAFACE_BUILD_CACHE=str(cache),
               LAMBDAFACE_MODELS_DIR=str(models))  # copy the 3 model files instead of downloading 100 MB
    return env


def converted_target(env: dict[str, str]) -> str:
    """The cache folder of the converted models, as src/Makefile names it."""
    run = subprocess.run(["make", "-s", "-C", str(SRC), "--eval", "print-converted: ; @echo $(CONVERTED)",
                          "print-converted"], env=env, capture_output=True, text=True, check=True)
    return run.stdout.strip()


def converter_python_appeared(cache: Path) -> bool:
    """Some build has made a converter venv's python (in place or in a temporary folder)."""
    return any((entry / "bin" / "python").exists() for entry in cache.glob("converter-venv*"))


def test_two_builds_of_the_converted_models_into_one_empty_cache_both_succeed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = make_env(cache)
    target = converted_target(env)
    assert target.startswith(str(cache))
    command = ["make", "-C", str(SRC), target]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first = subprocess.Popen(command, env=env, stdout=logs[0].open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not converter_python_appeared(cache):  # the barrier: A is now installing into its venv
        assert first.poll() is None, "build A ended before making its converter venv: " + logs[0].read_text()[-3000:]
        assert time.monotonic() < deadline, "build A made no converter venv in 300 s"
        time.sleep(0.05)
    second = subprocess.Popen(command, env=env, stdout=logs[1].open("w"), stderr=subprocess.STDOUT)
    codes = [second.wait(timeout=900), first.wait(timeout=900)][::-1]
    for name, code, log in zip("AB", codes, logs):
        assert code == 0, f"build {name} failed:\n{log.read_text()[-3000:]}"
    converted = Path(target)
    assert sorted(p.name for p in converted.iterdir()) == sorted([
        "dlib_face_recognition_resnet_model_v1.onnx", "frontal_face_detector.svm",
        "mmod_human_face_detector.json", "mmod_human_face_detector.onnx"])
    assert all(p.stat().st_size > 0 for p in converted.iterdir())
    leftovers = [p.name for p in cache.iterdir() if "." in p.name and p.name.split(".")[0] in (
        "converter-venv", "converted", "models")]
    assert leftovers == [], f"temporary folders left in the cache: {leftovers}"
