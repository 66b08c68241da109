"""MSMT17 (Wei et al., CVPR 2018), V1 and V2 list-file layouts."""

from __future__ import annotations

import os
from pathlib import Path

from ..registry import DATASETS
from .base import DatasetLayoutError, ReIDDataset, Sample, _listing, relabel

__all__ = ["MSMT17"]

_LISTS = {"train": "list_train.txt", "val": "list_val.txt", "query": "list_query.txt", "gallery": "list_gallery.txt"}
_VERSIONS = {"v1": ("MSMT17_V1", "train", "test"), "v2": ("MSMT17_V2", "mask_train_v2", "mask_test_v2")}


@DATASETS.register(
    "msmt17",
    aliases=("msmt", "msmt17-v1", "msmt17-v2"),
    paper="Wei et al., Person Transfer GAN to Bridge Domain Gap for Person Re-Identification, CVPR 2018",
)
class MSMT17(ReIDDataset):
    """MSMT17: 4,101 identities, 15 cameras; 1,041 train ids (30,248 images), query 11,659 images,
    gallery 82,161 images (3,060 test ids).

    Layout: ``MSMT17_V1/{train,test}/<pid>/<file>.jpg`` (V2: ``MSMT17_V2/{mask_train_v2,mask_test_v2}``)
    with list files ``list_{train,val,query,gallery}.txt`` whose lines are ``<relative path> <pid>``.
    The camera is the third ``_`` field of the file name (``0000_000_01_0303morning_0015_0.jpg`` ->
    camera 1); camids are 0-based. As torchreid, the training split is ``list_train`` only unless
    ``combine_val=True`` adds ``list_val``. ``version`` is ``"v1"``, ``"v2"`` or ``"auto"``.
    """

    name = "msmt17"
    display_name = "MSMT17"

    def __init__(self, root: str | os.PathLike, version: str = "auto", combine_val: bool = False) -> None:
        root = Path(root).expanduser()
        versions = ("v2", "v1") if version == "auto" else (version.lower(),)
        if any(v not in _VERSIONS for v in versions):
            raise ValueError(f"MSMT17 version must be 'v1', 'v2' or 'auto', got {version!r}")
        found = None
        report = []
        for v in versions:
            folder, train_dir, test_dir = _VERSIONS[v]
            for cand in (root, root / folder, root / "msmt17" / folder):
                required = [train_dir, test_dir, *_LISTS.values()]
                missing = [r for r in required if not (cand / r).exists()]
                if not missing:
                    found = (v, cand, train_dir, test_dir)
                    break
                if cand.is_dir() and len(missing) < len(required):
                    report.append(f"{cand} ({v.upper()}) is missing {', '.join(missing)}")
            if found:
                break
        if found is None:
            detail = "; ".join(report) if report else _listing(root)
            raise DatasetLayoutError(
                f"MSMT17 not found under {root}: {detail}.\n"
                "Expected layout: MSMT17_V1/{train,test}/ or MSMT17_V2/{mask_train_v2,mask_test_v2}/ "
                "beside list_train.txt, list_val.txt, list_query.txt, list_gallery.txt.\n"
                "Point --data-root at the folder that holds your copy of MSMT17."
            )
        v, d, train_dir, test_dir = found
        self.version = v
        train = self._read_list(d, d / train_dir, _LISTS["train"])
        if combine_val:
            train += self._read_list(d, d / train_dir, _LISTS["val"])
        query = self._read_list(d, d / test_dir, _LISTS["query"])
        gallery = self._read_list(d, d / test_dir, _LISTS["gallery"])
        super().__init__(d, relabel(train), [Sample(*x) for x in query], [Sample(*x) for x in gallery])

    @staticmethod
    def _read_list(d: Path, img_dir: Path, list_name: str) -> list[tuple[str, int, int]]:
        out, missing = [], []
        with open(d / list_name, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                parts = line.split()
                try:
                    rel, pid = parts[0], int(parts[1])
                    camid = int(Path(rel).name.split("_")[2]) - 1
                except (IndexError, ValueError):
                    raise DatasetLayoutError(
                        f"MSMT17: {d / list_name} line {lineno} is not '<path> <pid>' with a file name "
                        f"like 0000_000_01_0303morning_0015_0.jpg: {line!r}"
                    ) from None
                path = img_dir / rel
                if not path.is_file():
                    missing.append(str(path))
                out.append((str(path), pid, camid))
        if missing:
            raise DatasetLayoutError(
                f"MSMT17: {len(missing)} images listed in {d / list_name} do not exist, "
                f"e.g. {', '.join(missing[:3])}."
            )
        return out
