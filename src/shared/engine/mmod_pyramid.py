"""The MMOD detector's input pyramid, as dlib builds it (pre-processing for mmod.py).

The ONNX network (see ``onnx_convert.convert_mmod``) takes the *tiled image pyramid* as
raw RGB (0..255, float32, NCHW; the mean subtraction and /256 are inside the model) and
returns the final con layer's output ("scores", [N, K, h, w]).  This module does what
dlib does around that network, following dlib's C++ source:

* ``tile_pyramid``  -- ``input_rgb_image_pyramid<pyramid_down<N>>::to_tensor``
  (dlib/dnn/input.h): the level rectangles come from
  ``impl::compute_tiled_image_pyramid_details`` (dlib/image_transforms/image_pyramid.h);
  every level after the first is made from the previous one with ``tt::resize_bilinear``,
  which on the CPU is ``resize_image(src, dst)`` with ``interpolate_bilinear``
  (dlib/cuda/cpu_dlib.cpp, dlib/image_transforms/interpolation.h).  Note that this is
  *not* pyramid_down<N>'s own filter: pyramid_down<N> only supplies the level sizes and
  the point mapping.  Empty space is 0 in dlib's normalised tensor, i.e. the channel
  mean (avg_red/green/blue) in the raw values we hand to the model.

``pyramid_up`` and ``rect_down`` are what dlib's Python wrapper does for ``upsample``.
The bilinear resize reproduces dlib's arithmetic, including its SSE code path (float32
lanes, positions accumulated in float32, truncating float->int conversions), and is
bit-identical to ``dlib.resize_image`` for float32 planes and uint8 RGB images (tested).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

Rect = tuple[int, int, int, int]          # left, top, right, bottom (inclusive)
Detection = tuple[int, int, int, int, float]

# The pyramid type is a template argument of the C++ network type, not stored in the
# .dat file.  dlib's face detector (cnn_face_detector.cpp) uses pyramid_down<6>.
DEFAULT_PYRAMID_DOWN_N = 6
# pyramid_down_2_1 (pyramid_down<2>) point mapping: p/2 - (1.25, 0.75)
_PD2_OFFSET = (1.25, 0.75)


def _round(v: float) -> int:
    """drectangle -> rectangle and dpoint -> point conversion: floor(v + 0.5)."""
    return int(math.floor(v + 0.5))


def round_array(v: np.ndarray) -> np.ndarray:
    return np.floor(v + 0.5).astype(np.int64)


# ----------------------------------------------------------------------------------------
# pyramid_down<N>


class PyramidDown:
    """dlib::pyramid_down<N>: level sizes and point mapping (image_pyramid.h).

    Supports N == 2 (the pyramid_down_2_1 specialisation) and N >= 4 (the generic
    template).  N == 1 and N == 3 have their own specialisations that are not needed
    here and are not implemented.
    """

    def __init__(self, n: int):
        if n == 1 or n == 3 or n < 1:
            raise NotImplementedError(f"pyramid_down<{n}> is not implemented")
        self.n = int(n)

    def rate(self) -> float:
        """pyramid_rate(pyr) = (N-1.0)/N."""
        return (self.n - 1.0) / self.n

    def output_size(self, nr: int, nc: int) -> tuple[int, int]:
        """find_pyramid_down_output_image_size()."""
        if self.n == 2:  # (nr-3)/2 in C++ integer arithmetic (truncation)
            return math.trunc((nr - 3) / 2), math.trunc((nc - 3) / 2)
        rate = self.rate()
        return int(math.floor(rate * nr)), int(math.floor(rate * nc))

    def point_down(self, x: np.ndarray, y: np.ndarray, levels: int = 1):
        """pyr.point_down(p, levels), applied to arrays of x and y."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        for _ in range(levels):
            if self.n == 2:
                x, y = x / 2.0 - _PD2_OFFSET[0], y / 2.0 - _PD2_OFFSET[1]
            else:
                ratio = (self.n - 1.0) / self.n
                x, y = (x - 0.3) * ratio, (y - 0.3) * ratio
        return x, y

    def point_up(self, x: np.ndarray, y: np.ndarray, levels: int = 1):
        """pyr.point_up(p, levels), applied to arrays of x and y."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        for _ in range(levels):
            if self.n == 2:
                x, y = (x + _PD2_OFFSET[0]) * 2, (y + _PD2_OFFSET[1]) * 2
            else:
                ratio = self.n / (self.n - 1.0)
                x, y = x * ratio + 0.3, y * ratio + 0.3
        return x, y


# ----------------------------------------------------------------------------------------
# dlib's bilinear resize_image (interpolation.h), bit-exact incl. the SSE path


def _trunc_int(v: np.ndarray) -> np.ndarray:
    """simd4i(simd4f) / static_cast: truncation toward zero (checked against dlib)."""
    return np.trunc(v).astype(np.int64)


def _accumulate(start, step, n: int, dtype) -> np.ndarray:
    """start+step, start+2*step, ... computed by n sequential additions in ``dtype``
    (np.add.accumulate adds left to right, like the C++ ``x += step`` loops)."""
    a = np.empty(n + 1, dtype)
    a[0] = start
    a[1:] = step
    return np.add.accumulate(a, dtype=dtype)[1:]


@functools.lru_cache(maxsize=256)
def _resize_plan_x(n_in: int, n_out: int):
    """Column plan of resize_image: the 4-wide SIMD part, then the scalar tail.

    SIMD part: lanes start at float(x + j*x_scale) with x = -4*x_scale and are advanced by
    float(4*x_scale) in float32; left = trunc(lane); it stops at the first group whose
    last lane has left+1 >= n_in.  Tail: x accumulated in double, left = floor(x).
    """
    x_scale = (n_in - 1) / float(max(n_out - 1, 1))
    x = -4 * x_scale
    lanes0 = np.array([x, x + x_scale, x + 2 * x_scale, x + 3 * x_scale]).astype(np.float32)
    step = np.float32(4 * x_scale)
    n_groups = n_out // 4 + 2
    lanes = np.stack([_accumulate(lanes0[j], step, n_groups, np.float32) for j in range(4)],
                     axis=1)                                     # [group, lane]
    left = _trunc_int(lanes)
    stop = np.nonzero(left[:, 3] + 1 >= n_in)[0]
    g = int(stop[0]) if stop.size else n_groups
    c = 4 * g
    if c > n_out:  # cannot happen for n_out >= 1 (the last column maps to n_in-1)
        raise AssertionError("resize plan overran the output")
    s_left = left[:g].reshape(-1)
    s_frac = (lanes[:g] - left[:g].astype(np.float32)).astype(np.float32).reshape(-1)
    xx = _accumulate(-x_scale + c * x_scale, x_scale, n_out - c, np.float64)
    t_left = np.floor(xx).astype(np.int64)
    t_frac = xx - t_left
    return c, s_left, s_frac, t_left, t_frac


@functools.lru_cache(maxsize=256)
def _resize_plan_y(n_in: int, n_out: int):
    """Row plan: y accumulated in double (y = -y_scale; y += y_scale), top = floor(y)."""
    y_scale = (n_in - 1) / float(max(n_out - 1, 1))
    y = _accumulate(-y_scale, y_scale, n_out, np.float64)
    tops = np.floor(y).astype(np.int64)
    return tops, y - tops


def resize_bilinear(img: np.ndarray, out_nr: int, out_nc: int) -> np.ndarray:
    """dlib::resize_image(in, out) with interpolate_bilinear, for float32 or uint8 RGB.

    * float32 HxW or HxWxC: each plane as dlib's float grayscale path (what
      tt::resize_bilinear does per tensor channel); returns float32.
    * uint8 HxWx3: dlib's rgb_pixel path (pyramid_up uses it); returns uint8.
    """
    if img.dtype == np.uint8:
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError("uint8 input must be HxWx3 RGB")
        is_rgb8 = True
    elif img.dtype == np.float32:
        is_rgb8 = False
    else:
        raise TypeError(f"resize_bilinear: unsupported dtype {img.dtype}")
    squeeze = img.ndim == 2
    src = img[:, :, None] if squeeze else img
    H, W, C = src.shape
    out = np.empty((out_nr, out_nc, C), np.uint8 if is_rgb8 else np.float32)
    if out.size == 0 or src.size == 0:
        return out[:, :, 0] if squeeze else out
    top, tb = _resize_plan_y(H, out_nr)
    bot = np.minimum(top + 1, H - 1)
    ns, s_left, s_frac, t_left, t_frac = _resize_plan_x(W, out_nc)
    srcf = src.astype(np.float32, copy=False)
    if ns:
        s_right = s_left + 1
        tbf = tb.astype(np.float32)[:, None, None]
        itbf = (1 - tb).astype(np.float32)[:, None, None]
        lr = s_frac[None, :, None]
        ilr = (np.float32(1) - s_frac)[None, :, None]
        flat = srcf.reshape(H * W, C)
        it, ib = (top * W)[:, None], (bot * W)[:, None]
        v = (itbf * ilr) * flat[it + s_left]
        v += (itbf * lr) * flat[it + s_right]
        v += (tbf * ilr) * flat[ib + s_left]
        v += (tbf * lr) * flat[ib + s_right]
        out[:, :ns] = _trunc_int(v).astype(np.uint8) if is_rgb8 else v
    if ns < out_nc:
        t_right = np.minimum(t_left + 1, W - 1)
        tb_c = tb[:, None, None]
        if is_rgb8:  # all double, vector_to_pixel truncates
            s64 = src.astype(np.float64)
            f = t_frac[None, :, None]
            a = (1 - f) * s64[top][:, t_left] + f * s64[top][:, t_right]
            b = (1 - f) * s64[bot][:, t_left] + f * s64[bot][:, t_right]
            out[:, ns:] = _trunc_int((1 - tb_c) * a + tb_c * b).astype(np.uint8)
        else:  # float lr_frac and float partial sums, double tb_frac
            f = t_frac.astype(np.float32)[None, :, None]
            a = ((np.float32(1) - f) * srcf[top][:, t_left] + f * srcf[top][:, t_right])
            b = ((np.float32(1) - f) * srcf[bot][:, t_left] + f * srcf[bot][:, t_right])
            out[:, ns:] = ((1 - tb_c) * a.astype(np.float64)
                           + tb_c * b.astype(np.float64)).astype(np.float32)
    return out[:, :, 0] if squeeze else out


# ----------------------------------------------------------------------------------------
# tiled pyramid (input_rgb_image_pyramid::to_tensor)


def pyramid_n(options: dict) -> int:
    return int(options.get("pyramid_down_N", DEFAULT_PYRAMID_DOWN_N))


def _u64(v: int) -> int:
    """C++ unsigned long arithmetic (mod 2**64)."""
    return v % (1 << 64)


def compute_tiled_pyramid_details(nr: int, nc: int, padding: int, outer_padding: int,
                                  pyramid_n: int = DEFAULT_PYRAMID_DOWN_N
                                  ) -> tuple[list[Rect], int, int]:
    """impl::compute_tiled_image_pyramid_details: level rects and the tiled image size.

    Returns (rects, pyramid_image_nr, pyramid_image_nc); rects are (l, t, r, b) inclusive.
    """
    pyr = PyramidDown(pyramid_n)
    if nr * nc == 0:
        return [], 0, 0
    min_height = 5
    sizes = [(nc, nr)]  # (width, height) of each level
    while True:
        nr, nc = pyr.output_size(nr, nc)
        if nr * nc == 0 or nr < min_height:
            break
        sizes.append((nc, nr))
    total_height = sum(h + padding for _, h in sizes) - padding * 2
    w0, h0 = sizes[0]
    height = 0
    prev_width = 0
    for w, h in sizes:
        # Go down the first column until the next image fits beside the previous one.
        # In C++ rectangle::width()/height() are unsigned long, so both sides of both
        # comparisons are computed modulo 2**64 (e.g. w0 - w0 - padding wraps to a huge
        # number); this matters for short or narrow images.
        if (w <= _u64(w0 - prev_width - padding)
                and _u64(_u64(height - h0) * 2) >= _u64(total_height - h0)):
            break
        height += h + padding
        prev_width = w
    height -= padding
    width = w0
    out_nr = height + outer_padding * 2
    out_nc = width + outer_padding * 2
    # rects start as rectangle(nc, nr) = (0, 0, nc-1, nr-1) and are moved into place
    rects: list[Rect] = [(0, 0, w - 1, h - 1) for w, h in sizes]
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        w, h = sizes[i]
        rects[i] = (outer_padding, y, outer_padding + w - 1, y + h - 1)
        y += h + padding
        i += 1
    y -= padding
    while i < len(sizes):
        w, h = sizes[i]
        # rectangle(p1, p2) with p1 = (outer+width-1, y-1), p2 = p1 - (w-1, h-1)
        x1, y1 = outer_padding + width - 1, y - 1
        x2, y2 = x1 - (w - 1), y1 - (h - 1)
        rect = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        r0 = rects[0]
        # don't keep going if it would intersect the original image
        if (max(r0[0], rect[0]) <= min(r0[2], rect[2])
                and max(r0[1], rect[1]) <= min(r0[3], rect[3])):
            break
        rects[i] = rect
        y -= h + padding
        i += 1
    return rects[:i], out_nr, out_nc


def tile_pyramid(image: np.ndarray, options: dict) -> tuple[np.ndarray, list[Rect]]:
    """input_rgb_image_pyramid<pyramid_down<N>>::to_tensor, in raw RGB.

    image: HxWx3 uint8 RGB.  Returns (tiled, rects): tiled is an NRxNCx3 float32 raw-RGB
    image (feed it as NCHW; the model subtracts avg_* and divides by 256), rects the
    (left, top, right, bottom) of each pyramid level inside it.  Space not covered by a
    level holds (avg_red, avg_green, avg_blue), which is 0 after the model's
    normalisation, like dlib's zeroed tensor.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("tile_pyramid expects an HxWx3 uint8 RGB image")
    nr, nc = image.shape[:2]
    rects, NR, NC = compute_tiled_pyramid_details(
        nr, nc, int(options["pyramid_padding"]), int(options["pyramid_outer_padding"]),
        pyramid_n(options))
    for l, t, r, b in rects:
        if l < 0 or t < 0 or r >= NC or b >= NR:
            # dlib's to_tensor fails here too (alias_tensor offset check), e.g. for
            # images narrower than pyramid_padding
            raise ValueError(f"image {nc}x{nr} gives a pyramid level outside the tiled "
                             f"image ({NC}x{NR}); dlib cannot process it either")
    avg = np.array([options["avg_red"], options["avg_green"], options["avg_blue"]],
                   dtype=np.float32)
    tiled = np.empty((NR, NC, 3), np.float32)
    tiled[:] = avg
    if not rects:
        return tiled, rects
    l, t, r, b = rects[0]
    tiled[t:b + 1, l:r + 1] = image
    for i in range(1, len(rects)):
        pl, pt, pr, pb = rects[i - 1]
        l, t, r, b = rects[i]
        if intersects(rects[i - 1], rects[i]):
            resize_in_place(tiled, rects[i - 1], rects[i])
        else:
            tiled[t:b + 1, l:r + 1] = resize_bilinear(tiled[pt:pb + 1, pl:pr + 1],
                                                      b - t + 1, r - l + 1)
    return tiled, rects


