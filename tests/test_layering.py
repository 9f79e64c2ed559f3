"""The layers of src/shared: the engine is pure (no AWS library, directly or through another module,
and nothing from the layers above it); the bucket layout and the result documents need neither
dlib nor boto3. Checked on the source (ast), and by importing each module in a fresh interpreter
that refuses the forbidden modules, which catches indirect imports too."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

SRC = ROOT / "src"
ENGINE_FILES = sorted((SRC / "shared" / "engine").glob("*.py"))
AWS_LIBRARIES = ("boto3", "botocore", "aws_lambda_powertools")
ABOVE_THE_ENGINE = ("shared.aws", "shared.pipeline", "handlers", "lambdaface")


def module_name(path: Path) -> str:
    """shared.engine.faces for src/shared/engine/faces.py; shared.engine for its __init__.py."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


ENGINE_MODULES = [module_name(path) for path in ENGINE_FILES]


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` (the text of `module`) imports, anywhere in it: in functions and under
    `if TYPE_CHECKING:` too, relative imports resolved; `from a import b` counts as a and a.b."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_checker_sees_every_kind_of_import() -> None:
    source = "import os\nfrom . import faces\nfrom ..aws import s3\ndef f():\n    import boto3.session\n"
    names = imports_in(source, "shared.engine.sample")
    assert {"os", "shared.engine.faces", "shared.aws.s3", "boto3.session"} <= names
    assert within("boto3.session", AWS_LIBRARIES) and not within("boto3x", AWS_LIBRARIES)
    assert within("shared.aws.s3", ABOVE_THE_ENGINE)
    assert {"faces", "decode", "models", "matching", "annotate", "video"} <= {p.stem for p in ENGINE_FILES}


@pytest.mark.parametrize("path", ENGINE_FILES, ids=[p.name for p in ENGINE_FILES])
def test_engine_sources_import_no_aws_library_and_nothing_above_the_engine(path: Path) -> None:
    names = imports_in(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not [n for n in names if within(n, AWS_LIBRARIES)], sorted(names)
    assert not [n for n in names if within(n, ABOVE_THE_ENGINE)], sorted(names)


# Imports `module` in a fresh interpreter where importing any of `blocked` (or a submodule) fails;
# prints what was tried, what was already loaded at start, and what is loaded at the end.
IMPORT_WITHOUT = r"""
import importlib, importlib.abc, json, sys
blocked, module = sys.argv[1].split(","), sys.argv[2]

def is_blocked(name):
    return any(name == b or name.startswith(b + ".") for b in blocked)

tried = []
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if is_blocked(name):
            tried.append(name)
            raise ModuleNotFoundError(f"{name} is blocked for this test", name=name)
        return None

preloaded = [name for name in sys.modules if is_blocked(name)]
sys.meta_path.insert(0, Refuse())
error = None
try:
    importlib.import_module(module)
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"tried": tried, "preloaded": preloaded, "loaded": [n for n in sys.modules if is_blocked(n)],
                  "error": error}))
"""


def import_without(module: str, blocked: tuple[str, ...]) -> dict:
    run = subprocess.run([sys.executable, "-c", IMPORT_WITHOUT, ",".join(blocked), module], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_blocker_blocks() -> None:
    """The check can fail: a module that needs boto3 does not import where boto3 is refused."""
    report = import_without("shared.aws.s3", AWS_LIBRARIES)
    assert report["error"] and report["tried"] and not report["loaded"], report


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_engine_modules_import_without_aws_libraries(module: str) -> None:
    report = import_without(module, AWS_LIBRARIES)
    assert report == {"tried": [], "preloaded": [], "loaded": [], "error": None}, report


@pytest.mark.parametrize("module", ["shared.pipeline.keys", "shared.pipeline.results"])
def test_the_bucket_layout_and_result_documents_import_without_dlib_or_boto3(module: str) -> None:
    report = import_without(module, ("dlib", "boto3", "botocore"))
    assert report == {"tried": [], "preloaded": [], "loaded": [], "error": None}, report


# Modules that import each other (none may be added). Untied in issue 20: report/report_page
# (report_model.py), models/onnx_convert (model_files.py), the local package and its stack (the
# command is local/command.py), gallery_cache/gallery_table (a worker's gallery is gallery_cache.load).
STILL_TIED: set[tuple[str, str]] = set()


def mutual_imports() -> set[tuple[str, str]]:
    """Every pair of modules under src/ of which each imports the other (anywhere in it, lazily or
    under TYPE_CHECKING too)."""
    imported = {module_name(p): imports_in(p.read_text(), module_name(p), p.name == "__init__.py")
                for p in SRC.rglob("*.py")}
    return {tuple(sorted((a, b))) for a, names in imported.items() for b in names
            if b != a and b in imported and a in imported[b]}


def test_no_two_modules_import_each_other() -> None:
    """Imports flow one way: no module imports another that imports it (lazy imports count too)."""
    found = mutual_imports()
    assert found <= STILL_TIED, f"modules that import each other: {sorted(found - STILL_TIED)}"
    assert found == STILL_TIED, f"untied, remove from STILL_TIED: {sorted(STILL_TIED - found)}"


def test_the_mutual_import_check_sees_a_lazy_import() -> None:
    source = "def f():\n    from shared.aws import gallery_cache\n"
    assert "shared.aws.gallery_cache" in imports_in(source, "shared.aws.gallery_table")
