"""synthreid: the embedded default dataset, generated procedurally in the Market-1501 layout.

Real ReID datasets cannot be downloaded by the library, yet every command must run end to end on a
fresh machine. synthreid is a deterministic stand-in that exercises the same code path (it is
written as Market-1501 files and read by the Market loader) and keeps the properties that matter
for the robustness questions of the seed paper:

* each identity has a persistent appearance: body shape, skin and hair, clothing colours drawn from
  a realistic palette (many identities share colours), garment types, textile patterns (stripes,
  plaid, checks, dots, colour blocks), fabric grain, a logo or back print, a bag;
* each camera has its own nuisance: a strong colour cast (white balance and saturation), exposure
  and gamma, a lighting gradient, a textured background scene (tiles, bricks, grass, asphalt,
  indoor), optical blur, sensor noise and JPEG quality; each image adds pose (view, stride, arm
  swing), scale, position and lighting jitter and occasional occluders.

So colour is a strong but camera-dependent identity cue, as on Market-1501, and the images carry
the high-frequency detail (textures, edges, noise) that real photographs carry: a resampling defense
such as circuitous scaling cannot simply wipe out an attack without also wiping out identity cues.

Persons are rendered at twice the final resolution and box-filtered down (anti-aliased edges, fine
texture), with numpy only; every image has its own random stream derived from (seed, image), so the
same seed gives byte-identical files whatever the number of worker processes.

The package's modules: :mod:`.appearance` (identities and cameras), :mod:`.canvas` (geometry and
drawing primitives), :mod:`.rendering` (one person, the camera pipeline), :mod:`.layout` (sizes,
the plan of files, generation); the dataset class is here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...registry import DATASETS
from ..base import FolderLayoutDataset
from .appearance import camera_params, identity_params
from .canvas import H, W
from .layout import (GENERATOR_VERSION, META_FILE, SIZES, SynthSize, default_synthreid_dir, generate_synthreid, render_job,
                     plan_synthreid)
from .rendering import apply_camera, render_person

__all__ = ["SynthReID", "SynthSize", "SIZES", "generate_synthreid", "plan_synthreid", "render_job", "default_synthreid_dir",
           "render_person", "apply_camera", "identity_params", "camera_params", "GENERATOR_VERSION", "H", "W"]


@DATASETS.register("synthreid", aliases=("synth",), paper="reidbench's procedural dataset (Market-1501 layout)")
class SynthReID(FolderLayoutDataset):
    """synthreid: procedurally generated persons in the Market-1501 layout (the embedded default).

    Default size: 150 train and 150 test identities over 6 cameras (about 2,000 train, 350 query and
    1,900 gallery images, including pid-0 distractors; pid -1 junk is written and dropped as on
    Market). ``size="large"``: 750 + 750 identities and 2,000 distractors, Market-1501's scale.
    ``size="tiny"``: 25 + 25 identities for tests. Loaded through the Market-1501 parser.
    When ``root`` is None the data lives in ``$REIDBENCH_HOME/data`` and is generated on first use.
    """

    name = "synthreid"
    display_name = "synthreid"
    cam_range = (1, 6)
    synthetic = True
    variants = ("default", "large", "tiny")  # SIZES (a test keeps the two in step)

    def __init__(self, root: str | os.PathLike | None = None, size: str = "default", seed: int = 0,
                 generate: bool = True, progress: bool = True) -> None:
        d = Path(root).expanduser() if root is not None else default_synthreid_dir(size, seed)
        meta_path = d / META_FILE
        if not meta_path.is_file():
            if not generate:
                raise FileNotFoundError(f"no synthreid dataset at {d}; run `reidbench data synth --out {d}`")
            generate_synthreid(d, size=size, seed=seed, progress=progress)
        self.meta = json.loads(meta_path.read_text())
        self.name = f"synthreid-{self.meta['size']}"
        super().__init__(d)