def intersects(a: Rect, b: Rect) -> bool:
    return max(a[0], b[0]) <= min(a[2], b[2]) and max(a[1], b[1]) <= min(a[3], b[3])


def resize_in_place(tiled: np.ndarray, src: Rect, dst: Rect) -> None:
    """resize_bilinear from src to dst when the two regions of ``tiled`` overlap.

    Only happens for images narrower than ~55 px, where dlib's layout lets a level of the
    second column overlap the level it is made from.  dlib then reads pixels that the
    same resize already overwrote, so we follow its write order: rows top to bottom, per
    row the 4-wide SIMD groups (4 reads, then 4 writes) and then the scalar tail, one
    element at a time.  Same arithmetic as resize_bilinear's float path.
    (Reasoned from the C++ only: dlib gives no way to look at its tensor from Python.)
    """
    pl, pt, pr, pb = src
    l, t, r, b = dst
    H, W = pb - pt + 1, pr - pl + 1
    nr, nc = b - t + 1, r - l + 1
    top, tb = _resize_plan_y(H, nr)
    bot = np.minimum(top + 1, H - 1)
    ns, s_left, s_frac, t_left, t_frac = _resize_plan_x(W, nc)
    one = np.float32(1)
    for ch in range(tiled.shape[2]):
        plane = tiled[:, :, ch]
        for row in range(nr):
            yt, yb = pt + top[row], pt + bot[row]
            tbf, itbf = np.float32(tb[row]), np.float32(1 - tb[row])
            for g in range(0, ns, 4):
                cl = pl + s_left[g:g + 4]
                lr = s_frac[g:g + 4]
                ilr = one - lr
                v = (((itbf * ilr) * plane[yt, cl] + (itbf * lr) * plane[yt, cl + 1])
                     + (tbf * ilr) * plane[yb, cl]) + (tbf * lr) * plane[yb, cl + 1]
                plane[t + row, l + g:l + g + 4] = v
            for c in range(ns, nc):
                xl = pl + int(t_left[c - ns])
                xr = pl + min(int(t_left[c - ns]) + 1, W - 1)
                f = np.float32(t_frac[c - ns])
                a = (one - f) * plane[yt, xl] + f * plane[yt, xr]
                bb = (one - f) * plane[yb, xl] + f * plane[yb, xr]
                plane[t + row, l + c] = np.float32((1 - tb[row]) * np.float64(a)
                                                   + tb[row] * np.float64(bb))


