"""Golden outputs of every component, per numerics version.

Each attack, defense and the evaluation declares ``numerics`` (a version string, part of every
matrix cell's key). This module computes a small digest of each component's output on a fixed tiny
model and input; ``golden.json`` pins the digest to the version. A change of a component's numbers
without a bump of its version fails ``test_numerics.py``; after a deliberate change, bump the
version and record the new digest with::

    python -m tests.numerics.golden --update

Not pinned here: DMR's fitting (its generator is trained on a dataset; its application and
hyper-parameters are covered by tests/attacks/test_dmr.py) and the fine-tuning stages of AT and
GOAT (they train a model; their checkpoints' keys carry the training numerics).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from reidbench import rng
from reidbench.attacks import AttackContext, FeatureBank, MetricAttack, build_attack
from reidbench.evaluation import EVAL_NUMERICS, evaluate_features
from reidbench.models import build_architecture
import reidbench.defenses  # noqa: F401  (registers the defenses)
from reidbench.registry import ATTACKS, DEFENSES, parse_defense

GOLDEN = Path(__file__).with_name("golden.json")
SIZE = (64, 32)


def _model():
    torch.manual_seed(0)
    m = build_architecture("resnet-small", 6, widths=(8, 16, 32, 48))
    with torch.no_grad():
        m.train()(torch.rand(16, 3, *SIZE, generator=torch.Generator().manual_seed(2)))
    return m.eval()


def _data(model):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, *SIZE, generator=g) * 0.8 + 0.1
    pids, camids = torch.tensor([1, 1, 2, 3]), torch.tensor([0, 1, 0, 1])
    gallery = torch.rand(10, 3, *SIZE, generator=g)
    g_pids = torch.tensor([1, 1, 2, 2, 3, 3, 4, 4, 5, 0])
    g_cams = torch.tensor([1, 0, 1, 0, 1, 0, 0, 1, 2, 2])
    with torch.no_grad():
        gf, qf = model(gallery), model(x)
    return x, pids, camids, AttackContext(gallery=FeatureBank(gf, g_pids, g_cams),
                                          attacker_set=FeatureBank(qf, pids, camids))


def _digest(t: torch.Tensor) -> list[float]:
    t = t.double()
    return [round(float(t.sum()), 4), round(float(t.abs().sum()), 4), round(float(t.flatten()[::97].sum()), 4)]


def attack_names() -> list[str]:
    return [n for n in ATTACKS.names() if isinstance(ATTACKS.get(n), type) and issubclass(ATTACKS.get(n), MetricAttack)]


def attack_digest(name: str) -> list[float]:
    model = _model()
    x, pids, camids, ctx = _data(model)
    adv = build_attack(name, model, steps=4, seed=3)(x, pids, camids, ctx)
    return _digest((adv - x) * 255)


def defense_names() -> list[str]:
    return list(DEFENSES.names())


def defense_digest(name: str) -> list[float]:
    d = parse_defense(name).build()
    x = torch.rand(3, 3, *SIZE, generator=torch.Generator().manual_seed(4))
    out: list[float] = []
    if d.has_test_side:
        with rng.scope(key="golden", purpose="query", indices=range(len(x))):
            out += _digest(d.test_transform(x))
            out += _digest(d.attack_transform(x))
    if d.has_train_side:
        img = (x[0] * 255).to(torch.uint8)
        out += _digest(d.train_transform(img, torch.Generator().manual_seed(5)).float())
    return out


def evaluation_digest() -> list[float]:
    g = torch.Generator().manual_seed(6)
    qf, gf = torch.randn(12, 16, generator=g), torch.randn(40, 16, generator=g)
    q_pids, g_pids = torch.arange(12) % 6, torch.arange(40) % 8
    q_cams, g_cams = torch.arange(12) % 2, torch.arange(40) % 3
    res = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, rerank=True)
    return [round(res[k], 4) for k in ("R1", "R5", "mAP", "mINP")] + \
        [round(res["rerank"][k], 4) for k in ("R1", "mAP", "mINP")]


def current() -> dict:
    """Every component's numerics version and digest, computed now."""
    return {
        "attacks": {n: {"numerics": ATTACKS.entry(n).attr("numerics", "0"), "digest": attack_digest(n)}
                    for n in attack_names()},
        "defenses": {n: {"numerics": DEFENSES.entry(n).attr("numerics", "0"), "digest": defense_digest(n)}
                     for n in defense_names()},
        "evaluation": {"numerics": EVAL_NUMERICS, "digest": evaluation_digest()},
    }


if __name__ == "__main__":
    if "--update" not in sys.argv:
        print(__doc__)
        sys.exit(2)
    GOLDEN.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
