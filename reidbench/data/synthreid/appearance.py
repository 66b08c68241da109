"""synthreid's appearance model: clothing palettes, the persistent look of each identity, each
camera's nuisance (colour cast, exposure, blur, noise, JPEG quality, background scene), and the
seeded random streams every draw comes from."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .canvas import CH, CW

_CLOTH = {
    "black": (0.07, 0.07, 0.08), "charcoal": (0.22, 0.22, 0.24), "gray": (0.45, 0.45, 0.46),
    "lightgray": (0.7, 0.7, 0.7), "white": (0.9, 0.9, 0.88), "navy": (0.1, 0.13, 0.3),
    "blue": (0.15, 0.3, 0.65), "lightblue": (0.55, 0.7, 0.86), "denim": (0.24, 0.33, 0.52),
    "red": (0.72, 0.12, 0.12), "burgundy": (0.42, 0.08, 0.14), "pink": (0.9, 0.58, 0.68),
    "orange": (0.9, 0.48, 0.14), "yellow": (0.9, 0.8, 0.22), "green": (0.18, 0.48, 0.24),
    "olive": (0.4, 0.42, 0.2), "khaki": (0.74, 0.67, 0.48), "brown": (0.38, 0.25, 0.14),
    "purple": (0.4, 0.2, 0.52), "teal": (0.1, 0.48, 0.5),
}
_CLOTH_W = {"black": 5, "charcoal": 3, "gray": 3, "lightgray": 2, "white": 4, "navy": 3, "blue": 2,
            "lightblue": 1.5, "denim": 3, "red": 1.5, "burgundy": 1, "pink": 1, "orange": 0.7,
            "yellow": 0.7, "green": 1, "olive": 1, "khaki": 2, "brown": 1.5, "purple": 0.7, "teal": 0.7}
_SKIN = [(0.94, 0.78, 0.66), (0.86, 0.67, 0.52), (0.72, 0.52, 0.38), (0.55, 0.37, 0.25), (0.38, 0.25, 0.17)]
_HAIR = [(0.05, 0.04, 0.04), (0.16, 0.1, 0.06), (0.33, 0.22, 0.12), (0.75, 0.6, 0.35), (0.6, 0.58, 0.56)]
_CLOTH_NAMES = list(_CLOTH)
_CLOTH_P = np.array([_CLOTH_W[n] for n in _CLOTH_NAMES]) / sum(_CLOTH_W.values())



def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


def _cloth(rng: np.random.Generator, avoid: str | None = None) -> np.ndarray:
    while True:
        name = _CLOTH_NAMES[rng.choice(len(_CLOTH_NAMES), p=_CLOTH_P)]
        if name != avoid:
            break
    return np.clip(np.array(_CLOTH[name]) + rng.normal(0, 0.06, 3), 0.02, 0.97).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Value noise with features of about ``cell`` pixels, zero mean, unit-ish amplitude."""
    gh, gw = max(2, int(shape[0] / cell) + 2), max(2, int(shape[1] / cell) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((shape[1], shape[0]), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def identity_params(seed: int, pid: int) -> dict:
    """The persistent appearance of identity ``pid`` (pid 0 draws a fresh random person per call
    key, see :func:`generate_synthreid`)."""
    r = _rng(seed, 1, pid)
    top = _cloth(r)
    p = {
        "height": r.uniform(0.88, 1.04), "build": r.uniform(0.85, 1.2), "head": r.uniform(0.92, 1.1),
        "skin": np.array(_SKIN[r.integers(len(_SKIN))], np.float32) * r.uniform(0.95, 1.05),
        "hair": np.array(_HAIR[r.choice(len(_HAIR), p=[0.45, 0.25, 0.15, 0.1, 0.05])], np.float32),
        "hair_style": r.choice(["short", "long", "cap", "bald"], p=[0.5, 0.3, 0.12, 0.08]),
        "cap": _cloth(r),
        "top": top, "top2": _cloth(r, avoid=None), "top_type": r.choice(["tshirt", "longsleeve", "jacket"], p=[0.4, 0.35, 0.25]),
        "inner": _cloth(r),
        "top_pattern": r.choice(["solid", "hstripes", "vstripes", "plaid", "dots", "block"],
                                p=[0.32, 0.2, 0.08, 0.16, 0.1, 0.14]),
        "period": r.uniform(0.022, 0.06), "duty": r.uniform(0.3, 0.6), "angle": r.uniform(-0.25, 0.25),
        "bottom": _cloth(r), "bottom_type": r.choice(["trousers", "shorts", "skirt"], p=[0.68, 0.17, 0.15]),
        "bottom_pattern": r.choice(["solid", "plaid", "hstripes"], p=[0.84, 0.1, 0.06]), "bottom2": _cloth(r),
        "shoes": _cloth(r), "legwear": r.choice([0, 1], p=[0.6, 0.4]),
        "logo": r.choice(["none", "rect", "circle", "bars", "tri"], p=[0.2, 0.25, 0.2, 0.2, 0.15]),
        "logo_color": _cloth(r), "logo_size": r.uniform(0.035, 0.07), "logo_dx": r.uniform(-0.05, 0.05),
        "back_print": r.random() < 0.35, "print_color": _cloth(r),
        "bag": r.choice(["none", "backpack", "shoulder", "handbag"], p=[0.35, 0.3, 0.2, 0.15]),
        "bag_color": _cloth(r), "bag_side": r.choice([-1, 1]), "grain": r.uniform(0.04, 0.12),
        "grain_cell": r.uniform(1.0, 2.5),
    }
    if p["top_pattern"] != "solid" and np.abs(p["top2"] - top).sum() < 0.3:
        p["top2"] = np.clip(1.0 - top * 0.8, 0.05, 0.95).astype(np.float32)
    return p


def camera_params(seed: int, cam: int) -> dict:
    """The nuisance of camera ``cam``: colour cast, exposure, background scene, optics, noise."""
    r = _rng(seed, 2, cam)
    # white balance: warm / cool / green / magenta casts of clearly visible strength
    temp = r.uniform(-1, 1)
    tint = r.uniform(-1, 1)
    gains = np.array([1 + 0.16 * temp, 1 + 0.1 * tint, 1 - 0.19 * temp], np.float32)
    gains /= gains.mean()
    return {
        "gains": gains, "saturation": r.uniform(0.7, 1.1), "exposure": r.uniform(0.8, 1.15),
        "gamma": r.uniform(0.85, 1.18), "light_grad": r.uniform(-0.3, 0.3), "blur": r.uniform(0.25, 0.9),
        "noise": r.uniform(1.5, 5.0) / 255, "jpeg": int(r.integers(72, 96)),
        "scene": r.choice(["tiles", "bricks", "grass", "asphalt", "indoor", "glass"]),
        "wall": _cloth(r) * 0.8 + 0.1, "ground": _cloth(r) * 0.6 + 0.2, "horizon": r.uniform(0.35, 0.7),
        "tex_cell": r.uniform(6, 16), "views": r.dirichlet([2, 2, 1.2]), "scale": r.uniform(0.92, 1.04),
        "bg_seed": int(r.integers(1 << 30)),
    }


def _background_texture(cam: dict) -> np.ndarray:
    """A (2*CH, 2*CW, 3) texture of the camera's scene; images crop it at random offsets."""
    r = _rng(cam["bg_seed"])
    th, tw = 2 * CH, 2 * CW
    yy, xx = np.mgrid[0:th, 0:tw].astype(np.float32)
    low = _smooth_noise(r, (th, tw), 40)[..., None]
    fine = _smooth_noise(r, (th, tw), 1.5)[..., None]
    mid = _smooth_noise(r, (th, tw), cam["tex_cell"])[..., None]
    wall = cam["wall"] * (1 + 0.08 * low + 0.05 * mid + 0.04 * fine)
    ground = cam["ground"] * (1 + 0.1 * low + 0.06 * fine)
    p = cam["tex_cell"] * 3
    scene = cam["scene"]
    if scene == "tiles":
        lines = ((yy % p) < 1.5) | ((xx % (p * 1.3)) < 1.5)
        ground = np.where(lines[..., None], ground * 0.7, ground)
    elif scene == "bricks":
        row = (yy // (p * 0.5)).astype(int)
        off = (row % 2) * p * 0.6
        mortar = ((yy % (p * 0.5)) < 1.5) | (((xx + off) % (p * 1.2)) < 1.5)
        wall = np.where(mortar[..., None], np.clip(wall * 1.35, 0, 1), wall * (1 + 0.1 * mid))
    elif scene == "grass":
        ground = np.array([0.22, 0.42, 0.16], np.float32) * (1 + 0.25 * fine + 0.15 * mid)
    elif scene == "asphalt":
        speck = r.random((th, tw, 1)) < 0.04
        ground = np.array([0.32, 0.32, 0.33], np.float32) * (1 + 0.18 * fine) + speck * 0.15
    elif scene == "indoor":
        panels = ((xx % (p * 2.5)) < 2)[..., None]
        wall = np.where(panels, wall * 0.8, wall)
        ground = ground * (1 + 0.1 * np.sin(xx / 3.0)[..., None])
    else:  # glass facade
        frame = (((xx % (p * 2)) < 2.5) | ((yy % (p * 3)) < 2.5))[..., None]
        wall = np.where(frame, 0.25, np.array([0.45, 0.55, 0.62], np.float32) * (1 + 0.3 * low))
    horizon = int(cam["horizon"] * th)
    tex = np.concatenate([wall[:horizon], ground[horizon:]], 0)
    return np.clip(tex, 0, 1).astype(np.float32)
