"""dlib's networks converted to ONNX (shared.engine.onnx_convert) against dlib itself.

The face descriptor on ONNX Runtime must give dlib's compute_face_descriptor within 1e-4 for every
face that detection finds in the sample photos (and the distances between them within 1e-4); the
.dat reader, the conversion (deterministic, its command line) and the saved HOG detector are
checked here too. The MMOD detector's end-to-end comparison is in test_mmod_detector.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dlib
import numpy as np
import onnx
import pytest
from support.images import max_side
from support import ROOT

from shared.config import EngineConfig
from shared.engine import models
from shared.engine.dlib_format import read_network
from shared.engine.faces import detect_rects, embed_faces, find_faces
from shared.engine.onnx_convert import (DESCRIPTOR_DAT, DESCRIPTOR_ONNX, MMOD_DAT, MMOD_ONNX, MMOD_OPTIONS,
                                        _build, convert_all, convert_descriptor, convert_mmod, save_hog_detector)

TOL = 1e-4
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
CONVERTED = (DESCRIPTOR_ONNX, MMOD_ONNX, MMOD_OPTIONS)
ONNX_CFG, DLIB_CFG = EngineConfig(backend="onnx"), EngineConfig(backend="dlib")


def still_photos(labels: list[dict[str, str]]) -> list[str]:
    stills = [row["path"] for row in labels if Path(row["path"]).suffix.lower() not in VIDEO_SUFFIXES]
    assert len(stills) >= 20, f"labels.csv lists only {len(stills)} still photos"
    return stills


def dat(name: str) -> str:
    return models.model_path(name)


# ----------------------------------------------------------------------------- descriptor vs dlib


@pytest.fixture(scope="module")
def all_faces(photos, labels) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(photo#i, ONNX descriptor, dlib descriptor) for every face the default detection finds."""
    out = []
    for rel in still_photos(labels):
        image = photos.image(rel)
        rects = detect_rects(image, EngineConfig())
        ours = embed_faces(image, rects, 1, None, ONNX_CFG)
        ref = embed_faces(image, rects, 1, None, DLIB_CFG)
        assert ours.shape == ref.shape == (len(rects), 128), rel
        out += [(f"{rel}#{i}", ours[i], ref[i]) for i in range(len(rects))]
    return out


def test_descriptor_equals_dlib_on_every_face(all_faces, labels):
    assert len(all_faces) >= len(still_photos(labels)), "detection found fewer faces than there are photos"
    ours = np.stack([f[1] for f in all_faces])
    ref = np.stack([f[2] for f in all_faces])
    diff = np.abs(ours - ref).max(axis=1)
    worst = int(diff.argmax())
    print(f"\n{len(all_faces)} faces: descriptor max abs diff {diff.max():.3g} ({all_faces[worst][0]})")
    assert diff.max() <= TOL, f"{all_faces[worst][0]}: max abs diff {diff.max():.3g}"
    # dlib's descriptors are not trivially similar: the comparison has something to miss
    assert np.linalg.norm(ref[:, None] - ref[None], axis=-1).max() > 0.6


def test_distances_between_faces_equal_dlib(all_faces):
    ours = np.stack([f[1] for f in all_faces]).astype(np.float64)
    ref = np.stack([f[2] for f in all_faces]).astype(np.float64)
    d_ours = np.linalg.norm(ours[:, None] - ours[None], axis=-1)
    d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
    diff = np.abs(d_ours - d_ref)
    i, j = np.unravel_index(diff.argmax(), diff.shape)
    print(f"\n{len(all_faces)} faces, {len(all_faces) * (len(all_faces) - 1) // 2} pairs: "
          f"distance max abs diff {diff.max():.3g} ({all_faces[i][0]} / {all_faces[j][0]})")
    assert diff.max() <= TOL, f"{all_faces[i][0]} / {all_faces[j][0]}: {d_ours[i, j]} vs {d_ref[i, j]}"


