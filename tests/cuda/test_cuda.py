"""The device-dependent properties on a GPU (marked ``cuda``; skipped with a reason where none is):
an attack's budget, dtype and device; CPU/GPU parity of attacks and evaluation within stated
tolerances; a training epoch; the JPEG round trip (tests/data/test_jpeg.py). CI is CPU-only: these
run where the device tool lends a GPU (``python -m pytest -m cuda tests``).

``REIDBENCH_TEST_DEVICE=cpu`` runs them with the CPU as the "device" side, which checks the tests
themselves on a machine without a GPU (parity is then exact)."""

import os

import pytest
import torch

from reidbench.attacks import FNA, LTA, MIFGSM, ODFA, SMA, AttackContext, FeatureBank
from reidbench.evaluation import evaluate_features
from reidbench.models import build_architecture

from ..attacks.conftest import SIZE, query_gallery

DEVICE = os.environ.get("REIDBENCH_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")]

EPS = 5 / 255
ATTACKS = {"sma": SMA, "lta": LTA, "mifgsm": MIFGSM, "fna": FNA, "odfa": ODFA}


def _model(device):
    torch.manual_seed(0)
    m = build_architecture("resnet-small", 6, widths=(8, 16, 32, 48))
    with torch.no_grad():
        m.train()(torch.rand(16, 3, *SIZE))
    return m.eval().to(device)


def _data(device):
    return tuple(t.to(device) for t in query_gallery())


def _attack(name, device):
    model = _model(device)
    x, pids, camids, gallery, g_pids, g_cams = _data(device)
    with torch.no_grad():
        gf, qf = model(gallery), model(x)
    ctx = AttackContext(gallery=FeatureBank(gf, g_pids, g_cams), attacker_set=FeatureBank(qf, pids, camids))
    adv = ATTACKS[name](model, eps=EPS, alpha=1 / 255, steps=10, seed=0)(x, pids, camids, ctx)
    with torch.no_grad():
        moved = (model(adv) - qf).norm(dim=1)
    return x, adv, moved


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_stays_on_the_device_in_budget_and_dtype(name):
    x, adv, moved = _attack(name, DEVICE)
    assert adv.device.type == torch.device(DEVICE).type and adv.dtype == torch.float32
    assert (adv - x).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert moved.mean() > 0


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_moves_features_on_the_gpu_as_on_the_cpu(name):
    """Sign steps turn float differences into whole steps at a few pixels, so the images are compared
    on average and the attack by how far it moves the features: within 0.25 eps per pixel on
    average, within 5 % of feature displacement."""
    x, adv_cpu, moved_cpu = _attack(name, "cpu")
    _, adv_dev, moved_dev = _attack(name, DEVICE)
    assert (adv_dev.cpu() - adv_cpu).abs().mean() <= 0.25 * EPS
    assert moved_dev.mean().cpu().item() == pytest.approx(moved_cpu.mean().item(), rel=0.05)


def test_evaluation_gives_the_cpu_metrics():
    g = torch.Generator().manual_seed(2)
    qf, gf = torch.randn(40, 64, generator=g), torch.randn(300, 64, generator=g)
    qp, gp = torch.randint(0, 20, (40,), generator=g), torch.randint(0, 20, (300,), generator=g)
    qc, gc = torch.zeros(40, dtype=torch.int64), torch.ones(300, dtype=torch.int64)
    cpu = evaluate_features(qf, gf, qp, gp, qc, gc, rerank=True)
    dev = evaluate_features(qf.to(DEVICE), gf.to(DEVICE), qp.to(DEVICE), gp.to(DEVICE), qc.to(DEVICE), gc.to(DEVICE),
                            rerank=True)
    for key in ("R1", "R5", "mAP", "mINP"):
        assert dev[key] == pytest.approx(cpu[key], abs=1e-3), key
        assert dev["rerank"][key] == pytest.approx(cpu["rerank"][key], abs=1e-3), key


def test_a_training_epoch_on_the_device():
    from reidbench.train import get_recipe, train_model

    g = torch.Generator().manual_seed(3)
    images = (torch.rand(64, 3, 32, 16, generator=g) * 255).to(torch.uint8)
    pids = torch.arange(8).repeat_interleave(8)
    recipe = get_recipe("cpu").replace(epochs=2, batch_size=32, num_instances=4)

    def run(device, workers=0):
        torch.manual_seed(0)
        model = build_architecture("resnet-small", 8, widths=(8, 16, 16, 16), input_size=(32, 16))
        res = train_model(model, images, pids, recipe, seed=5, device=device, progress=False, workers=workers)
        return res

    dev, cpu = run(DEVICE), run("cpu")
    assert next(dev.model.parameters()).device.type == torch.device(DEVICE).type
    assert all(torch.isfinite(p).all() for p in dev.model.parameters())
    assert dev.history[0]["loss"] == pytest.approx(cpu.history[0]["loss"], rel=1e-3)  # the first epoch's mean loss
    # DataLoader workers handing pinned rows over for asynchronous copies: the same batches, the same loss
    loaded = run(DEVICE, workers=2)
    assert loaded.history[0]["loss"] == pytest.approx(dev.history[0]["loss"], rel=1e-5)


def test_randomised_transforms_run_batched_on_the_device():
    """CS-R's and RRP's batched forms on the device: same draws as on the CPU, outputs on the device,
    CS-R within one grey level of the CPU's (8-bit rounding after float sums in another order), RRP
    equal (a gather)."""
    from reidbench.defenses import RRP, CircuitousScalingRandom

    x = torch.rand(6, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    for make, tol in ((lambda: CircuitousScalingRandom(seed=2, native=(64, 32)), 1 / 255 + 1e-6), (lambda: RRP(seed=2), 0)):
        on_dev = make().attack_transform(x.to(DEVICE))
        on_cpu = make().attack_transform(x)
        assert on_dev.device.type == torch.device(DEVICE).type and on_dev.shape == on_cpu.shape
        assert float((on_dev.cpu() - on_cpu).abs().max()) <= tol
