"""Convert dlib's two networks (the face descriptor ResNet and the MMOD face detector) to ONNX.

Run at install time and in the Lambda build, never at run time of a function:

    python -m shared.engine.onnx_convert --models-dir <face_recognition_models/models> --out DIR

writes `dlib_face_recognition_resnet_model_v1.onnx`, `mmod_human_face_detector.onnx` and
`mmod_human_face_detector.json` (the detector's options: windows, thresholds, NMS, pyramid
padding, layer geometry), and with `--hog` dlib's HOG detector saved as a file (it loads in 1 ms
where building it takes 250). Output is deterministic. Only numpy and onnx are needed (and dlib
for `--hog`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.engine.dlib_format import read_network
from shared.engine.model_files import CNN_DETECTOR as MMOD_DAT
from shared.engine.model_files import DESCRIPTOR_ONNX, HOG_DETECTOR, MMOD_ONNX, MMOD_OPTIONS
from shared.engine.model_files import RECOGNITION_MODEL as DESCRIPTOR_DAT

OPSET = 17
IR_VERSION = 8

# ----------------------------------------------------------------------------- onnx graph


class _Graph:
    """Tiny ONNX graph builder with deterministic names."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []

    def const(self, arr: np.ndarray, hint: str) -> str:
        name = f"{hint}_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def model(self, inp, out_name: str, out_shape: list, graph_name: str) -> onnx.ModelProto:
        self.nodes[-1].output[0] = out_name
        g = helper.make_graph(self.nodes, graph_name, [inp],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
                              initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="lambdaface", producer_version="1")
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m)
        return m


def _affine_params(rec: dict) -> tuple[np.ndarray, np.ndarray]:
    """(gamma, beta) of an affine_ layer, or of the affine_ dlib builds from a bn_ layer."""
    n = int(np.prod(rec["gamma"]))
    p = rec["params"].reshape(-1)
    g, b = p[:n].copy(), p[n:2 * n].copy()
    if rec["kind"] == "bn":  # affine_(const bn_&): g = gamma/sqrt(var+eps), b = beta - g*mean
        var = rec["running_variances"].reshape(-1)
        g = g / np.sqrt(var + np.float32(rec["eps"]))
        b = b - g * rec["running_means"].reshape(-1)
    return g.astype(np.float32), b.astype(np.float32)


def _out_size(n, k: int, s: int, p: int):
    """dlib/ONNX (floor) output size: 1 + (n + 2p - k) / s."""
    return None if n is None else 1 + (n + 2 * p - k) // s


def _zero_padded_add(g: _Graph, a: str, sa: list, b: str, sb: list) -> tuple[str, list]:
    """tt::add(dest, src1, src2): shapes may differ; missing elements count as zero."""
    if sa == sb:
        return g.op("Add", [a, b]), sa
    if None not in sa + sb:
        tgt = [max(x, y) for x, y in zip(sa, sb)]
        ins = []
        for t, s in ((a, sa), (b, sb)):
            if s != tgt:
                pads = np.array([0] * 4 + [0] + [m - v for m, v in zip(tgt, s)], np.int64)
                t = g.op("Pad", [t, g.const(pads, "pads")])
            ins.append(t)
        return g.op("Add", ins), tgt
    shp_a, shp_b = g.op("Shape", [a]), g.op("Shape", [b])
    mx = g.op("Max", [shp_a, shp_b])
    zeros = g.const(np.zeros(4, np.int64), "zeros")
    pa = g.op("Pad", [a, g.op("Concat", [zeros, g.op("Sub", [mx, shp_a])], axis=0)])
    pb = g.op("Pad", [b, g.op("Concat", [zeros, g.op("Sub", [mx, shp_b])], axis=0)])
    return g.op("Add", [pa, pb]), [None if x != y else x for x, y in zip(sa, sb)]


