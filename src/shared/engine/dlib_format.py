"""dlib's serialized DNN files (`.dat`) read into layer records, following dlib's own serialize()
code (dlib/serialize.h, dlib/dnn/core.h, layers.h, loss.h, input.h, tensor.h).

An integer is one control byte (low 4 bits: how many little-endian bytes follow; 0x80: negative);
a float is two integers (mantissa, exponent); a string is its length then its bytes; a tensor
(version 2) is its shape then raw little-endian float32. A network is written loss layer first,
then one version number per layer wrapper (outermost first), then the input layer, then the
layers from the bottom up. Only what the two networks we convert use is read (con, fc, relu,
affine, bn, max/avg pool, add_prev, multiply, tag/skip markers); anything else is refused.
"""
from __future__ import annotations

import math

import numpy as np

class _Reader:
    """Sequential reader of dlib's serialization primitives."""

    def __init__(self, data: bytes):
        self.b = data
        self.pos = 0

    def need(self, n: int) -> None:
        """Fail clearly when fewer than `n` bytes are left (a truncated or damaged file)."""
        if n < 0 or self.pos + n > len(self.b):
            raise ValueError(f"the model file is truncated: {n} more bytes needed at byte {self.pos} of {len(self.b)}")

    def byte(self) -> int:
        self.need(1)
        v = self.b[self.pos]
        self.pos += 1
        return v

    def int(self) -> int:
        """Control byte (low 4 bits = byte count, 0x80 = sign), then LE bytes."""
        ctrl = self.byte()
        n = ctrl & 0x0F
        if n > 8:
            raise ValueError(f"bad int control byte {ctrl:#x} at {self.pos - 1}")
        self.need(n)
        v = int.from_bytes(self.b[self.pos:self.pos + n], "little")
        self.pos += n
        return -v if ctrl & 0x80 else v

    def peek_int(self) -> tuple[int, int]:
        """Return (value, position after it) without consuming."""
        save = self.pos
        v = self.int()
        end, self.pos = self.pos, save
        return v, end

    def float(self) -> float:
        """float_details: mantissa int then exponent int (32000..32002 = inf/-inf/nan)."""
        m, e = self.int(), self.int()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[e] if e in special else math.ldexp(m, e)

    def string(self) -> str:
        n = self.int()
        self.need(n)
        s = self.b[self.pos:self.pos + n]
        self.pos += n
        return s.decode("latin-1")

    def bool(self) -> bool:
        c = self.byte()
        if c not in (0x30, 0x31):
            raise ValueError(f"bad bool byte {c:#x} at {self.pos - 1}")
        return c == 0x31

    def tensor(self) -> np.ndarray:
        """resizable_tensor: version, n, k, nr, nc, data (v2 raw LE float32, v1 float_details)."""
        ver = self.int()
        shape = tuple(self.int() for _ in range(4))
        cnt = int(np.prod(shape))
        if ver == 2:
            self.need(4 * cnt)
            a = np.frombuffer(self.b, dtype="<f4", count=cnt, offset=self.pos).copy()
            self.pos += 4 * cnt
        elif ver == 1:
            a = np.array([self.float() for _ in range(cnt)], dtype=np.float32)
        else:
            raise ValueError(f"unknown tensor version {ver}")
        return a.astype(np.float32).reshape(shape)

    def alias(self) -> tuple:
        """alias_tensor: version 1 then n, k, nr, nc (no data)."""
        if self.int() != 1:
            raise ValueError("unknown alias_tensor version")
        return tuple(self.int() for _ in range(4))

    def peek_input_name(self) -> bool:
        """True if a string naming an input layer starts here."""
        n, end = self.peek_int()
        return 0 < n < 64 and self.b[end:end + 5] == b"input"


# ----------------------------------------------------------------------------- layers


def _read_loss(r: _Reader) -> dict:
    """loss_metric_ / loss_mmod_ details (loss.h)."""
    name = r.string()
    rec = {"kind": "loss", "type": name}
    if name == "loss_metric_2":
        rec["margin"], rec["dist_thresh"] = r.float(), r.float()
    elif name == "loss_metric_":
        rec["margin"], rec["dist_thresh"] = 0.04, 0.6  # hard coded in old dlib
    elif name == "loss_mmod_":
        rec["options"] = _read_mmod_options(r)
    else:
        raise ValueError(f"unsupported loss layer {name!r}")
    return rec


def _read_mmod_options(r: _Reader) -> dict:
    """mmod_options serialization, versions 1..4 (loss.h); defaults as dlib's deserialize."""
    ver = r.int()
    o: dict = {"mmod_options_version": ver, "defaults_applied": []}
    if ver == 1:
        o["detector_windows"] = [{"width": r.int(), "height": r.int(), "label": ""}]
    else:
        wins = []
        for _ in range(r.int()):
            wv = r.int()
            w = {"width": r.int(), "height": r.int(), "label": ""}
            if wv == 2:
                w["label"] = r.string()
            wins.append(w)
        o["detector_windows"] = wins
    o["loss_per_false_alarm"] = r.float()
    o["loss_per_missed_target"] = r.float()
    o["truth_match_iou_threshold"] = r.float()
    o["overlaps_nms"] = {"iou_thresh": r.float(), "percent_covered_thresh": r.float()}
    o["overlaps_ignore"] = {"iou_thresh": r.float(), "percent_covered_thresh": r.float()}
    if ver >= 3:
        o["assume_image_pyramid"] = bool(r.byte())  # use_image_pyramid::yes == 1
    else:
        o["assume_image_pyramid"] = True
        o["defaults_applied"].append("assume_image_pyramid")
    if ver >= 4:
        o["use_bounding_box_regression"] = r.bool()
        o["bbr_lambda"] = r.float()
    else:
        o["use_bounding_box_regression"], o["bbr_lambda"] = False, 100.0
        o["defaults_applied"] += ["use_bounding_box_regression", "bbr_lambda"]
    return o


