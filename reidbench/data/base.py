"""Common machinery of the ReID image datasets: samples, layout checks, file-name parsing, statistics."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from tabulate import tabulate

log = logging.getLogger(__name__)

__all__ = ["Sample", "ReIDDataset", "DatasetLayoutError", "relabel", "parse_dir", "default_data_home"]

SPLITS = ("train", "query", "gallery")


class Sample(NamedTuple):
    """One image: absolute ``path``, person id ``pid`` and 0-based camera id ``camid``."""

    path: str
    pid: int
    camid: int


class DatasetLayoutError(FileNotFoundError):
    """The folder given as a dataset root does not have the layout the loader expects."""


def default_data_home() -> Path:
    """Where reidbench keeps generated data and caches: ``$REIDBENCH_HOME`` or ``~/.cache/reidbench``."""
    return Path(os.environ.get("REIDBENCH_HOME", Path.home() / ".cache" / "reidbench")).expanduser()


def _listing(root: Path, limit: int = 12) -> str:
    if not root.exists():
        return f"{root} does not exist"
    if not root.is_dir():
        return f"{root} is a file, not a folder"
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    if not entries:
        return f"{root} is empty"
    more = f" ... ({len(entries) - limit} more)" if len(entries) > limit else ""
    return f"{root} contains: {', '.join(entries[:limit])}{more}"


def find_dataset_dir(root: str | os.PathLike, candidates: Sequence[str], required: Sequence[str], name: str,
                     layout_hint: str) -> Path:
    """The first of ``root/<candidate>`` that holds every entry of ``required``.

    Raises :class:`DatasetLayoutError` naming what is missing where the most of it was found.
    """
    root = Path(root).expanduser()
    best: tuple[int, Path, list[str]] | None = None
    for cand in candidates:
        d = root / cand if cand else root
        missing = [r for r in required if not (d / r).exists()]
        if not missing:
            return d
        score = len(required) - len(missing)
        if d.is_dir() and (best is None or score > best[0]):
            best = (score, d, missing)
    looked = ", ".join(str(root / c) if c else str(root) for c in candidates)
    if best is not None and best[0] > 0:
        d, missing = best[1], best[2]
        detail = f"{d} is missing {', '.join(missing)}; {_listing(d)}."
    else:
        detail = f"none of the expected entries were found ({_listing(root)})."
    raise DatasetLayoutError(
        f"{name} not found under {root}: {detail}\n"
        f"Looked in: {looked}.\nExpected layout: {layout_hint}\n"
        f"Point --data-root at the folder that holds your copy of {name}."
    )


def parse_dir(directory: Path, pattern: re.Pattern[str], exts: tuple[str, ...], name: str,
              cam_range: tuple[int, int], drop_pids: Iterable[int] = (-1,)) -> list[tuple[str, int, int]]:
    """(path, pid, camid) for every image in ``directory`` whose name follows ``pattern``.

    ``pattern`` must capture the pid and the 1-based camera; camids are returned 0-based. Images with
    a pid in ``drop_pids`` (Market's junk, -1) are dropped. A file of an image extension whose name
    does not parse is an error, since silently skipping it would change the split.
    """
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in exts)
    if not files:
        raise DatasetLayoutError(
            f"{name}: {directory} holds no {'/'.join(exts)} images ({_listing(directory)})."
        )
    drop = set(drop_pids)
    out = []
    for f in files:
        m = pattern.search(f.name)
        if m is None:
            raise DatasetLayoutError(
                f"{name}: cannot parse person and camera ids from the file name {f} "
                f"(expected a name matching {pattern.pattern!r}, e.g. 0002_c1s1_000451_03.jpg)."
            )
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid in drop:
            continue
        if not cam_range[0] <= cam <= cam_range[1]:
            raise DatasetLayoutError(
                f"{name}: camera {cam} in {f.name} is outside {cam_range[0]}..{cam_range[1]}."
            )
        out.append((str(f), pid, cam - 1))
    return out


def relabel(items: Sequence[tuple[str, int, int]]) -> list[Sample]:
    """Train split: pids mapped to 0..K-1 in sorted order of the original pids."""
    mapping = {pid: i for i, pid in enumerate(sorted({pid for _, pid, _ in items}))}
    return [Sample(p, mapping[pid], cam) for p, pid, cam in items]


@dataclass
class SplitStats:
    num_pids: int
    num_images: int
    num_cams: int


class ReIDDataset:
    """A ReID image dataset: ``train``, ``query`` and ``gallery`` lists of :class:`Sample`.

    Conventions (same as torchreid): camids are 0-based; train pids are relabelled to 0..K-1;
    query/gallery pids keep their original values (pid 0 are distractors, ordinary negatives).
    """

    name = "reid"
    #: generated by reidbench (needs no root; small CPU models and recipes are used on it)
    synthetic = False
    #: variants a name may carry after a hyphen (``synthreid-large``); see registry.resolve_dataset
    variants: tuple[str, ...] = ()

    def __init__(self, root: Path, train: list[Sample], query: list[Sample], gallery: list[Sample]) -> None:
        self.root = Path(root)
        self.train, self.query, self.gallery = train, query, gallery
        for split in SPLITS:
            if not getattr(self, split):
                raise DatasetLayoutError(f"{self.name}: the {split} split under {self.root} is empty.")

    def split(self, name: str) -> list[Sample]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({s.camid for s in self.train})

    def stats(self, split: str) -> SplitStats:
        items = self.split(split)
        return SplitStats(len({s.pid for s in items}), len(items), len({s.camid for s in items}))

    def fingerprint(self) -> str:
        """SHA-256 over every sample's path relative to the root, pid, camid and file size.

        Identifies the exact file lists (and catches a changed or truncated image) without reading
        every image; it is recorded with every result.
        """
        h = hashlib.sha256(self.name.encode())
        for split in SPLITS:
            h.update(f"\n[{split}]".encode())
            for s in self.split(split):
                rel = os.path.relpath(s.path, self.root)
                try:
                    size = os.path.getsize(s.path)
                except OSError:
                    size = -1
                h.update(f"\n{rel}|{s.pid}|{s.camid}|{size}".encode())
        return h.hexdigest()

    def summary(self) -> str:
        """The split statistics table that torchreid prints when it loads a dataset."""
        rows = []
        for split in SPLITS:
            st = self.stats(split)
            rows.append([split, st.num_pids, st.num_images, st.num_cams])
        return f"=> {self.name} loaded from {self.root}\n" + tabulate(
            rows, headers=["subset", "# ids", "# images", "# cameras"], tablefmt="simple"
        )

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, train={len(self.train)}, "
                f"query={len(self.query)}, gallery={len(self.gallery)})")


class FolderLayoutDataset(ReIDDataset):
    """A dataset in the Market-1501 folder layout: one folder per split, pid and camera in the
    file name. Subclasses set the class attributes below and a docstring with the reference."""

    candidates: tuple[str, ...] = ("",)
    dirs: dict[str, str] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    pattern = re.compile(r"([-\d]+)_c(\d)")
    exts: tuple[str, ...] = (".jpg",)
    cam_range: tuple[int, int] = (1, 6)
    drop_pids: tuple[int, ...] = (-1,)
    display_name = "dataset"

    def __init__(self, root: str | os.PathLike) -> None:
        hint = f"<root>/{{{', '.join(self.dirs.values())}}}/*{'|'.join(self.exts)}"
        d = find_dataset_dir(root, self.candidates, list(self.dirs.values()), self.display_name, hint)
        parsed = {
            split: parse_dir(d / sub, self.pattern, self.exts, self.display_name, self.cam_range, self.drop_pids)
            for split, sub in self.dirs.items()
        }
        super().__init__(
            d,
            train=relabel(parsed["train"]),
            query=[Sample(*x) for x in parsed["query"]],
            gallery=[Sample(*x) for x in parsed["gallery"]],
        )