class _Builder:
    """Emits the ONNX nodes of a network's layer records, tracking the current tensor and its shape."""

    def __init__(self, input_record: dict, in_shape: list) -> None:
        self.g = _Graph()
        mean = np.array([input_record[f"avg_{c}"] for c in ("red", "green", "blue")], np.float32).reshape(1, 3, 1, 1)
        x = self.g.op("Sub", ["input", self.g.const(mean, "mean")])
        self.x = self.g.op("Mul", [x, self.g.const(np.array(1 / 256, np.float32), "scale")])
        self.shape: list = [3] + list(in_shape[2:])  # (C, H, W); H/W None when dynamic
        self.tags: list = []

    def con(self, rec: dict, folded: dict | None) -> None:
        """A convolution, with the per-channel affine layer that follows it folded in."""
        f, c, kh, kw = rec["filters"]
        p = rec["params"].reshape(-1)
        w = p[:f * c * kh * kw].reshape(f, c, kh, kw).copy()
        bias = p[f * c * kh * kw:].copy() if rec["use_bias"] else np.zeros(f, np.float32)
        if folded is not None:
            ga, be = _affine_params(folded)
            w, bias = w * ga[:, None, None, None], bias * ga + be
        py, px, sy, sx = rec["padding_y"], rec["padding_x"], rec["stride_y"], rec["stride_x"]
        self.x = self.g.op("Conv", [self.x, self.g.const(w.astype(np.float32), "W"), self.g.const(bias.astype(np.float32), "B")],
                           kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
        self.shape = [f, _out_size(self.shape[1], kh, sy, py), _out_size(self.shape[2], kw, sx, px)]

    def affine(self, rec: dict) -> None:
        if not rec.get("disabled"):
            ga, be = _affine_params(rec)
            tshape = (1, -1, 1, 1) if rec["mode"] == 0 else (1, *self.shape)
            self.x = self.g.op("Mul", [self.x, self.g.const(ga.reshape(tshape), "gamma")])
            self.x = self.g.op("Add", [self.x, self.g.const(be.reshape(tshape), "beta")])

    def pool(self, rec: dict) -> None:
        """max_pool or avg_pool (dlib's average leaves padding out: count_include_pad 0)."""
        op = "MaxPool" if rec["kind"] == "max_pool" else "AveragePool"
        if rec["nr"] == 0 and rec["nc"] == 0:
            self.x, self.shape = self.g.op("Global" + op, [self.x]), [self.shape[0], 1, 1]
            return
        kh, kw, py, px, sy, sx = (rec[k] for k in ("nr", "nc", "padding_y", "padding_x", "stride_y", "stride_x"))
        extra = {} if op == "MaxPool" else {"count_include_pad": 0}
        self.x = self.g.op(op, [self.x], kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px], **extra)
        self.shape = [self.shape[0], _out_size(self.shape[1], kh, sy, py), _out_size(self.shape[2], kw, sx, px)]

    def fc(self, rec: dict) -> None:
        ni, no = rec["num_inputs"], rec["num_outputs"]
        p = rec["params"].reshape(-1)
        self.x = self.g.op("MatMul", [self.g.op("Flatten", [self.x], axis=1), self.g.const(p[:ni * no].reshape(ni, no), "fcW")])
        if rec["bias_mode"] == 0 and rec["use_bias"]:
            self.x = self.g.op("Add", [self.x, self.g.const(p[ni * no:ni * no + no].copy(), "fcB")])
        self.shape = [no]

    def layer(self, rec: dict) -> None:
        """Any other layer: relu, add_prev, multiply, a lone affine."""
        kind = rec["kind"]
        if kind in ("affine", "bn"):
            self.affine(rec)
        elif kind in ("max_pool", "avg_pool"):
            self.pool(rec)
        elif kind == "fc":
            self.fc(rec)
        elif kind == "relu":
            self.x = self.g.op("Relu", [self.x])
        elif kind == "add_prev":
            self.x, self.shape = _zero_padded_add(self.g, self.x, self.shape, *self.tags[-1])
        elif kind == "multiply":
            self.x = self.g.op("Mul", [self.x, self.g.const(np.array(rec["val"], np.float32), "val")])
        else:
            raise ValueError(f"cannot convert layer kind {kind!r}")


def _foldable(rec: dict) -> bool:
    return rec.get("kind") in ("affine", "bn") and rec["mode"] == 0 and not rec.get("disabled")


def _build(recs: list[dict], in_shape: list) -> tuple[_Graph, list]:
    """Emit ONNX nodes for records (input first, loss last).  Returns graph and output shape.

    Marker resolution (tag/skip ids are not serialized): a lone marker is a tag; two
    consecutive markers are tag (lower) + skip (upper) jumping to the tag below that one;
    add_prev adds the most recent tag.  This is the idiom of dlib's ResNet examples.
    """
    b = _Builder(recs[0], in_shape)
    body = recs[1:-1]
    i = 0
    while i < len(body):
        rec = body[i]
        if rec["kind"] == "marker":
            run = 1 + (i + 1 < len(body) and body[i + 1]["kind"] == "marker")
            b.tags.append((b.x, b.shape))
            if run == 2:
                if len(b.tags) < 2:
                    raise ValueError("skip layer without an earlier tag")
                b.x, b.shape = b.tags[-2]
            i += run
        elif rec["kind"] == "con":
            folded = body[i + 1] if i + 1 < len(body) and _foldable(body[i + 1]) else None
            b.con(rec, folded)
            i += 2 if folded is not None else 1
        else:
            b.layer(rec)
            i += 1
    return b.g, b.shape