def _read_input(r: _Reader) -> dict:
    """input_rgb_image / _sized / _pyramid (input.h)."""
    name = r.string()
    rec = {"kind": "input", "type": name, "defaults_applied": []}
    if name not in ("input_rgb_image", "input_rgb_image_sized",
                    "input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        raise ValueError(f"unsupported input layer {name!r}")
    rec["avg_red"], rec["avg_green"], rec["avg_blue"] = r.float(), r.float(), r.float()
    if name == "input_rgb_image_sized":
        rec["nr"], rec["nc"] = r.int(), r.int()
    elif name == "input_rgb_image_pyramid2":
        rec["pyramid_padding"], rec["pyramid_outer_padding"] = r.int(), r.int()
    elif name == "input_rgb_image_pyramid":
        rec["pyramid_padding"], rec["pyramid_outer_padding"] = 10, 11
        rec["defaults_applied"] = ["pyramid_padding", "pyramid_outer_padding"]
    return rec


def _read_details(r: _Reader) -> dict:
    """One computational layer's details object (layers.h)."""
    name = r.string()
    rec: dict = {"type": name}
    if name in ("con_4", "con_5"):
        rec.update(kind="con", params=r.tensor(), num_filters=r.int(), nr=r.int(), nc=r.int(),
                   stride_y=r.int(), stride_x=r.int(), padding_y=r.int(), padding_x=r.int(),
                   filters=r.alias(), biases=r.alias(), multipliers=[r.float() for _ in range(4)])
        rec["use_bias"] = r.bool() if name == "con_5" else True
    elif name in ("affine_", "affine_2"):
        rec.update(kind="affine", params=r.tensor(), gamma=r.alias(), beta=r.alias(), mode=r.int())
        rec["disabled"] = r.bool() if name == "affine_2" else False
    elif name in ("bn_con2", "bn_fc2"):
        rec.update(kind="bn", params=r.tensor(), gamma=r.alias(), beta=r.alias(), means=r.tensor(),
                   invstds=r.tensor(), running_means=r.tensor(), running_variances=r.tensor(),
                   num_updates=r.int(), running_stats_window_size=r.int(),
                   multipliers=[r.float() for _ in range(4)], eps=r.float())
        rec["mode"] = 0 if name == "bn_con2" else 1  # layer_mode: CONV_MODE=0, FC_MODE=1
    elif name in ("max_pool_2", "avg_pool_2"):
        rec.update(kind=name[:-2], nr=r.int(), nc=r.int(), stride_y=r.int(), stride_x=r.int(),
                   padding_y=r.int(), padding_x=r.int())
    elif name in ("fc_2", "fc_3"):
        rec.update(kind="fc", num_outputs=r.int(), num_inputs=r.int(), params=r.tensor(),
                   weights=r.alias(), biases=r.alias(), bias_mode=r.int(),
                   multipliers=[r.float() for _ in range(4)])
        rec["use_bias"] = r.bool() if name == "fc_3" else True
    elif name == "relu_":
        rec["kind"] = "relu"
    elif name == "add_prev_":
        rec["kind"] = "add_prev"
    elif name == "multiply_":
        rec.update(kind="multiply", val=r.float())
    else:
        raise ValueError(f"unsupported layer {name!r} at byte {r.pos}")
    return rec


def _read_add_layer_tail(r: _Reader, version: int, input_level: bool) -> dict:
    """add_layer: details, 3 bools, cached tensors (core.h)."""
    rec = _read_details(r)
    rec["state"] = [r.bool() for _ in range(3)]
    n_tensors = 3 if (input_level or version >= 2) else 2
    for _ in range(n_tensors):
        t = r.tensor()
        if t.size:
            raise ValueError("unexpected non-empty cached tensor")
    if input_level and version >= 3:
        r.int()  # _sample_expansion_factor
    return rec


def read_network(path: str) -> list[dict]:
    """Parse a dlib DNN file into layer records, in forward order: input, layers..., loss.

    Tag and skip layers serialize only a version (1), and their ids are not stored, so
    they come out as {"kind": "marker"}; converters resolve them (see _resolve_markers).
    """
    with open(path, "rb") as f:
        r = _Reader(f.read())
    if r.int() != 1:
        raise ValueError("not an add_loss_layer (version != 1)")
    loss = _read_loss(r)
    wrappers = []  # outermost first
    while True:
        v = r.int()
        if r.peek_input_name():
            input_rec = _read_input(r)
            first = _read_add_layer_tail(r, v, input_level=True)
            break
        if v not in (1, 2):
            raise ValueError(f"unexpected wrapper version {v}")
        wrappers.append(v)
    recs = [input_rec, first]
    for v in reversed(wrappers):  # innermost first
        recs.append(_read_add_layer_tail(r, v, False) if v == 2 else {"kind": "marker"})
    if r.pos != len(r.b):
        raise ValueError(f"{len(r.b) - r.pos} trailing bytes")
    recs.append(loss)
    return recs
