"""Planning: which cells, stable keys, every determining input in the key."""

import dataclasses
import subprocess
import sys

import pytest

from reidbench.matrix import ALL_ATTACKS, Cell, MatrixConfig, cell_key, plan_cells, resolve_attacks
from reidbench.registry import UnknownNameError


def test_cells_of_a_defended_and_an_undefended_model():
    cfg = MatrixConfig(models=("baseline", "jad"), attacks=("sma", "lta", "dmr"))
    cells = plan_cells(cfg)
    got = {(c.model, c.defense, c.attack, c.threat) for c in cells}
    assert got == {
        ("baseline", "none", "clean", "clean"), ("baseline", "none", "sma", "white-box"),
        ("baseline", "none", "lta", "white-box"), ("baseline", "none", "dmr", "transfer"),
        ("jad", "cs", "clean", "clean"), ("jad", "cs", "sma", "oblivious"), ("jad", "cs", "sma", "adaptive"),
        ("jad", "cs", "lta", "oblivious"), ("jad", "cs", "lta", "adaptive"), ("jad", "cs", "dmr", "transfer"),
    }
    assert len(cells) == len(got)
    no_adapt = plan_cells(dataclasses.replace(cfg, adaptive=False))
    assert not any(c.threat == "adaptive" for c in no_adapt) and len(no_adapt) == 8


def test_extra_defenses_seeds_and_eps_multiply_the_cells():
    cfg = MatrixConfig(models=("baseline",), attacks=("sma",), defenses=("none", "jpeg"), seeds=(0, 1),
                       eps=(2 / 255, 5 / 255))
    cells = plan_cells(cfg)
    rows = {(c.defense, c.seed) for c in cells}
    assert rows == {("none", 0), ("none", 1), ("jpeg", 0), ("jpeg", 1)}
    # per row: clean + 2 eps x (white-box | oblivious + adaptive)
    assert sum(1 for c in cells if c.defense == "none") == 2 * (1 + 2)
    assert sum(1 for c in cells if c.defense == "jpeg") == 2 * (1 + 2 * 2)
    jad = plan_cells(MatrixConfig(models=("jad",), attacks=("sma",), defenses=("none", "jpeg")))
    assert {c.defense for c in jad} == {"cs", "cs+jpeg"}


def test_attack_names_resolve_with_all_and_aliases():
    assert resolve_attacks(["all"]) == ALL_ATTACKS
    assert resolve_attacks(["M-IFGSM", "sma", "mifgsm", "ta:PGD"]) == ("mifgsm", "sma", "ta:PGD")
    with pytest.raises(UnknownNameError, match="(?i)did you mean"):
        resolve_attacks(["smaa"])


BASE = Cell("baseline", "none", "sma", "white-box", "synthreid", 0, 5 / 255, 15)
KW = dict(checkpoint_sha256="a" * 64, dataset_fingerprint="f" * 64, extra={"rerank": True}, version="1.0")


def test_key_is_stable_across_processes():
    here = cell_key(BASE, **KW)
    code = ("from reidbench.matrix import Cell, cell_key; "
            "print(cell_key(Cell('baseline', 'none', 'sma', 'white-box', 'synthreid', 0, 5/255, 15), "
            "checkpoint_sha256='a'*64, dataset_fingerprint='f'*64, extra={'rerank': True}, version='1.0'))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there and len(here) == 64


@pytest.mark.parametrize("change", [
    dict(cell=dataclasses.replace(BASE, attack="lta")),
    dict(cell=dataclasses.replace(BASE, eps=8 / 255)),
    dict(cell=dataclasses.replace(BASE, steps=50)),
    dict(cell=dataclasses.replace(BASE, seed=1)),
    dict(cell=dataclasses.replace(BASE, defense="jpeg")),
    dict(cell=dataclasses.replace(BASE, threat="adaptive")),
    dict(cell=dataclasses.replace(BASE, model="pd")),
    dict(checkpoint_sha256="b" * 64),
    dict(dataset_fingerprint="e" * 64),
    dict(extra={"rerank": False}),
    dict(version="1.1"),
])
def test_every_determining_input_changes_the_key(change):
    kw = dict(KW)
    cell = change.pop("cell", BASE)
    kw.update(change)
    assert cell_key(cell, **kw) != cell_key(BASE, **KW)


def test_attack_args_reach_their_attack_only_and_change_its_key():
    plain = MatrixConfig(models=("baseline",), attacks=("sma", "mifgsm"))
    faithful = dataclasses.replace(plain, attack_args={"mifgsm": {"gong_faithful": True}})
    before = {c.attack_name: c for c in plan_cells(plain)}
    after = {c.attack_name: c for c in plan_cells(faithful)}
    assert after["mifgsm"].attack_kwargs == {"gong_faithful": True} and after["sma"].attack_kwargs == {}
    k = dict(checkpoint_sha256="c" * 64, dataset_fingerprint="d" * 64)
    assert cell_key(after["sma"], **k) == cell_key(before["sma"], **k)
    assert cell_key(after["mifgsm"], **k) != cell_key(before["mifgsm"], **k)
    from reidbench.matrix.runner import cell_extra

    assert cell_extra(after["mifgsm"], faithful, None)["attack"]["gong_faithful"] is True


def test_a_transfer_cells_key_does_not_depend_on_where_its_generator_is_stored():
    """The same fitted generator in two stores (two machines, two $REIDBENCH_HOME) is the same cell;
    another generator is another cell."""
    from reidbench.matrix.runner import cell_extra

    cfg = MatrixConfig(models=("baseline",), attacks=("dmr",))
    cell = next(c for c in plan_cells(cfg) if not c.is_clean)
    hp = {"eps": 16 / 255, "seed": 0}

    def key(path, sha="ab" * 32):
        info = {"surrogate_preset": "baseline", "surrogate_sha256": "cd" * 32, "generator_sha256": sha,
                "generator": path}
        return cell_key(cell, checkpoint_sha256="ef" * 32, dataset_fingerprint="01" * 32,
                        extra=cell_extra(cell, cfg, None, (hp, info)))

    assert key("/home/a/.cache/reidbench/checkpoints/dmr/x/generator.pt") == key("/tmp/b/checkpoints/dmr/x/generator.pt")
    assert key("/tmp/b/generator.pt") != key("/tmp/b/generator.pt", sha="12" * 32)
