"""synthreid's rendering: one person of an identity seen by a camera (pose, view, scale, occluders,
on the camera's background) and the camera pipeline that turns it into an 8-bit image."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from .appearance import _cloth
from .canvas import CH, CW, SS, H, W, _Canvas, _ellipse, _limb, _pattern, _quad, _XX, _YY

__all__ = ["render_person", "apply_camera"]

def render_person(ident: dict, cam: dict, r: np.random.Generator, bg_tex: np.ndarray,
                  grain_tex: np.ndarray, truncate: bool = False, with_mask: bool = False):
    """Render one (H, W, 3) float image in [0, 1] of identity ``ident`` seen by camera ``cam``;
    ``with_mask``: also the (H, W) share of each pixel the person covers (occluders excluded)."""
    view = r.choice(["front", "back", "side"], p=cam["views"])
    vw = 1.0 if view != "side" else 0.62
    scale = cam["scale"] * r.uniform(0.93, 1.06)
    ph = 0.86 * CH * ident["height"] * scale
    foot_y = CH - 6 * SS + r.uniform(-5, 5) * SS
    top_y = foot_y - ph
    cx = CW / 2 + r.uniform(-5, 5) * SS
    build = ident["build"]
    stride = r.uniform(-1, 1) * (0.07 if view != "side" else 0.16) * ph
    swing = -stride * 0.6

    # ---- background, ground shadow, occasional occluder behind the person
    oy, ox = r.integers(0, bg_tex.shape[0] - CH), r.integers(0, bg_tex.shape[1] - CW)
    bg = bg_tex[oy:oy + CH, ox:ox + CW] * r.uniform(0.9, 1.1)
    shadow = np.exp(-(((_XX - cx) / (0.2 * ph)) ** 2 + ((_YY - foot_y) / (0.03 * ph)) ** 2))
    bg = bg * (1 - 0.45 * shadow[..., None])

    u = (_XX - cx) / ph
    v = (_YY - top_y) / ph
    oy, ox = r.integers(0, grain_tex.shape[0] - CH), r.integers(0, grain_tex.shape[1] - CW)
    grain = 1 + ident["grain"] * grain_tex[oy:oy + CH, ox:ox + CW, None]
    cv = _Canvas()

    y_sh, y_w, y_hip = top_y + 0.165 * ph, top_y + 0.47 * ph, top_y + 0.5 * ph
    sw, ww, hw = 0.125 * ph * build * vw, 0.1 * ph * build * vw, 0.085 * ph * build * vw
    knee_y = top_y + 0.73 * ph
    skin, hair = ident["skin"], ident["hair"]
    bag, side = ident["bag"], ident["bag_side"]

    # ---- bag behind the body
    if bag == "backpack" and view == "front":
        cv.paint(_quad([(cx - sw * 1.05, y_sh + 0.02 * ph), (cx + sw * 1.05, y_sh + 0.02 * ph),
                        (cx + sw * 1.05, y_w - 0.04 * ph), (cx - sw * 1.05, y_w - 0.04 * ph)]), ident["bag_color"] * 0.8)
    if bag == "backpack" and view == "side":
        bx = cx + side * sw * 1.1
        cv.paint(_quad([(bx - 0.07 * ph, y_sh), (bx + 0.07 * ph, y_sh), (bx + 0.07 * ph, y_w - 0.05 * ph),
                        (bx - 0.07 * ph, y_w - 0.05 * ph)]), ident["bag_color"])

    # ---- legs and shoes
    leg_w0, leg_w1 = 0.05 * ph * build * (vw ** 0.5), 0.035 * ph * (vw ** 0.5)
    legs = []
    for sgn in (-1, 1):
        hx = cx + sgn * hw * 0.55
        fx = cx + sgn * (0.045 * ph * vw) + sgn * stride * (1 if view != "side" else 0.5) * (1 if sgn > 0 else 1)
        if view == "side":
            fx = cx + sgn * stride
        legs.append((hx, fx))
    bottom_col = _pattern(ident["bottom_pattern"], ident["bottom"], ident["bottom2"], u, v,
                          ident["period"] * 1.3, 0.5, 0.0) * grain
    lower_leg = skin if not ident["legwear"] else np.array([0.08, 0.08, 0.1], np.float32)
    for hx, fx in legs:
        foot = foot_y - 0.03 * ph
        kx = (hx + fx) / 2
        upper = _limb(hx, y_hip, kx, knee_y, leg_w0, leg_w0 * 0.85)
        lower = _limb(kx, knee_y, fx, foot, leg_w0 * 0.85, leg_w1)
        if ident["bottom_type"] == "trousers":
            cv.paint(upper | lower, bottom_col)
        else:
            cv.paint(lower, lower_leg * grain)
            cv.paint(upper, bottom_col if ident["bottom_type"] == "shorts" else lower_leg * grain)
        rx = 0.04 * ph if view != "side" else 0.06 * ph
        cv.paint(_ellipse(fx + (0 if view != "side" else 0.02 * ph), foot_y - 0.012 * ph, rx, 0.022 * ph),
                 ident["shoes"] * (1 + 0.5 * ident["grain"] * grain_tex[:CH, :CW, None]))
    if ident["bottom_type"] == "skirt":
        cv.paint(_quad([(cx - ww, y_w), (cx + ww, y_w), (cx + ww * 1.6, y_hip + 0.2 * ph),
                        (cx - ww * 1.6, y_hip + 0.2 * ph)]), bottom_col)
    else:
        cv.paint(_quad([(cx - ww, y_w - 0.01 * ph), (cx + ww, y_w - 0.01 * ph), (cx + hw, y_hip + 0.06 * ph),
                        (cx - hw, y_hip + 0.06 * ph)]), bottom_col)

    # ---- torso with the top garment
    top_col = _pattern(ident["top_pattern"], ident["top"], ident["top2"], u, v, ident["period"],
                       ident["duty"], ident["angle"]) * grain
    torso = _quad([(cx - sw, y_sh), (cx + sw, y_sh), (cx + ww, y_w + 0.02 * ph), (cx - ww, y_w + 0.02 * ph)])
    torso |= _ellipse(cx - sw * 0.85, y_sh + 0.02 * ph, 0.05 * ph * vw, 0.03 * ph)
    torso |= _ellipse(cx + sw * 0.85, y_sh + 0.02 * ph, 0.05 * ph * vw, 0.03 * ph)
    cv.paint(torso, top_col)
    if ident["top_type"] == "jacket" and view == "front":
        cv.paint(_quad([(cx - 0.025 * ph, y_sh), (cx + 0.025 * ph, y_sh), (cx + 0.03 * ph, y_w + 0.02 * ph),
                        (cx - 0.03 * ph, y_w + 0.02 * ph)]), ident["inner"] * grain)
    if view == "front" and ident["logo"] != "none":
        lx, ly, ls = cx + ident["logo_dx"] * ph, y_sh + 0.1 * ph, ident["logo_size"] * ph
        lc = ident["logo_color"]
        if ident["logo"] == "rect":
            cv.paint(_quad([(lx - ls, ly - ls * 0.7), (lx + ls, ly - ls * 0.7), (lx + ls, ly + ls * 0.7),
                            (lx - ls, ly + ls * 0.7)]), lc)
        elif ident["logo"] == "circle":
            cv.paint(_ellipse(lx, ly, ls * 0.8, ls * 0.8), lc)
        elif ident["logo"] == "tri":
            cv.paint(_quad([(lx, ly - ls), (lx + ls, ly + ls * 0.7), (lx - ls, ly + ls * 0.7)]), lc)
        else:  # "bars": a word-like row of marks
            for k in range(4):
                bx = lx - ls + k * ls * 0.55
                cv.paint(_quad([(bx, ly - ls * 0.35), (bx + ls * 0.35, ly - ls * 0.35),
                                (bx + ls * 0.35, ly + ls * 0.35), (bx, ly + ls * 0.35)]), lc)
    if view == "back" and ident["back_print"]:
        cv.paint(_quad([(cx - sw * 0.6, y_sh + 0.06 * ph), (cx + sw * 0.6, y_sh + 0.06 * ph),
                        (cx + sw * 0.6, y_sh + 0.13 * ph), (cx - sw * 0.6, y_sh + 0.13 * ph)]), ident["print_color"])
    if bag == "backpack" and view == "back":
        cv.paint(_quad([(cx - sw * 0.8, y_sh + 0.02 * ph), (cx + sw * 0.8, y_sh + 0.02 * ph),
                        (cx + sw * 0.75, y_w - 0.04 * ph), (cx - sw * 0.75, y_w - 0.04 * ph)]), ident["bag_color"] * grain)
        cv.paint(_quad([(cx - sw * 0.5, y_sh + 0.17 * ph), (cx + sw * 0.5, y_sh + 0.17 * ph),
                        (cx + sw * 0.5, y_w - 0.07 * ph), (cx - sw * 0.5, y_w - 0.07 * ph)]), ident["bag_color"] * 0.75)
    if bag == "backpack" and view == "front":
        for sgn in (-1, 1):
            cv.paint(_limb(cx + sgn * sw * 0.6, y_sh, cx + sgn * sw * 0.55, y_sh + 0.17 * ph, 0.012 * ph, 0.012 * ph),
                     ident["bag_color"] * 0.9)
    if bag == "shoulder":
        cv.paint(_limb(cx - side * sw * 0.7, y_sh, cx + side * ww * 1.1, y_hip - 0.02 * ph, 0.01 * ph, 0.01 * ph),
                 ident["bag_color"] * 0.85)

    # ---- arms
    sleeve = top_col
    for sgn in (-1, 1):
        if view == "side" and sgn < 0:
            continue
        sx, sy = cx + sgn * sw * 0.92 * (1 if view != "side" else 0.3), y_sh + 0.02 * ph
        hx = cx + sgn * (sw + 0.02 * ph) * (1 if view != "side" else 0.3) + sgn * swing * (0.4 if view != "side" else -1)
        hy = top_y + 0.46 * ph
        ex, ey = (sx + hx) / 2 + sgn * 0.01 * ph, (sy + hy) / 2
        upper = _limb(sx, sy, ex, ey, 0.036 * ph * build * (vw ** 0.5), 0.03 * ph)
        lower = _limb(ex, ey, hx, hy, 0.03 * ph, 0.024 * ph)
        cv.paint(upper, sleeve)
        cv.paint(lower, sleeve if ident["top_type"] != "tshirt" else skin * grain)
        cv.paint(_ellipse(hx, hy + 0.015 * ph, 0.02 * ph, 0.025 * ph), skin)
        if bag == "handbag" and sgn == side:
            cv.paint(_quad([(hx - 0.05 * ph, hy + 0.02 * ph), (hx + 0.05 * ph, hy + 0.02 * ph),
                            (hx + 0.045 * ph, hy + 0.1 * ph), (hx - 0.045 * ph, hy + 0.1 * ph)]), ident["bag_color"] * grain)
    if bag == "shoulder":
        bx = cx + side * (ww * 1.1 + 0.02 * ph)
        cv.paint(_quad([(bx - 0.05 * ph, y_hip - 0.05 * ph), (bx + 0.05 * ph, y_hip - 0.05 * ph),
                        (bx + 0.05 * ph, y_hip + 0.04 * ph), (bx - 0.05 * ph, y_hip + 0.04 * ph)]), ident["bag_color"] * grain)

    # ---- neck, head, hair
    hr = 0.055 * ph * ident["head"]
    hcx, hcy = cx + (0.01 * ph if view == "side" else 0), top_y + 0.085 * ph
    cv.paint(_quad([(cx - 0.02 * ph, hcy), (cx + 0.02 * ph, hcy), (cx + 0.022 * ph, y_sh + 0.01 * ph),
                    (cx - 0.022 * ph, y_sh + 0.01 * ph)]), skin * 0.9)
    style = ident["hair_style"]
    if style == "long":
        cv.paint(_quad([(hcx - hr * 1.05, hcy), (hcx + hr * 1.05, hcy), (hcx + hr * 1.15, y_sh + 0.07 * ph),
                        (hcx - hr * 1.15, y_sh + 0.07 * ph)])
                 & ((v < 0.3) if view == "back" else ((v < 0.25) & (np.abs(_XX - hcx) > 0.6 * hr))), hair * grain)
    cv.paint(_ellipse(hcx, hcy, hr * (0.85 if view == "side" else 1.0), hr * 1.2), skin)
    if view == "back" or style in ("short", "long"):
        hair_mask = _ellipse(hcx, hcy - hr * 0.25, hr * 1.05, hr * 1.0)
        if view == "front":
            hair_mask &= _YY < hcy - hr * 0.3
        elif view == "side":
            hair_mask &= (_YY < hcy - hr * 0.3) | ((_XX - hcx) * 1.0 < -hr * 0.1)
        if style != "bald" or view == "back":
            cv.paint(hair_mask, hair if style != "bald" else skin * 0.85)
    if style == "cap":
        cv.paint(_ellipse(hcx, hcy - hr * 0.45, hr * 1.08, hr * 0.75) & (_YY < hcy - hr * 0.2), ident["cap"])
        if view != "back":
            cv.paint(_ellipse(hcx + (hr * 0.6 if view == "side" else 0), hcy - hr * 0.25, hr * 1.1, hr * 0.2),
                     ident["cap"] * 0.8)

    # ---- soft shading: cylinder across the body, light from above, low-frequency folds
    across = np.clip(u / (0.17 * build * vw), -1, 1)
    shade = (0.74 + 0.26 * np.cos(across * math.pi / 2 + cam["light_grad"])) * (1.05 - 0.12 * v)
    person = cv.rgb * shade[..., None]
    alpha = cv.alpha[..., None]
    img = bg * (1 - alpha) + person * alpha

    mask = cv.alpha
    if truncate:  # junk detections: a box that caught only part of a person
        cut = int(r.uniform(0.35, 0.6) * CH)
        if r.random() < 0.5:
            img, mask = np.concatenate([img[cut:], bg[:cut]], 0), np.concatenate([mask[cut:], 0 * mask[:cut]], 0)
        else:
            img, mask = bg, 0 * mask
    if r.random() < 0.08:  # an occluder in front: a pole or a passer-by's shoulder
        x0 = r.uniform(0, CW)
        w = r.uniform(4, 14) * SS
        col = _cloth(r) * (1 + 0.1 * grain_tex[:CH, :CW, None])
        m = (np.abs(_XX - x0) < w / 2) & (_YY > r.uniform(0, CH * 0.5))
        img = np.where(m[..., None], col, img)
        mask = np.where(m, 0, mask)
    # box-filter to the final size (anti-aliasing)
    img = img.reshape(H, SS, W, SS, 3).mean(axis=(1, 3))
    if with_mask:  # where the person is visible, (H, W) in [0, 1]
        return img, mask.reshape(H, SS, W, SS).mean(axis=(1, 3))
    return img


def apply_camera(img: np.ndarray, cam: dict, r: np.random.Generator) -> Image.Image:
    """The camera pipeline: exposure, lighting gradient, colour cast, gamma, blur, noise -> uint8
    (at the size of ``img``, the final 128x64 in the generator)."""
    gain = cam["exposure"] * r.uniform(0.88, 1.12)
    w = img.shape[1]
    grad = 1 + cam["light_grad"] * (np.arange(w, dtype=np.float32) / w - 0.5)
    img = img * gain * grad[None, :, None]
    lum = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = lum[..., None] + cam["saturation"] * (img - lum[..., None])
    img = img * (cam["gains"] * (1 + r.normal(0, 0.02, 3)).astype(np.float32))
    img = np.clip(img, 0, 1) ** cam["gamma"]
    pil = Image.fromarray(np.round(img * 255).astype(np.uint8))
    pil = pil.filter(ImageFilter.GaussianBlur(radius=cam["blur"] * r.uniform(0.8, 1.25)))
    arr = np.asarray(pil, np.float32) / 255
    arr = arr + r.normal(0, cam["noise"], arr.shape).astype(np.float32)
    return Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8))
