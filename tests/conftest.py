import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/oracles.py


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Caches and generated data of the test session live in a temporary REIDBENCH_HOME."""
    home = tmp_path_factory.mktemp("reidbench_home")
    old = os.environ.get("REIDBENCH_HOME")
    os.environ["REIDBENCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("REIDBENCH_HOME", None)
    else:
        os.environ["REIDBENCH_HOME"] = old


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthreid written once per test session."""
    from reidbench.data.synthreid import generate_synthreid

    out = tmp_path_factory.mktemp("synth") / "tiny"
    return generate_synthreid(out, size="tiny", seed=0, workers=1, progress=False)


@pytest.fixture(scope="session")
def tiny_trained(tiny_synth):
    """A small model trained for a few epochs on the tiny synthreid (a victim/surrogate for tests
    that need a model that actually ranks): ``(model, dataset, decoded train split)``."""
    import torch

    from reidbench.data import load_dataset, load_images
    from reidbench.models import build_architecture
    from reidbench.train import get_recipe, train_model

    ds = load_dataset("synthreid", tiny_synth)
    tr = load_images(ds.train, progress=False)
    torch.manual_seed(0)
    model = build_architecture("resnet-small", int(tr.pids.max()) + 1, widths=(16, 32, 48, 64))
    recipe = get_recipe("cpu").replace(epochs=30, batch_size=32)  # about 10 s; R1 35 / mAP 34
    result = train_model(model, tr.images, tr.pids, recipe, seed=0, progress=False)
    return result.model.eval(), ds, tr
