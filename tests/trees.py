"""Small dataset trees written in the exact layout of each public dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int = 0, size=(16, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(arr).save(path, format=fmt)
    return path


def write_files(root: Path, relpaths) -> list[Path]:
    return [write_image(root / rel, seed=i) for i, rel in enumerate(relpaths)]


MARKET_FILES = [
    "bounding_box_train/0002_c1s1_000451_03.jpg",
    "bounding_box_train/0002_c2s1_000551_01.jpg",
    "bounding_box_train/0007_c3s1_000101_01.jpg",
    "bounding_box_train/0007_c6s2_010101_02.jpg",
    "query/0010_c1s1_001051_00.jpg",
    "query/0011_c2s1_001151_00.jpg",
    "bounding_box_test/0010_c2s1_001251_01.jpg",
    "bounding_box_test/0010_c1s1_001351_01.jpg",
    "bounding_box_test/0011_c5s1_001451_01.jpg",
    "bounding_box_test/0000_c1s1_000001_01.jpg",
    "bounding_box_test/-1_c3s1_000002_00.jpg",
]


def market_tree(root: Path, top: str = "Market-1501-v15.09.15") -> Path:
    write_files(root / top, MARKET_FILES)
    return root


DUKE_FILES = [
    "bounding_box_train/0001_c2_f0046182.jpg",
    "bounding_box_train/0001_c8_f0050000.jpg",
    "bounding_box_train/0005_c3_f0001000.jpg",
    "query/0003_c1_f0010000.jpg",
    "bounding_box_test/0003_c7_f0020000.jpg",
    "bounding_box_test/0004_c1_f0030000.jpg",
]


def duke_tree(root: Path, top: str = "DukeMTMC-reID") -> Path:
    write_files(root / top, DUKE_FILES)
    return root


def msmt_tree(root: Path, version: str = "V1") -> Path:
    top = root / f"MSMT17_{version}"
    train_dir, test_dir = ("train", "test") if version == "V1" else ("mask_train_v2", "mask_test_v2")
    lists = {
        "list_train.txt": [(train_dir, "0000/0000_000_01_0303morning_0015_0.jpg", 0),
                           (train_dir, "0000/0000_001_05_0303morning_0016_1.jpg", 0),
                           (train_dir, "0001/0001_000_12_0303noon_0100_0.jpg", 1)],
        "list_val.txt": [(train_dir, "0002/0002_000_03_0303noon_0200_0.jpg", 2)],
        "list_query.txt": [(test_dir, "0000/0000_000_02_0303morning_0300_0.jpg", 0)],
        "list_gallery.txt": [(test_dir, "0000/0000_001_15_0303afternoon_0400_0.jpg", 0),
                             (test_dir, "0001/0001_000_02_0303afternoon_0500_0.jpg", 1)],
    }
    i = 0
    for list_name, entries in lists.items():
        lines = []
        for d, rel, pid in entries:
            write_image(top / d / rel, seed=i)
            i += 1
            lines.append(f"{rel} {pid}")
        (top / list_name).write_text("\n".join(lines) + "\n")
    return root


CUHK_FILES = [
    "bounding_box_train/0001_c1_1.png",
    "bounding_box_train/0001_c2_2.png",
    "bounding_box_train/0004_c1_1.png",
    "query/0010_c1_1.png",
    "bounding_box_test/0010_c2_1.png",
    "bounding_box_test/0011_c2_1.png",
]


def cuhk_tree(root: Path) -> Path:
    for variant in ("detected", "labeled"):
        files = CUHK_FILES if variant == "detected" else CUHK_FILES[:-1]
        write_files(root / "cuhk03-np" / variant, files)
    return root
