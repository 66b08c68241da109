"""from_torchreid on real torchreid models (random weights; torchreid 0.2.5, the test extra): the
adapter feeds them what torchreid feeds them, and they go through reidbench's evaluation, an attack
and a test-time defense like reidbench's own models."""

import copy
import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torchreid warns that its Cython evaluation is not compiled
    from torchreid.reid import models as torchreid_models

from reidbench.attacks import build_attack  # noqa: E402
from reidbench.attacks.evaluate import attack_queries, evaluate_attack, prepare_evalset  # noqa: E402
from reidbench.data import load_dataset  # noqa: E402
from reidbench.evaluation import evaluate_model  # noqa: E402
from reidbench.models import IMAGENET_MEAN, IMAGENET_STD, DefendedModel, from_torchreid, validate_embedder  # noqa: E402
from reidbench.registry import parse_defense  # noqa: E402

SIZE = (128, 64)


@pytest.fixture(scope="module", params=[("osnet_x0_25", 512), ("resnet50", 2048)], ids=lambda p: p[0])
def wrapped(request):
    name, dim = request.param
    torch.manual_seed(0)
    inner = torchreid_models.build_model(name, num_classes=7, loss="softmax", pretrained=False)
    return inner, from_torchreid(inner, input_size=SIZE).eval(), dim


def test_the_adapter_feeds_torchreid_what_torchreid_feeds_it(wrapped):
    inner, emb, dim = wrapped
    assert validate_embedder(emb) == dim
    x = torch.rand(3, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    raw = from_torchreid(inner, input_size=SIZE, flip_tta=False, normalize_feature=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(raw(x), inner((x - mean) / std))
        f = emb(x)                                       # flip-TTA and L2-normalised, as reidbench's models
    torch.testing.assert_close(f.norm(dim=1), torch.ones(3))
    trainable = copy.deepcopy(emb).train()               # a train-mode pass updates BatchNorm statistics
    assert trainable.forward_train(x).logits.shape == (3, 7)   # the identity head, for training and DMR


def test_torchreid_models_go_through_evaluation_an_attack_and_a_defense(wrapped, tiny_synth):
    _, emb, _ = wrapped
    ds = load_dataset("synthreid", tiny_synth)
    metrics = evaluate_model(emb, ds, batch_size=64)
    assert all(0 <= metrics[k] <= 100 for k in ("R1", "mAP", "mINP"))
    ev = prepare_evalset(emb, ds, batch_size=64)
    eps = 5 / 255
    attack = build_attack("sma", emb, eps=eps, steps=3)
    out = attack_queries(attack, ev, emb, keep_images=False)
    assert out["linf_max"] <= eps + 1e-6
    moved = (out["features"] - ev.q_feats).norm(dim=1).mean()
    # the same budget as random signs: what an attack that follows no gradient would do
    g = torch.Generator().manual_seed(0)
    from reidbench.data.transforms import select_rows, to_model_input

    clean = to_model_input(select_rows(ev.query_images, list(range(len(ev.q_pids)))), SIZE, "cpu")
    noise = (clean + eps * (torch.randint(0, 2, clean.shape, generator=g) * 2 - 1)).clamp(0, 1)
    with torch.no_grad():
        by_noise = (emb(noise) - ev.q_feats).norm(dim=1).mean()
    assert moved > 3 * by_noise, (float(moved), float(by_noise))
    cs = parse_defense("cs").build()
    defended = DefendedModel(emb, cs)
    ev_cs = prepare_evalset(emb, ds, batch_size=64, defense=cs, adaptive=True)
    res = evaluate_attack(build_attack("sma", DefendedModel(emb, cs, adaptive=True), eps=eps, steps=2), ev_cs,
                          defended)
    assert res["linf_max"] <= eps + 1e-6 and 0 <= res["attacked"]["mAP"] <= 100
