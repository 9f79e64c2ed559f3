"""dlib's MMOD CNN face detector on ONNX Runtime: the network (converted by onnx_convert.py) plus
what dlib does around it, following dlib's C++ source.

* ``decode`` -- ``loss_mmod_::to_label`` / ``tensor_to_dets`` (dlib/dnn/loss.h): threshold,
  ``output_tensor_to_input_tensor`` through the con/pool layers, ``centered_drect`` with
  the detector window, ``tiled_pyramid_to_image``, rounding to ``dlib::rectangle``,
  optional bounding-box regression, sort by score, greedy NMS with ``test_box_overlap``
  (dlib/image_processing/box_overlap_testing.h; its "IoU" divides by the area of the
  bounding box of both rectangles, not of their union).
* ``MmodDetector`` -- what tools/python/src/cnn_face_detector.cpp does: ``pyramid_up``
  the image ``upsample`` times, tile the pyramid (mmod_pyramid.py), run the net, ``rect_down``
  the boxes. Frames of one size go through the network in one batch.

Boxes are (left, top, right, bottom) with dlib's inclusive-corner convention, exactly the
numbers ``mmod_rectangle.rect.left()`` ... ``bottom()`` return; not clipped to the image.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Sequence, Union

import numpy as np

from shared.engine.mmod_pyramid import (Detection, Rect, as_rgb_uint8, pyramid_n, pyramid_up, rect_down, round_array,
                                        tile_pyramid, tiled_pyramid_to_image)


def _rect_area(l: int, t: int, r: int, b: int) -> int:
    """dlib::rectangle::area(): (right-left+1)*(bottom-top+1), 0 when empty."""
    if r < l or b < t:
        return 0
    return (r - l + 1) * (b - t + 1)


def boxes_overlap(a: Sequence[int], b: Sequence[int], iou_thresh: float,
                  percent_covered_thresh: float) -> bool:
    """dlib::test_box_overlap(iou_thresh, percent_covered_thresh)(a, b) on integer rects.

    inner = area(a.intersect(b)); outer = area(a + b) where ``a + b`` is the smallest
    rectangle containing both (dlib's definition); true if inner/outer > iou_thresh or
    inner covers more than percent_covered_thresh of a or of b.
    """
    inner = _rect_area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    if inner == 0:
        return False
    outer = _rect_area(min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    return (inner / outer > iou_thresh
            or inner / _rect_area(*a[:4]) > percent_covered_thresh
            or inner / _rect_area(*b[:4]) > percent_covered_thresh)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Ordinary intersection-over-union of two inclusive rectangles (for tests/reports)."""
    inner = _rect_area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    if inner == 0:
        return 0.0
    return inner / (_rect_area(*a[:4]) + _rect_area(*b[:4]) - inner)


def _layer_geometry(options: dict) -> list[dict]:
    """The con/pool layers, input->output order, from options["input_to_output"].

    Accepts a list of {kind, nr, nc, stride_y, stride_x, padding_y, padding_x} or a dict
    holding that list under "layers" (what onnx_convert.convert_mmod writes).
    """
    try:
        layers = options["input_to_output"]
    except KeyError:
        raise KeyError("options lacks 'input_to_output' (con/pool layer geometry)") from None
    if isinstance(layers, dict):
        layers = layers["layers"]
    for lay in layers:
        if lay.get("kind") not in ("con", "max_pool", "avg_pool", "pool"):
            raise ValueError(f"no map_output_to_input for layer kind {lay.get('kind')!r}")
    return layers


def output_tensor_to_input_tensor(options: dict, x: np.ndarray, y: np.ndarray):
    """output_tensor_to_input_tensor(net, p) for arrays of output points.

    Walks the con/pool layers from the output back to the input applying
    map_output_to_input: p*stride - padding + window/2 (integer division of the window
    size, as in dlib's con_/max_pool_/avg_pool_); other layers are the identity.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    for lay in reversed(_layer_geometry(options)):
        x = x * lay["stride_x"] - lay["padding_x"] + (int(lay["nc"]) // 2)
        y = y * lay["stride_y"] - lay["padding_y"] + (int(lay["nr"]) // 2)
    return x, y


def input_tensor_to_output_tensor(options: dict, x: float, y: float) -> tuple[float, float]:
    """input_tensor_to_output_tensor(net, p): (p + padding - window/2)/stride per layer."""
    for lay in _layer_geometry(options):
        x = (x + lay["padding_x"] - (int(lay["nc"]) // 2)) / lay["stride_x"]
        y = (y + lay["padding_y"] - (int(lay["nr"]) // 2)) / lay["stride_y"]
    return x, y


def output_shape(options: dict, nr: int, nc: int) -> tuple[int, int]:
    """Output rows/cols of the net for an nr x nc input: 1 + (n + 2*pad - k) // stride
    per con/pool layer (<= 0 means the input is too small for the network)."""
    for lay in _layer_geometry(options):
        nr = 1 + (nr + 2 * lay["padding_y"] - lay["nr"]) // lay["stride_y"]
        nc = 1 + (nc + 2 * lay["padding_x"] - lay["nc"]) // lay["stride_x"]
        if nr <= 0 or nc <= 0:
            return 0, 0
    return nr, nc


def _nms_params(options: dict) -> tuple[float, float]:
    o = options["overlaps_nms"]
    if isinstance(o, dict):
        return float(o["iou_thresh"]), float(o["percent_covered_thresh"])
    return float(o[0]), float(o[1])


def candidates(scores: np.ndarray, rects: Sequence[Rect], options: dict,
               adjust_threshold: float = 0.0) -> list[tuple[float, Rect, Rect, int]]:
    """tensor_to_dets() for one sample: every cell with score > adjust_threshold.

    scores: [K, h, w] (or [1, K, h, w]).  Returns (score, rect, rect_bbr, channel) sorted
    by decreasing score, where rect is the anchor box rounded to dlib::rectangle and
    rect_bbr the box after bounding-box regression (== rect when it is off).
    """
    s = np.asarray(scores)
    if s.ndim == 4:
        if s.shape[0] != 1:
            raise ValueError("candidates() decodes one sample; slice the batch first")
        s = s[0]
    windows = options["detector_windows"]
    nwin = len(windows)
    bbr = bool(options.get("use_bounding_box_regression", False))
    if s.shape[0] != nwin * (5 if bbr else 1):
        raise ValueError(f"scores has {s.shape[0]} channels, expected "
                         f"{nwin * (5 if bbr else 1)} for {nwin} detector windows")
    pyr_n = pyramid_n(options)
    out: list[tuple[float, Rect, Rect, int]] = []
    if not rects:
        return out
    for k in range(nwin):
        rr, cc = np.nonzero(s[k] > adjust_threshold)  # row-major, like dlib's r, c loops
        if rr.size == 0:
            continue
        sc = s[k][rr, cc].astype(np.float64)
        px, py = output_tensor_to_input_tensor(options, cc, rr)
        w = float(windows[k]["width"]) - 1
        h = float(windows[k]["height"]) - 1
        # centered_drect(p, width, height)
        l, t, r, b = px - w / 2, py - h / 2, px + w / 2, py + h / 2
        l, t, r, b = tiled_pyramid_to_image(rects, l, t, r, b, pyr_n)
        rl, rt, rr_, rb = (round_array(v) for v in (l, t, r, b))
        if bbr:
            off = nwin + k * 4
            dx, dy = s[off][rr, cc].astype(np.float64), s[off + 1][rr, cc].astype(np.float64)
            dw = np.exp(s[off + 2][rr, cc].astype(np.float64))
            dh = np.exp(s[off + 3][rr, cc].astype(np.float64))
            ww, hh = r - l, b - t            # drectangle width()-1, height()-1
            l2, t2, r2, b2 = l + dx * ww, t + dy * hh, r + dx * ww, b + dy * hh
            cx, cy = (l2 + r2) / 2, (t2 + b2) / 2
            nw, nh = ww * dw, hh * dh        # centered_drect(rect, w*dw+1, h*dh+1)
            bl, bt, br, bb = (round_array(v) for v in
                              (cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2))
        else:
            bl, bt, br, bb = rl, rt, rr_, rb
        for i in range(sc.size):
            out.append((float(sc[i]),
                        (int(rl[i]), int(rt[i]), int(rr_[i]), int(rb[i])),
                        (int(bl[i]), int(bt[i]), int(br[i]), int(bb[i])), k))
    # std::sort(rbegin, rend) by detection_confidence: decreasing (tie order unspecified)
    out.sort(key=lambda d: -d[0])
    return out


def nms(cands: Iterable[tuple[float, Rect, Rect, int]], options: dict) -> list[Detection]:
    """The non-max suppression loop of to_label with overlaps_any_box_nms."""
    iou_t, cov_t = _nms_params(options)
    kept: list[Detection] = []
    for score, _rect, rbbr, _k in cands:
        if any(boxes_overlap(d, rbbr, iou_t, cov_t) for d in kept):
            continue
        kept.append((rbbr[0], rbbr[1], rbbr[2], rbbr[3], score))
    return kept


def decode(scores: np.ndarray, rects: Sequence[Rect], options: dict,
           image_shape: Sequence[int] | None = None,
           adjust_threshold: float = 0.0) -> list[Detection]:
    """loss_mmod_::to_label for one sample: [(left, top, right, bottom, confidence)].

    scores: [1, K, h, w] or [K, h, w] network output for the tiled image whose level
    rects are ``rects``.  image_shape (H, W[, C]) of the image given to tile_pyramid is
    only checked against rects[0]; boxes are in that image's coordinates and, as in
    dlib, not clipped to it.  The label of the detector window is dropped (use
    ``candidates``/``nms`` if you need the channel).
    """
    if image_shape is not None and rects:
        l, t, r, b = rects[0]
        if (b - t + 1, r - l + 1) != tuple(int(v) for v in image_shape[:2]):
            raise ValueError("rects[0] does not match image_shape")
    return nms(candidates(scores, rects, options, adjust_threshold), options)



class MmodDetector:
    """dlib.cnn_face_detection_model_v1 on ONNX Runtime.

    model: path to the .onnx file or its bytes; options: the dict from onnx_convert.convert_mmod
    (or the path of the JSON file it was saved to).
    """

    def __init__(self, model: Union[str, bytes, os.PathLike], options: dict | str | os.PathLike,
                 intra_op_threads: int = 1):
        import onnxruntime as ort

        if isinstance(options, (str, os.PathLike)):
            with open(options) as f:
                options = json.load(f)
        self.options: dict = options
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
        self.session = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        batch = inp.shape[0] if inp.shape else None
        self.fixed_batch = batch if isinstance(batch, int) else None

    # -- pieces
    def prepare(self, image: np.ndarray, upsample: int = 0) -> tuple[np.ndarray, list[Rect]]:
        """gray/RGB -> RGB, pyramid_up ``upsample`` times, tile; returns (CHW tiled, rects)."""
        img = as_rgb_uint8(image)
        for _ in range(int(upsample)):
            img = pyramid_up(img)
        tiled, rects = tile_pyramid(img, self.options)
        if rects and output_shape(self.options, *tiled.shape[:2]) == (0, 0):
            # dlib's own detector throws here too (its conv layers get an empty input)
            raise ValueError(f"image {img.shape[1]}x{img.shape[0]} is too small for the network")
        return np.ascontiguousarray(tiled.transpose(2, 0, 1)), rects

    def run(self, batch_chw: np.ndarray) -> np.ndarray:
        """Run the network on [N, 3, NR, NC] float32 raw RGB; returns scores [N, K, h, w]."""
        return self.session.run([self.output_name], {self.input_name: batch_chw})[0]

    def _finish(self, scores: np.ndarray, rects: list[Rect], upsample: int,
                adjust_threshold: float) -> list[Detection]:
        dets = decode(scores, rects, self.options, None, adjust_threshold)
        return [rect_down(d, int(upsample)) for d in dets]

    # -- public API
    def __call__(self, image: np.ndarray, upsample: int = 0,
                 adjust_threshold: float = 0.0) -> list[Detection]:
        """Detections [(left, top, right, bottom, confidence)] like dlib's detector(img, upsample)."""
        chw, rects = self.prepare(image, upsample)
        if not rects:
            return []
        scores = self.run(chw[None])
        return self._finish(scores[0], rects, upsample, adjust_threshold)

    def detect_batch(self, images: Sequence[np.ndarray], upsample: int = 0,
                     adjust_threshold: float = 0.0,
                     max_batch: int | None = None) -> list[list[Detection]]:
        """Detect in several images; images whose tiled shapes are equal share one ORT run.

        max_batch limits how many tiled images go into one run (memory); None = no limit.
        """
        prepared = [self.prepare(im, upsample) for im in images]
        results: list[list[Detection]] = [[] for _ in images]
        groups: dict[tuple, list[int]] = {}
        for i, (chw, rects) in enumerate(prepared):
            if rects:
                groups.setdefault((chw.shape, tuple(rects)), []).append(i)
        for idxs in groups.values():
            step = self.fixed_batch or max_batch or len(idxs)
            for s in range(0, len(idxs), step):
                chunk = idxs[s:s + step]
                batch = np.stack([prepared[i][0] for i in chunk])
                scores = self.run(batch)
                for j, i in enumerate(chunk):
                    results[i] = self._finish(scores[j], prepared[i][1], upsample,
                                              adjust_threshold)
        return results