JITTER_SCRIPT = r"""
import json, sys
from shared.config import EngineConfig
from shared.engine.decode import decode_image
from shared.engine.faces import detect_rects, embed_faces
image = decode_image(open(sys.argv[1], "rb").read(), EngineConfig())
rects = detect_rects(image, EngineConfig())[:1]
rounds = []
for _ in range(2):  # ONNX first, then dlib, twice: both random generators stay in step
    ours = embed_faces(image, rects, 5, None, EngineConfig(backend="onnx"))
    ref = embed_faces(image, rects, 5, None, EngineConfig(backend="dlib"))
    rounds.append([ours.tolist(), ref.tolist()])
plain = embed_faces(image, rects, 1, None, EngineConfig(backend="onnx"))
print(json.dumps({"rounds": rounds, "plain": plain.tolist()}))
"""


def test_jittered_descriptor_equals_dlib_in_a_fresh_process(faces_dir):
    """jitters=5: the ONNX path jitters with dlib.jitter_image, dlib with its own copy of the same
    generator. Neither is deterministic from call to call (each draw advances a dlib::rand), but
    both start from the same seed in a new process and draw 5 per face, so in a fresh process
    the k-th ONNX call and the k-th dlib call see the same jittered chips."""
    proc = subprocess.run([sys.executable, "-c", JITTER_SCRIPT, str(faces_dir / "seed/john1.jpg")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (o1, d1), (o2, d2) = (np.array(a) for a in result["rounds"][0]), (np.array(a) for a in result["rounds"][1])
    plain = np.array(result["plain"])
    assert o1.shape == d1.shape == (1, 128)
    print(f"\njitters=5: max abs diff {np.abs(o1 - d1).max():.3g}, {np.abs(o2 - d2).max():.3g}")
    assert np.abs(o1 - d1).max() <= TOL and np.abs(o2 - d2).max() <= TOL
    # the jitter really happened, and differed between calls (so being in step is what matched)
    assert np.linalg.norm(o1 - plain) > 0.01
    assert np.abs(o1 - o2).max() > 1e-3


def test_jittered_descriptor_close_to_dlib_in_this_process(photos):
    """In a shared process the two generators are out of step (here on purpose: one extra draw
    for dlib.jitter_image's), so only the means of a few draws are compared, loosely."""
    image = photos.image("seed/john1.jpg")
    rects = detect_rects(image, EngineConfig())[:1]
    assert len(rects) == 1
    dlib.jitter_image(np.zeros((150, 150, 3), np.uint8), num_jitters=1)
    ours = np.mean([embed_faces(image, rects, 5, None, ONNX_CFG)[0] for _ in range(3)], axis=0)
    ref = np.mean([embed_faces(image, rects, 5, None, DLIB_CFG)[0] for _ in range(3)], axis=0)
    print(f"\njitters=5, 3 draws each, distance between the means {np.linalg.norm(ours - ref):.3g}")
    assert np.linalg.norm(ours - ref) < 0.1


def test_descriptor_batch_equals_single_chips(photos):
    """A batch of chips gives what the chips give one at a time (no cross-talk in the batch)."""
    image = photos.image("multi/obama_and_biden.jpg")
    rects = detect_rects(image, EngineConfig())
    assert len(rects) == 3
    batch = embed_faces(image, rects, 1, None, ONNX_CFG)
    single = np.concatenate([embed_faces(image, [r], 1, None, ONNX_CFG) for r in rects])
    assert np.abs(batch - single).max() < 1e-5


# ----------------------------------------------------------------------------- find_faces


@pytest.mark.parametrize("detector", ["hog", "cnn"])
def test_find_faces_onnx_equals_dlib(photos, detector):
    """Same boxes and embeddings within 1e-4 (with the CNN, detection itself differs by backend)."""
    cfg = EngineConfig(detector=detector, detect_max_side=640 if detector == "cnn" else 1280)
    counted = 0
    for rel, expected in (("multi/two_people.jpg", 2), ("multi/kit_with_rose.jpg", 2), ("seed/john1.jpg", 1)):
        image = photos.image(rel)
        ours = find_faces(image, cfg.with_overrides(backend="onnx"))
        ref = find_faces(image, cfg.with_overrides(backend="dlib"))
        assert len(ref) == expected, f"{rel}: dlib found {len(ref)} faces"
        assert [f.box for f in ours] == [f.box for f in ref], rel
        diff = max(float(np.abs(a.embedding - b.embedding).max()) for a, b in zip(ours, ref))
        assert diff <= TOL, f"{rel}: embeddings differ by {diff}"
        counted += len(ref)
    assert counted == 5


# ----------------------------------------------------------------------------- the .dat reader


def test_read_network_structure():
    recs = read_network(dat(DESCRIPTOR_DAT))
    kinds = [r["kind"] for r in recs]
    assert kinds[0] == "input" and kinds[-1] == "loss"
    assert "input" not in kinds[1:] and "loss" not in kinds[:-1]
    assert recs[0]["type"] == "input_rgb_image_sized" and (recs[0]["nr"], recs[0]["nc"]) == (150, 150)
    assert recs[-1]["type"].startswith("loss_metric")
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds.count("fc") == 1
    assert recs[-1]["margin"] == pytest.approx(0.04) and recs[-1]["dist_thresh"] == pytest.approx(0.6)
    assert recs[-2]["kind"] == "fc" and recs[-2]["num_outputs"] == 128
    mmod = read_network(dat(MMOD_DAT))
    mk = [r["kind"] for r in mmod]
    assert mk[0] == "input" and mk[-1] == "loss" and mk.count("con") == 7
    assert mmod[0]["type"] == "input_rgb_image_pyramid" and mmod[-1]["type"] == "loss_mmod_"
    assert mmod[-2]["kind"] == "con" and mmod[-2]["num_filters"] == 1


@pytest.mark.parametrize("name", [DESCRIPTOR_DAT, MMOD_DAT])
def test_read_network_reads_to_the_end_of_the_file(tmp_path, name):
    """The reader consumes every byte: one byte more is refused."""
    data = Path(dat(name)).read_bytes()
    longer = tmp_path / name
    longer.write_bytes(data + b"\x00")
    with pytest.raises(ValueError, match="1 trailing bytes"):
        read_network(str(longer))


@pytest.mark.parametrize("name", [DESCRIPTOR_DAT, MMOD_DAT])
def test_truncated_dat_raises_a_clear_error(tmp_path, name):
    """A file cut short (inside a name string, in the weights, 1 byte short, empty) raises a
    ValueError that says the file ended early, not an IndexError or 'unsupported loss layer'."""
    data = Path(dat(name)).read_bytes()
    problems = []
    for cut in (0, 10, len(data) // 2, len(data) - 4, len(data) - 1):
        path = tmp_path / f"cut{cut}.dat"
        path.write_bytes(data[:cut])
        try:
            read_network(str(path))
        except ValueError as exc:
            if not any(w in str(exc).lower() for w in ("truncat", "end of file", "ended", "unexpected end")):
                problems.append(f"cut at {cut}: ValueError({str(exc)[:80]!r})")
        except Exception as exc:  # noqa: BLE001 - what else it raises is the finding
            problems.append(f"cut at {cut}: {type(exc).__name__}({str(exc)[:80]!r})")
        else:
            problems.append(f"cut at {cut}: no error")
    assert not problems, "truncated file not reported clearly:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- the converted models


def test_descriptor_model_io():
    model = convert_descriptor(dat(DESCRIPTOR_DAT))
    (i,), (o,) = model.graph.input, model.graph.output
    assert (i.name, o.name) == ("input", "descriptor")
    assert [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] == ["N", 3, 150, 150]
    assert [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] == ["N", 128]


def test_mmod_model_io_and_options():
    model, o = convert_mmod(dat(MMOD_DAT))
    (i,), (out,) = model.graph.input, model.graph.output
    assert (i.name, out.name) == ("input", "scores")
    assert [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] == ["N", 3, "H", "W"]
    assert [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim] == ["N", 1, "h", "w"]
    assert o["detector_windows"] == [{"width": 80, "height": 80, "label": ""}]
    assert o["overlaps_nms"]["iou_thresh"] == pytest.approx(0.3382761351109955)
    assert o["overlaps_nms"]["percent_covered_thresh"] == 1
    assert o["assume_image_pyramid"] is True and o["use_bounding_box_regression"] is False
    assert (o["pyramid_padding"], o["pyramid_outer_padding"]) == (10, 11)
    assert np.float32(o["avg_red"]) == np.float32(122.782)
    geo = o["input_to_output"]
    assert (geo["total_stride_y"], geo["total_stride_x"]) == (8, 8) and len(geo["layers"]) == 7


def test_dynamic_add_prev_path_equals_static():
    """The dynamic-shape (Shape/Max/Pad) add_prev path, used by the MMOD net, equals the static one."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph, _ = _build(read_network(dat(DESCRIPTOR_DAT)), ["N", 3, None, None])
    assert any(n.op_type == "Max" for n in graph.nodes), "the dynamic path was not taken"
    vi = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    dynamic = ort.InferenceSession(graph.model(vi, "descriptor", ["N", 128], "dyn").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    static = ort.InferenceSession(convert_descriptor(dat(DESCRIPTOR_DAT)).SerializeToString(),
                                  providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(0, 255, (2, 3, 150, 150)).astype(np.float32)
    a, b = dynamic.run(None, {"input": x})[0], static.run(None, {"input": x})[0]
    assert np.abs(a).max() > 0.01 and np.abs(a - b).max() < 1e-5


def test_conversion_is_deterministic_and_the_cli_writes_four_files(tmp_path, photos):
    models_dir = str(models.models_dir())
    first = convert_all(models_dir, str(tmp_path / "a"))
    second = convert_all(models_dir, str(tmp_path / "b"))
    assert sorted(Path(p).name for p in first) == sorted(CONVERTED)
    for name in CONVERTED:
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert len(a) > 1000 and a == b, name
    onnx.checker.check_model(str(tmp_path / "a" / DESCRIPTOR_ONNX))
    # the command line, in a process of its own
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "shared.engine.onnx_convert", "--models-dir", models_dir,
                           "--out", str(out), "--hog"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted((*CONVERTED, models.HOG_DETECTOR))
    assert proc.stdout.count("wrote ") == 4
    for name in CONVERTED:
        assert (out / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    hog = dlib.fhog_object_detector(str(out / models.HOG_DETECTOR))
    assert len(hog(photos.image("seed/john1.jpg"), 0)) == 1


def test_installed_models_are_a_fresh_conversion(tmp_path):
    """What the engine loads (converted_dir) is what the converter makes now, so the equivalence
    tests above tested the current converter (a stale install fails here: reinstall)."""
    convert_all(str(models.models_dir()), str(tmp_path))
    for name in CONVERTED:
        installed = Path(models.converted_path(name))
        assert installed.read_bytes() == (tmp_path / name).read_bytes(), f"{installed} is stale"


# ----------------------------------------------------------------------------- saved HOG detector


def test_saved_hog_detector_equals_dlibs(tmp_path, photos, labels):
    saved = dlib.fhog_object_detector(save_hog_detector(str(tmp_path)))
    original = dlib.get_frontal_face_detector()
    found = 0
    for rel in still_photos(labels):
        image = max_side(photos.image(rel), 1280)
        ref_rects, ref_scores, _ = original.run(image, 0, 0.0)
        rects, scores, _ = saved.run(image, 0, 0.0)
        assert list(rects) == list(ref_rects), rel
        assert np.allclose(scores, ref_scores, rtol=0, atol=1e-9), rel
        found += len(ref_rects)
    assert found >= len(still_photos(labels)) - 3
