"""Shared fixtures: the real photos in ../shared/faces (or $LAMBDAFACE_FACES), the engine, and
moto's server (helpers are in tests/support)."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from support import ROOT
from support.moto import MotoResources, moto_resources, moto_server

from shared.config import EngineConfig
from shared.engine.decode import decode_image
from shared.engine.faces import Face, find_faces


def faces_path() -> Path:
    """The sample photos: $LAMBDAFACE_FACES, else ../shared/faces next to the project root."""
    return Path(os.environ.get("LAMBDAFACE_FACES") or ROOT.parent / "shared" / "faces").resolve()


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    path = faces_path()
    assert (path / "labels.csv").is_file(), f"sample photos not found at {path} (set LAMBDAFACE_FACES)"
    return path


@pytest.fixture(scope="session")
def labels(faces_dir: Path) -> list[dict[str, str]]:
    """Rows of labels.csv: path, people (;-separated), faces, notes."""
    with open(faces_dir / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def engine_cfg() -> EngineConfig:
    return EngineConfig()


class PhotoCache:
    """Decodes and analyses each photo once per test session."""

    def __init__(self, root: Path, cfg: EngineConfig) -> None:
        self.root, self.cfg = root, cfg
        self._images: dict[str, np.ndarray] = {}
        self._faces: dict[str, list[Face]] = {}

    def bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def image(self, rel: str) -> np.ndarray:
        if rel not in self._images:
            self._images[rel] = decode_image(self.bytes(rel), self.cfg)
        return self._images[rel]

    def faces(self, rel: str) -> list[Face]:
        if rel not in self._faces:
            self._faces[rel] = find_faces(self.image(rel), self.cfg)
        return self._faces[rel]


@pytest.fixture(scope="session")
def photos(faces_dir: Path, engine_cfg: EngineConfig) -> PhotoCache:
    return PhotoCache(faces_dir, engine_cfg)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """template.yaml, parsed (a fresh copy per module: a test may change its own)."""
    from lambdaface.template import load_template

    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback, for the whole session (tests make resources of their own in it)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[MotoResources]:
    """A fresh bucket and tables in moto, the handlers' environment pointing at them, for one test."""
    with moto_resources(moto_endpoint) as fresh:
        yield fresh


@pytest.fixture(autouse=True)
def no_settings_leak() -> Iterator[None]:
    """A test leaves the process's settings as it found them (a leaked LAMBDAFACE_* variable would
    reach every later test and every local stack started after it)."""
    from shared.config import ALL_ENV

    names = set(ALL_ENV) | {"LAMBDAFACE_BUCKET", "UNKNOWNS_TABLE", "AWS_ENDPOINT_URL"}
    before = {name: os.environ.get(name) for name in names}
    yield
    after = {name: os.environ.get(name) for name in names}
    assert after == before, f"the test changed {[n for n in names if after[n] != before[n]]}"
