"""What a preset resolves to (issue 21's decision: synthreid's default model is EfficientNet-Lite0 from
ImageNet; ``--init scratch`` the small ResNet), and that a stored checkpoint's key changes with it."""

import pytest

from reidbench.models import get_preset
from reidbench.models.architectures import parse_init


def test_synthreid_defaults_to_the_imagenet_initialised_lite0_and_scratch_to_the_small_resnet():
    base = get_preset("baseline")
    assert base.resolve("synthreid") == ("efficientnet-lite0", {"pretrained": True}, "cpu-imagenet")
    assert base.resolve("synthreid", True) == base.resolve("synthreid")
    assert base.resolve("synthreid", False) == ("resnet-small", {}, "cpu")
    # the training defenses' presets follow the baseline's model
    for name in ("pd", "jad", "at-lta", "goat", "goat-ft"):
        assert get_preset(name).resolve("synthreid")[::2] == ("efficientnet-lite0", "cpu-imagenet"), name
    # the architecture variants keep their from-scratch stand-ins
    assert get_preset("sb").resolve("synthreid") == ("resnet-small", {"widths": (32, 64, 128, 256)}, "cpu")
    assert get_preset("sb").resolve("synthreid", True)[0] == "efficientnet-lite0"


def test_an_architecture_override_keeps_the_initialisation_it_can_have_and_the_recipe_follows():
    base = get_preset("baseline")
    # resnet-small has no ImageNet weights: left to the default it starts from scratch, with the scratch recipe
    assert base.resolve("synthreid", None, "small-resnet") == ("resnet-small", {}, "cpu")
    assert base.resolve("synthreid", None, "lite2") == ("efficientnet-lite2", {"pretrained": True}, "cpu-imagenet")
    assert base.resolve("synthreid", False, "lite2") == ("efficientnet-lite2", {}, "cpu")
    # real datasets: ImageNet weights by default, the seed's recipe whatever the initialisation
    assert base.resolve("market1501") == ("ft-net", {"pretrained": True}, "seed")
    assert base.resolve("market1501", None, "resnet-small") == ("resnet-small", {}, "seed")
    # asking for ImageNet weights an architecture does not have is left to initialisation() to refuse
    assert base.resolve("synthreid", True, "resnet-small")[1] == {"pretrained": True}


def test_list_models_says_what_each_preset_trains():
    from reidbench.registry import MODELS

    listed = MODELS.entry("jad").defaults
    assert listed == {"real datasets": "ft-net from imagenet, recipe seed",
                      "synthreid": "efficientnet-lite0 from imagenet, recipe cpu-imagenet",
                      "train_defense": "pd", "test_defense": "cs"}
    assert MODELS.entry("sb").defaults["synthreid"] == "resnet-small from scratch, recipe cpu"


def test_init_names_parse_in_one_place():
    assert parse_init("imagenet") is True and parse_init(" Scratch ") is False and parse_init(None) is None
    with pytest.raises(ValueError, match="give one of scratch, imagenet"):
        parse_init("pretrained")


def test_a_stored_checkpoint_is_keyed_by_what_the_preset_resolves_to(tiny_synth, tmp_path, monkeypatch):
    from dataclasses import replace

    from reidbench.data import load_dataset
    from reidbench.matrix import MatrixConfig
    from reidbench.matrix.runner import checkpoint_location
    from reidbench.models import presets

    ds = load_dataset("synthreid", tiny_synth)

    def key(preset="baseline", init=None):
        return checkpoint_location(preset, ds, 0, epochs=None, store=tmp_path, init=init)[1]

    assert key() == key(init="imagenet") != key(init="scratch")
    assert key("jad") == key("pd") != key()  # jad uses pd's weights
    assert MatrixConfig(init="ImageNet").init == "imagenet"
    with pytest.raises(ValueError, match="unknown initialisation"):
        MatrixConfig(init="random")
    # the same preset name with another synthreid model (or recipe) is another checkpoint: a store
    # filled before a preset changed is not reused for it
    before = key()
    real = presets.training_preset
    for change in ({"synth_recipe": "cpu"}, {"synth_arch": "efficientnet-lite2"},
                   {"train_defense_kwargs": {"p_gray": 0.5}}):
        monkeypatch.setattr(presets, "training_preset", lambda name, c=change: replace(real(name), **c))
        assert key() != before, change
    monkeypatch.setattr(presets, "training_preset", real)
    assert key() == before
