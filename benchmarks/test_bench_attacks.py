"""Attack engine speed (issue 5).

* overhead: one step of the engine vs one hand-written forward + backward-to-input of the same
  model at the same batch size (weights frozen in both) -- target <= 1.10x;
* batching: SMA on 32 queries as one batch vs one query at a time, per image, for a
  ResNet-18-sized model at 128x64 -- target >= 2.5x on CPU.
"""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from reidbench.attacks import SMA
from reidbench.models import ModuleEmbedder, build_architecture

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def frozen(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(DEVICE)


MODELS = {
    "ft_net-R50-256x128-b16": (lambda: build_architecture("ft_net", 751), (256, 128), 16),
    "resnet-small-128x64-b64": (lambda: build_architecture("resnet-small", 751), (128, 64), 64),
}


@pytest.mark.parametrize("which", list(MODELS))
@pytest.mark.benchmark(group="attack step overhead")
def test_raw_forward_backward_baseline(benchmark, which):
    make, size, batch = MODELS[which]
    torch.manual_seed(0)
    model = frozen(make())
    x = torch.rand(batch, 3, *size, device=DEVICE)
    with torch.no_grad():
        ref = model(x)

    def step():
        xa = x.detach().requires_grad_(True)
        loss = (model(xa) - ref).pow(2).sum()
        (g,) = torch.autograd.grad(loss, xa)
        return (xa + g.sign() / 255).clamp(0, 1)

    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("which", list(MODELS))
@pytest.mark.benchmark(group="attack step overhead")
def test_reidbench_engine_step(benchmark, which):
    make, size, batch = MODELS[which]
    torch.manual_seed(0)
    model = make().to(DEVICE)
    x = torch.rand(batch, 3, *size, device=DEVICE)
    atk = SMA(model, steps=1)
    with atk._attack_mode():
        atk._generator = torch.Generator().manual_seed(0)
        state = atk.prepare(x, None, None, None)
        x0 = atk.init(x)
        benchmark.pedantic(atk.run_steps, args=(x0, state), rounds=5, iterations=1, warmup_rounds=1)


def resnet18_embedder():
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    return ModuleEmbedder(net, input_size=(128, 64), flip_tta=False)


@pytest.mark.benchmark(group="SMA 32 queries, ResNet-18 128x64")
def test_sma_batched_reidbench(benchmark):
    torch.manual_seed(0)
    model = resnet18_embedder().to(DEVICE)
    x = torch.rand(32, 3, 128, 64, device=DEVICE)
    atk = SMA(model, steps=5)
    benchmark.pedantic(atk, args=(x,), rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="SMA 32 queries, ResNet-18 128x64")
def test_sma_one_at_a_time_baseline(benchmark):
    torch.manual_seed(0)
    model = resnet18_embedder().to(DEVICE)
    x = torch.rand(32, 3, 128, 64, device=DEVICE)
    atk = SMA(model, steps=5)

    def one_by_one():
        return torch.cat([atk(x[i:i + 1]) for i in range(len(x))])

    benchmark.pedantic(one_by_one, rounds=2, iterations=1, warmup_rounds=1)


# --- adaptive attacks through a randomised defense (issue 20): EOT 10 through CS-R --------------------
# The seed's geometry: 256x128 model input, CS sizes of Market's native 128x64.
EOT_BATCH, EOT_SIZE = 32, (256, 128)


def _eot_setup():
    from reidbench.defenses import CircuitousScalingRandom

    torch.manual_seed(0)
    model = frozen(build_architecture("resnet-small", 751).to(DEVICE))
    x = torch.rand(EOT_BATCH, 3, *EOT_SIZE, device=DEVICE)
    return model, x, CircuitousScalingRandom(seed=0)


@pytest.mark.benchmark(group="EOT 10 through CS-R, resnet-small 256x128 b32")
def test_ten_plain_forward_backward_baseline(benchmark):
    """Ten plain forward + backward-to-input passes of the model: what EOT 10 costs without a transform."""
    model, x, _ = _eot_setup()
    with torch.no_grad():
        ref = model(x)

    def ten():
        total = torch.zeros_like(x)
        for _ in range(10):
            xa = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad((model(xa) - ref).pow(2).sum(), xa)
            total += g
        return total

    benchmark.pedantic(ten, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="EOT 10 through CS-R, resnet-small 256x128 b32")
def test_eot10_step_through_cs_random_reidbench(benchmark):
    """One step of the engine's adaptive SMA through CS-R with 10 EOT draws (keyed, per image)."""
    from reidbench.models import DefendedModel

    model, x, defense = _eot_setup()
    atk = SMA(DefendedModel(model, defense, adaptive=True), steps=1, eot_samples=10)
    with atk._attack_mode():
        atk._generator = torch.Generator().manual_seed(0)
        state = atk.prepare(x, None, None, None)
        x0 = atk.init(x)
        benchmark.pedantic(atk.run_steps, args=(x0, state), rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="CS-R attack transform, 32 images 256x128")
def test_cs_random_per_image_baseline(benchmark):
    """The former form: each image's chain of F.interpolate calls on its own, forward and backward."""
    from reidbench.defenses import circuitous_scaling

    _, x, defense = _eot_setup()

    def per_image():
        xa = x.detach().requires_grad_(True)
        y = torch.cat([circuitous_scaling(xa[k:k + 1], defense._draw(defense.generator), EOT_SIZE, backend="torch")
                       for k in range(len(xa))])
        (g,) = torch.autograd.grad(y.sum(), xa)
        return g

    benchmark.pedantic(per_image, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="CS-R attack transform, 32 images 256x128")
def test_cs_random_batched_reidbench(benchmark):
    """CS-R's attack transform: every stage of all images in one batched product, forward and backward."""
    _, x, defense = _eot_setup()

    def batched():
        xa = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(defense.attack_transform(xa).sum(), xa)
        return g

    benchmark.pedantic(batched, rounds=3, iterations=1, warmup_rounds=1)


RRP_EOT = 10  # EOT draws of a step through RRP: 320 images


def _rrp_setup():
    from reidbench.defenses import RRP

    x = torch.rand(EOT_BATCH * RRP_EOT, 3, *EOT_SIZE, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    return x, RRP(mode="bilinear", seed=0)


@pytest.mark.benchmark(group="RRP (bilinear) forward + backward, 320 images 256x128")
def test_rrp_bilinear_per_image_baseline(benchmark):
    """The former form: one F.interpolate and one padding per image."""
    from reidbench.models.base import IMAGENET_MEAN

    x, defense = _rrp_setup()
    fill = torch.tensor(IMAGENET_MEAN, device=DEVICE).view(1, 3, 1, 1)
    h, w = EOT_SIZE

    def per_image():
        xa = x.detach().requires_grad_(True)
        d = defense._draws(len(xa), h, w).tolist()
        y = torch.cat([F.pad(F.interpolate(xa[k:k + 1], size=(nh, nw), mode="bilinear") - fill,
                             (left, w + w // 8 - nw - left, top, h + h // 8 - nh - top)) + fill
                       for k, (nh, nw, top, left) in enumerate(d)])
        (g,) = torch.autograd.grad(y.sum(), xa)
        return g

    benchmark.pedantic(per_image, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="RRP (bilinear) forward + backward, 320 images 256x128")
def test_rrp_bilinear_grouped_reidbench(benchmark):
    """RRP's transform: one F.interpolate per drawn size (32 sizes at 256 rows), then the placements."""
    x, defense = _rrp_setup()

    def grouped():
        xa = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(defense.test_transform(xa).sum(), xa)
        return g

    benchmark.pedantic(grouped, rounds=3, iterations=1, warmup_rounds=1)
