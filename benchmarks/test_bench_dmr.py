"""DMR speed (issue 8): attacking queries costs one generator forward per image.

baseline = the bare generator forward (no_grad) on a batch; reidbench = ``DMR.__call__`` on the
same batch (generator, eps rescaling, clamp, 8-bit grid). Target: about 1x. ``images_per_s`` is
recorded for the embedded default's configuration (ngf 16, 128x64) and the reference's (ngf 32,
256x128).
"""

import pytest
import torch

from reidbench.attacks import DMR

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CONFIGS = {"synth-ngf16-128x64-b64": (16, (128, 64), 64), "reference-ngf32-256x128-b32": (32, (256, 128), 32)}


def make(ngf):
    torch.manual_seed(0)
    atk = DMR(None, ngf=ngf).to(DEVICE)
    atk.fitted = True  # speed does not depend on the weights
    return atk


@pytest.mark.parametrize("which", list(CONFIGS))
@pytest.mark.benchmark(group="dmr one pass")
def test_generator_forward_baseline(benchmark, which):
    ngf, size, batch = CONFIGS[which]
    atk = make(ngf)
    atk.generator_net.eval()
    x = torch.rand(batch, 3, *size, device=DEVICE)

    def fwd():
        with torch.no_grad():
            return atk.generator_net(x)

    benchmark.pedantic(fwd, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = round(batch / benchmark.stats.stats.mean, 1)


@pytest.mark.parametrize("which", list(CONFIGS))
@pytest.mark.benchmark(group="dmr one pass")
def test_reidbench_dmr_attack(benchmark, which):
    ngf, size, batch = CONFIGS[which]
    atk = make(ngf)
    x = torch.rand(batch, 3, *size, device=DEVICE)
    benchmark.pedantic(lambda: atk(x), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = round(batch / benchmark.stats.stats.mean, 1)