# ----------------------------------------------------------------------------- public API


def convert_descriptor(dat_path: str) -> onnx.ModelProto:
    """dlib_face_recognition_resnet_model_v1.dat -> ONNX: input [N,3,150,150] raw RGB 0..255, output [N,128]."""
    recs = read_network(dat_path)
    inp, loss = recs[0], recs[-1]
    if inp["type"] != "input_rgb_image_sized" or not loss["type"].startswith("loss_metric"):
        raise ValueError("not a loss_metric network over input_rgb_image_sized")
    in_shape = ["N", 3, inp["nr"], inp["nc"]]
    g, out_shape = _build(recs, in_shape)
    vi = helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)
    return g.model(vi, "descriptor", ["N", out_shape[0]], "dlib_face_descriptor")


def _geometry(recs: list[dict]) -> dict:
    """Conv/pool geometry (input -> output order) for input_tensor_to_output_tensor mapping."""
    layers, sy, sx = [], 1, 1
    for r in recs:
        if r.get("kind") in ("con", "max_pool", "avg_pool"):
            layers.append({k: r[k] for k in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
                          | {"kind": r["kind"]})
            sy, sx = sy * r["stride_y"], sx * r["stride_x"]
    return {"total_stride_y": sy, "total_stride_x": sx, "layers": layers,
            "input_to_output": "per layer, input->output order: p = (p + padding - n//2) / stride",
            "output_to_input": "per layer, output->input order: p = p*stride - padding + n//2"}


def convert_mmod(dat_path: str) -> tuple[onnx.ModelProto, dict]:
    """mmod_human_face_detector.dat -> (ONNX model input [N,3,H,W] raw RGB -> scores [N,K,h,w], options dict)."""
    recs = read_network(dat_path)
    inp, loss = recs[0], recs[-1]
    if not inp["type"].startswith("input_rgb_image_pyramid") or loss["type"] != "loss_mmod_":
        raise ValueError("not a loss_mmod network over input_rgb_image_pyramid")
    g, out_shape = _build(recs, [1, 3, None, None])
    opts = dict(loss["options"])
    k_expected = len(opts["detector_windows"]) * (5 if opts["use_bounding_box_regression"] else 1)
    if out_shape[0] != k_expected:
        raise ValueError(f"net outputs {out_shape[0]} channels, options imply {k_expected}")
    for key in ("avg_red", "avg_green", "avg_blue", "pyramid_padding", "pyramid_outer_padding"):
        opts[key] = inp[key]
    opts["defaults_applied"] = opts["defaults_applied"] + inp["defaults_applied"]
    opts["input_layer"] = inp["type"]
    opts["input_to_output"] = _geometry(recs)
    vi = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])  # N: frames of one size
    return g.model(vi, "scores", ["N", out_shape[0], "h", "w"], "dlib_mmod_detector"), opts


def convert_all(models_dir: str, out_dir: str) -> list[str]:
    """Convert both networks from `models_dir` into `out_dir` (each file written atomically); the paths."""
    os.makedirs(out_dir, exist_ok=True)
    mmod, options = convert_mmod(os.path.join(models_dir, MMOD_DAT))
    outputs = {
        DESCRIPTOR_ONNX: convert_descriptor(os.path.join(models_dir, DESCRIPTOR_DAT)).SerializeToString(),
        MMOD_ONNX: mmod.SerializeToString(),
        MMOD_OPTIONS: (json.dumps(options, indent=2, sort_keys=True) + "\n").encode(),
    }
    written = []
    for name, data in outputs.items():
        path = os.path.join(out_dir, name)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        written.append(path)
    return written


def save_hog_detector(out_dir: str) -> str:
    """Save dlib's HOG detector into `out_dir` (install and build time); its path."""
    import dlib  # only here: the networks' conversion needs numpy and onnx alone

    path = os.path.join(out_dir, HOG_DETECTOR)
    tmp = f"{path}.{os.getpid()}.tmp"
    dlib.get_frontal_face_detector().save(tmp)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    """python -m shared.engine.onnx_convert --models-dir DIR --out DIR"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", required=True, help="where the dlib .dat files are")
    parser.add_argument("--out", required=True, help="where the .onnx files go")
    parser.add_argument("--hog", action="store_true", help="also save dlib's HOG face detector there (needs dlib)")
    args = parser.parse_args(argv)
    written = convert_all(args.models_dir, args.out)
    if args.hog:
        written.append(save_hog_detector(args.out))
    for path in written:
        print(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
