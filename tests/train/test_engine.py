import json

import pytest
import torch

from reidbench.data import load_dataset, load_images
from reidbench.evaluation import evaluate_model
from reidbench.models import build_architecture, load_checkpoint
import reidbench.train.engine as engine
from reidbench.train import Recipe, train_model, train_preset, triplet_loss

FAST = Recipe(name="test", epochs=4, batch_size=32, lr=2e-3, pad=4)


@pytest.fixture(scope="module")
def tiny(tiny_synth):
    ds = load_dataset("synthreid", tiny_synth)
    return ds, load_images(ds.train, progress=False)


def fresh(n_classes, seed=0):
    torch.manual_seed(seed)
    return build_architecture("resnet-small", n_classes, widths=(8, 16, 32, 48))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny, tmp_path):
    _, tr = tiny
    n = int(tr.pids.max()) + 1
    full = train_model(fresh(n), tr.images, tr.pids, FAST, seed=5, out_dir=tmp_path / "full", progress=False)
    # killed in the middle of epoch 3 (after the epoch-2 checkpoint), then resumed with a fresh model
    per_epoch = len(tr.pids) // FAST.batch_size

    class Killed(Exception):
        pass

    def kill(model, x, y, step):
        if step == 2 * per_epoch + 1:
            raise Killed
        return x, y

    with pytest.raises(Killed):
        train_model(fresh(n), tr.images, tr.pids, FAST, seed=5, out_dir=tmp_path / "cut", batch_hook=kill,
                    progress=False)
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    resumed = train_model(fresh(n, seed=99), tr.images, tr.pids, FAST, seed=5, out_dir=tmp_path / "cut",
                          resume=True, progress=False)
    assert resumed.resumed_from_epoch == 2 and len(resumed.history) == 4
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert json.loads((tmp_path / "full" / "config.json").read_text())["seed"] == 5


def test_same_seed_same_weights_other_seed_differs(tiny):
    _, tr = tiny
    n = int(tr.pids.max()) + 1
    r = FAST.replace(epochs=1)
    a = train_model(fresh(n), tr.images, tr.pids, r, seed=1, progress=False).model
    b = train_model(fresh(n), tr.images, tr.pids, r, seed=1, progress=False).model
    c = train_model(fresh(n), tr.images, tr.pids, r, seed=2, progress=False).model
    wa, wb, wc = (m.neck.classifier.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_short_training_beats_chance_by_a_wide_margin(tiny, tmp_path):
    ds, _ = tiny
    untrained = fresh(ds.num_train_pids).eval()
    before = evaluate_model(untrained, ds)
    result, card = train_preset("baseline", ds, tmp_path, seed=0, epochs=25, pretrained=False, progress=False)
    after = evaluate_model(result.model, ds)
    assert after["mAP"] > 3 * before["mAP"] and after["R1"] > before["R1"] + 15
    assert card["preset"] == "baseline" and card["arch"] == "resnet-small"
    model, _ = load_checkpoint(tmp_path / "model.pt")
    assert evaluate_model(model, ds)["mAP"] == pytest.approx(after["mAP"], abs=1e-9)


def test_hooks_are_called(tiny):
    _, tr = tiny
    n = int(tr.pids.max()) + 1
    seen = {"transform": 0, "hook": 0}

    def transform(img, gen):
        seen["transform"] += 1
        assert img.shape == (3, 128, 64) and 0 <= float(img.min()) and float(img.max()) <= 1
        return 1.0 - img

    def hook(model, x, y, step):
        seen["hook"] += 1
        assert model.training
        return x, y

    res = train_model(fresh(n), tr.images, tr.pids, FAST.replace(epochs=1), seed=0, train_transform=transform,
                      batch_hook=hook, progress=False)
    batches = len(tr.pids) // FAST.batch_size
    assert seen == {"transform": batches * FAST.batch_size, "hook": batches}
    assert 0 <= res.history[0]["hook_share"] <= 1


def test_triplet_loss_values():
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 3.5]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor 0: hardest positive 1.0, hardest negative 3.0 -> relu(1 - 3 + 0.3) = 0
    assert float(triplet_loss(f, y, 0.3)) == pytest.approx(0.0)
    y2 = torch.tensor([0, 1, 0, 1])
    # anchor 0: pos at 3.0, neg at 1.0 -> 2.3; anchor 1: pos 3.64, neg 1 -> ...
    assert float(triplet_loss(f, y2, 0.3)) > 1.0


def test_recipe_validation():
    with pytest.raises(ValueError, match="multiple of num_instances"):
        Recipe(batch_size=30, num_instances=4)
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(optimizer="rmsprop")


