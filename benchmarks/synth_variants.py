"""Issue 3: synthreid variants for the circuitous-scaling experiments (results: benchmarks/RESULTS.md).

``v1`` is the generator as it is; each other variant is v1 with some of its per-camera or per-identity draws changed, the changes
drawn from their own random streams so that everything else in an image stays as in v1:

* ``camera``: Market-like dirty cameras -- sensor noise 4-10/255 instead of 1.5-5, JPEG quality
  35-65 instead of 72-95, optical blur 0.4-1.2 px instead of 0.25-0.9;
* ``resolution``: ``camera`` plus a detection resolution per image -- the person is captured at
  0.45-1.0 of 128x64 (log-uniform), goes through the camera there and is up-sampled (bicubic) to
  128x64, as detector crops of far-away persons are on Market-1501;
* ``dense``: ``camera`` plus a denser appearance space -- clothing colours pulled to 30 % of their
  distance from the nearest palette colour, and 40 % of the patterned tops made solid, 40 % of the
  logos, 30 % of the bags and 50 % of the back prints removed, so more identities look alike.

    python benchmarks/synth_variants.py dense --out /tmp/synth-dense
    python benchmarks/cs_pipeline_probe.py --data-root /tmp/synth-dense --save w.pt --out r.json
    # the same model on a test set at Market-1501's scale (750 identities, 2,000 distractors):
    python benchmarks/synth_variants.py dense --test-ids 750 --train-from /tmp/synth-dense --out /tmp/synth-dense-750
    python benchmarks/cs_pipeline_probe.py --data-root /tmp/synth-dense-750 --weights w.pt --out r750.json

With ``--test-ids`` the test split alone is drawn (same cameras, same appearance per pid) and the
training split of ``--train-from`` (the model's) is copied in; identities the model trained on are
dropped from the test split, so the model is measured on a denser retrieval problem than the default's
150 identities and 1,900 gallery images (Market-1501: 750, 3,368 queries, 19,732 gallery images).
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

import reidbench.data.synthreid as S
from reidbench.data.synthreid import appearance, rendering

VARIANTS = ("v1", "camera", "resolution", "dense")


def _patch(variant: str) -> None:
    if variant == "v1":
        return
    v1_camera, v1_identity = appearance.camera_params, appearance.identity_params

    def camera_params(seed: int, cam: int) -> dict:
        p = v1_camera(seed, cam)
        r = appearance._rng(seed, 9, cam)
        p["noise"] = r.uniform(4, 10) / 255
        p["jpeg"] = int(r.integers(35, 66))
        p["blur"] = r.uniform(0.4, 1.2)
        return p

    palette = np.array(list(appearance._CLOTH.values()), np.float32)

    def identity_params(seed: int, pid: int) -> dict:
        p = v1_identity(seed, pid)
        r = appearance._rng(seed, 10, pid)
        for k in ("top", "top2", "bottom", "bottom2", "inner", "bag_color", "logo_color", "shoes", "cap", "print_color"):
            near = palette[np.argmin(((palette - p[k]) ** 2).sum(1))]
            p[k] = (near + 0.3 * (p[k] - near)).astype(np.float32)
        if r.random() < 0.4:
            p["top_pattern"] = "solid"
        if r.random() < 0.4:
            p["logo"] = "none"
        if r.random() < 0.3:
            p["bag"] = "none"
        if r.random() < 0.5:
            p["back_print"] = False
        return p

    v1_apply = rendering.apply_camera

    def apply_camera(img: np.ndarray, cam: dict, r: np.random.Generator) -> Image.Image:
        s = math.exp(r.uniform(math.log(0.45), 0.0))  # capture resolution, as a share of 128x64
        h, w = max(8, round(S.H * s)), max(4, round(S.W * s))
        small = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c]), mode="F").resize((w, h), Image.BOX),
                                     np.float32) for c in range(3)], -1)
        pil = v1_apply(small, dict(cam, blur=cam["blur"] * s), r)  # the optics scale with the capture
        return pil if (h, w) == (S.H, S.W) else pil.resize((S.W, S.H), Image.BICUBIC)

    # the generator looks these up in their modules when it renders (data/synthreid/layout.py)
    appearance.camera_params = camera_params
    if variant == "dense":
        appearance.identity_params = identity_params
    if variant == "resolution":
        rendering.apply_camera = apply_camera


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variant", choices=VARIANTS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-ids", type=int, help="draw only a test split of this many identities (and 2,000 distractors)")
    ap.add_argument("--train-from", help="with --test-ids: the variant's default folder whose training split (the "
                                         "model's) is copied in; its identities are dropped from the test split")
    args = ap.parse_args()
    if (args.test_ids is None) != (args.train_from is None):
        ap.error("--test-ids and --train-from go together (the test split needs the model's training split)")
    _patch(args.variant)  # generation workers are forked, so they inherit the patched functions
    size = "default" if args.test_ids is None else S.SynthSize(train_ids=0, test_ids=args.test_ids, distractors=2000, junk=100)
    out = S.generate_synthreid(args.out, size=size, seed=args.seed, overwrite=True, workers=2)
    if args.test_ids is not None:
        base = Path(args.train_from)
        seen = {int(f.name.split("_")[0]) for f in (base / "bounding_box_train").glob("*.jpg")}
        shutil.rmtree(out / "bounding_box_train")
        shutil.copytree(base / "bounding_box_train", out / "bounding_box_train")
        for folder in ("query", "bounding_box_test"):
            for f in (out / folder).glob("*.jpg"):
                if int(f.name.split("_")[0]) in seen:
                    f.unlink()
    print(out)


if __name__ == "__main__":
    main()