def image_to_tiled_pyramid(rects: Sequence[Rect], scale: float, x: float, y: float,
                           pyramid_n: int = DEFAULT_PYRAMID_DOWN_N) -> tuple[float, float]:
    """image_to_tiled_pyramid<pyramid_down<N>>(rects, scale, p) for one point."""
    pyr = PyramidDown(pyramid_n)
    it = int(round_half_away(math.log(scale) / math.log(pyr.rate())))
    it = min(max(it, 0), len(rects) - 1)
    px, py = pyr.point_down(x, y, it)
    return rects[it][0] + float(px), rects[it][1] + float(py)


def round_half_away(v: float) -> float:
    """std::lround semantics (half away from zero)."""
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def _nearest_rect(rects: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """nearest_rect(rects, point) for arrays of integer points.

    The first rect containing the point wins; otherwise the one with the smallest
    Euclidean distance to its nearest point (first one on ties).
    """
    L, T, R, B = (rects[:, i][None, :] for i in range(4))
    px = px[:, None]
    py = py[:, None]
    dx = np.where(px < L, L - px, np.where(px > R, px - R, 0)).astype(np.float64)
    dy = np.where(py < T, T - py, np.where(py > B, py - B, 0)).astype(np.float64)
    dist = np.sqrt(dx * dx + dy * dy)
    inside = dist == 0
    first_inside = np.where(inside.any(axis=1), inside.argmax(axis=1), -1)
    nearest = dist.argmin(axis=1)  # argmin returns the first minimum, like the strict <
    return np.where(first_inside >= 0, first_inside, nearest)


def tiled_pyramid_to_image(rects: Sequence[Rect], l: np.ndarray, t: np.ndarray,
                           r: np.ndarray, b: np.ndarray,
                           pyramid_n: int = DEFAULT_PYRAMID_DOWN_N):
    """tiled_pyramid_to_image<pyramid_down<N>>(rects, drectangle) for arrays of rects.

    Picks the level with nearest_rect(rects, dcenter(r)) (centre rounded to a point),
    subtracts that level's top-left corner and applies rect_up level-index times.
    Returns (l, t, r, b) as float64 arrays (a drectangle, not yet rounded).
    """
    pyr = PyramidDown(pyramid_n)
    ra = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    cx = round_array((l + r) / 2.0)
    cy = round_array((t + b) / 2.0)
    lvl = _nearest_rect(ra, cx, cy)
    ox = ra[lvl, 0].astype(np.float64)
    oy = ra[lvl, 1].astype(np.float64)
    l, t, r, b = l - ox, t - oy, r - ox, b - oy
    out_l, out_t, out_r, out_b = (np.empty_like(l) for _ in range(4))
    for level in np.unique(lvl):
        m = lvl == level
        out_l[m], out_t[m] = pyr.point_up(l[m], t[m], int(level))
        out_r[m], out_b[m] = pyr.point_up(r[m], b[m], int(level))
    return out_l, out_t, out_r, out_b


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Like cnn_face_detector.cpp: 8-bit gray (HxW) or RGB (HxWx3) only."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError("Unsupported image type, must be 8bit gray or RGB image.")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise TypeError("Unsupported image type, must be 8bit gray or RGB image.")


def pyramid_up(image: np.ndarray) -> np.ndarray:
    """dlib::pyramid_up(img, pyramid_down<2>): size from rect_up(get_rect(img)), bilinear."""
    H, W = image.shape[:2]
    if H * W == 0:
        return image[:0, :0]
    pyr = PyramidDown(2)
    (r_,), (b_,) = pyr.point_up(np.array([W - 1.0]), np.array([H - 1.0]))
    (l_,), (t_,) = pyr.point_up(np.array([0.0]), np.array([0.0]))
    right, bottom = _round(r_), _round(b_)
    if _round(l_) > right or _round(t_) > bottom:
        return image[:0, :0]
    return resize_bilinear(image, bottom + 1, right + 1)


def rect_down(det: Detection, levels: int) -> Detection:
    """pyramid_down<2>::rect_down(rect, levels), rounded back to a dlib::rectangle."""
    if levels <= 0:
        return det
    pyr = PyramidDown(2)
    (l,), (t,) = pyr.point_down(np.array([float(det[0])]), np.array([float(det[1])]), levels)
    (r,), (b,) = pyr.point_down(np.array([float(det[2])]), np.array([float(det[3])]), levels)
    return (_round(l), _round(t), _round(r), _round(b), det[4])