def test_the_training_state_keeps_the_cuda_generators_and_a_resume_restores_them(tiny, tmp_path, monkeypatch):
    """Dropout and random ops on a GPU draw from the CUDA generators: the epoch checkpoint saves their
    states and a resumed run sets them back (a CPU machine stands in for one with two GPUs)."""
    _, tr = tiny
    n = int(tr.pids.max()) + 1
    states = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5, 6], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(engine, "_cuda_available", lambda: True)   # the optimiser still sees a CPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: restored.append([t.clone() for t in s]))
    r = FAST.replace(epochs=1)
    train_model(fresh(n), tr.images, tr.pids, r, seed=0, out_dir=tmp_path, device="cpu", progress=False)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["cuda_rng"]
    assert [t.tolist() for t in saved] == [[1, 2, 3], [4, 5, 6]]
    states[0] = torch.tensor([9, 9, 9], dtype=torch.uint8)  # the generators moved on since
    train_model(fresh(n), tr.images, tr.pids, r.replace(epochs=2), seed=0, out_dir=tmp_path, resume=True,
                device="cpu", progress=False)
    assert [t.tolist() for t in restored[0]] == [[1, 2, 3], [4, 5, 6]]


def test_channels_last_and_compile_change_how_it_runs_not_what_it_computes(tiny, tmp_path):
    """Channels-last memory format and a torch.compile'd forward pass give one process's eager
    weights to float rounding, and say so in config.json. One SGD step of the CE loss: the triplet
    loss's hard mining makes runs chaotic (a rounding difference switches a hardest negative of a
    fresh model's near-tied distances), whatever the layout."""
    _, tr = tiny
    n = int(tr.pids.max()) + 1
    r = FAST.replace(epochs=1, sampler="random", optimizer="sgd", lr=0.01, triplet_weight=0.0)
    images, pids = tr.images[:32], tr.pids[:32]
    ref = train_model(fresh(n), images, pids, r, seed=3, progress=False)
    for kw in ({"channels_last": True}, {"compile": "aot_eager"}):
        out = tmp_path / next(iter(kw))
        res = train_model(fresh(n), images, pids, r, seed=3, out_dir=out, progress=False, **kw)
        assert res.history[0]["loss"] == pytest.approx(ref.history[0]["loss"], rel=1e-5), kw
        for (k, a), (_, b) in zip(ref.model.state_dict().items(), res.model.state_dict().items()):
            assert torch.allclose(a.float(), b.float(), atol=1e-5), (kw, k)
        conv = next(m for m in res.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == bool(kw.get("channels_last"))
        execution = json.loads((out / "config.json").read_text())["execution"]
        assert execution == {"channels_last": bool(kw.get("channels_last")), "compile": kw.get("compile")}


def test_bf16_mixed_precision_trains_on_the_cpu_and_fp16_needs_cuda(tiny, tmp_path):
    _, tr = tiny
    n = int(tr.pids.max()) + 1
    r = FAST.replace(epochs=1)
    ref = train_model(fresh(n), tr.images, tr.pids, r, seed=3, progress=False)
    bf = train_model(fresh(n), tr.images, tr.pids, r.replace(amp="bf16"), seed=3, out_dir=tmp_path, progress=False)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in bf.model.parameters())
    assert bf.history[0]["loss"] == pytest.approx(ref.history[0]["loss"], rel=0.05)  # the same training, rounded
    assert bf.history[0]["loss"] != ref.history[0]["loss"]                          # ... in bf16
    assert json.loads((tmp_path / "config.json").read_text())["recipe"]["amp"] == "bf16"
    with pytest.raises(ValueError, match="bf16"):
        train_model(fresh(n), tr.images, tr.pids, r.replace(amp="fp16"), seed=3, progress=False)
    with pytest.raises(ValueError, match="amp must be one of"):
        r.replace(amp="fp8")


def test_a_non_finite_loss_stops_training_before_its_state_is_written(tiny, tmp_path, monkeypatch):
    """The loop reads its device-side sums every READ_EVERY steps only; a NaN loss is still an error,
    raised before the epoch's training state is written."""
    _, tr = tiny
    n = int(tr.pids.max()) + 1
    calls = []
    real = engine.triplet_loss

    def poisoned(features, pids, margin):
        calls.append(1)
        value = real(features, pids, margin)
        return value * float("nan") if len(calls) == 2 else value

    monkeypatch.setattr(engine, "triplet_loss", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite at epoch 1"):
        train_model(fresh(n), tr.images, tr.pids, FAST.replace(epochs=2), seed=3, out_dir=tmp_path, progress=False)
    assert not (tmp_path / engine.TRAIN_STATE_FILE).exists()
