"""synthreid's canvas: the image geometry (128x64, rendered at twice the size and box-filtered
down) and the drawing primitives on the supersampled canvas (polygons, ellipses, limbs, textile
patterns, a layered RGB + alpha canvas)."""

from __future__ import annotations

import math

import numpy as np

H, W = 128, 64
SS = 2  # supersampling factor
CH, CW = H * SS, W * SS
_YY, _XX = (a.astype(np.float32) + 0.5 for a in np.mgrid[0:CH, 0:CW])


def _quad(pts) -> np.ndarray:
    """Mask of a convex polygon given in clockwise or anticlockwise order."""
    pts = np.asarray(pts, np.float32)
    inside = np.ones((CH, CW), bool)
    sign = None
    for i in range(len(pts)):
        x0, y0 = pts[i]
        x1, y1 = pts[(i + 1) % len(pts)]
        c = (x1 - x0) * (_YY - y0) - (y1 - y0) * (_XX - x0)
        if sign is None:
            area = sum((pts[j][0] * pts[(j + 1) % len(pts)][1] - pts[(j + 1) % len(pts)][0] * pts[j][1])
                       for j in range(len(pts)))
            sign = 1 if area > 0 else -1
        inside &= c * sign >= 0
    return inside


def _ellipse(cx, cy, rx, ry) -> np.ndarray:
    return ((_XX - cx) / max(rx, 1e-3)) ** 2 + ((_YY - cy) / max(ry, 1e-3)) ** 2 <= 1.0


def _limb(x0, y0, x1, y1, w0, w1) -> np.ndarray:
    """A tapered limb from (x0, y0) to (x1, y1) with rounded ends."""
    dx, dy = x1 - x0, y1 - y0
    n = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / n, dx / n
    body = _quad([(x0 + nx * w0, y0 + ny * w0), (x1 + nx * w1, y1 + ny * w1),
                  (x1 - nx * w1, y1 - ny * w1), (x0 - nx * w0, y0 - ny * w0)])
    return body | _ellipse(x0, y0, w0, w0) | _ellipse(x1, y1, w1, w1)


def _pattern(kind: str, c1, c2, u, v, period, duty, angle) -> np.ndarray:
    """Colour field of a textile pattern in body coordinates ``u`` (across) and ``v`` (down)."""
    if kind == "solid":
        return np.broadcast_to(c1, u.shape + (3,))
    ur = u * math.cos(angle) + v * math.sin(angle)
    vr = v * math.cos(angle) - u * math.sin(angle)
    if kind == "hstripes":
        m = ((vr / period) % 1.0) < duty
    elif kind == "vstripes":
        m = ((ur / period) % 1.0) < duty
    elif kind == "dots":
        m = (((ur / period) % 1.0 - 0.5) ** 2 + ((vr / period) % 1.0 - 0.5) ** 2) < 0.09
    elif kind == "block":
        m = vr < 0.29
    else:  # plaid: two crossing stripe sets, blended where they overlap
        a = (((vr / period) % 1.0) < duty).astype(np.float32)
        b = (((ur / (period * 1.2)) % 1.0) < duty * 0.7).astype(np.float32)
        w = np.clip(0.55 * a + 0.55 * b, 0, 1)[..., None]
        return c1 * (1 - w) + c2 * w
    return np.where(m[..., None], c2, c1)


class _Canvas:
    def __init__(self) -> None:
        self.rgb = np.zeros((CH, CW, 3), np.float32)
        self.alpha = np.zeros((CH, CW), np.float32)

    def paint(self, mask: np.ndarray, colour) -> None:
        m = mask.astype(np.float32)
        colour = np.asarray(colour, np.float32)
        self.rgb = np.where(m[..., None] > 0, colour, self.rgb) if colour.ndim == 3 else \
            np.where(m[..., None] > 0, colour.reshape(1, 1, 3), self.rgb)
        self.alpha = np.maximum(self.alpha, m)
