import pytest

from reidbench.registry import DATASETS, Registry, UnknownNameError


def make_registry():
    reg = Registry("attack")

    @reg.register("mifgsm", aliases=("m-ifgsm", "mi-fgsm"), paper="Bai et al.")
    class MIFGSM:
        """Metric MI-FGSM."""

        def __init__(self, model=None, eps=5 / 255, steps=15):
            pass

    @reg.register("sma")
    class SMA:
        pass

    return reg, MIFGSM, SMA


def test_lookup_is_case_insensitive_and_follows_aliases():
    reg, MIFGSM, SMA = make_registry()
    for name in ("mifgsm", "MIFGSM", "m-ifgsm", "M-IFGSM", "mi_fgsm", " Mi-FGSM "):
        assert reg.get(name) is MIFGSM
    assert reg.get("SMA") is SMA
    assert "M-IFGSM" in reg and "pgd" not in reg
    assert reg.names() == ["mifgsm", "sma"]


def test_unknown_name_lists_known_names_and_suggests_the_closest():
    reg, _, _ = make_registry()
    with pytest.raises(KeyError) as exc:
        reg.get("mifgs")
    msg = str(exc.value)
    assert isinstance(exc.value, UnknownNameError)
    assert "unknown attack 'mifgs'" in msg
    assert "Did you mean 'mifgsm'?" in msg
    assert "mifgsm, sma" in msg
    with pytest.raises(KeyError) as exc:
        reg.get("zzzzzz")
    assert "Did you mean" not in str(exc.value) and "Known attacks: mifgsm, sma" in str(exc.value)


def test_duplicate_name_is_refused():
    reg, _, _ = make_registry()
    with pytest.raises(ValueError, match="already registered"):
        @reg.register("m-ifgsm")
        class Other:
            pass


def test_entry_metadata():
    reg, MIFGSM, _ = make_registry()
    e = reg.entry("mi-fgsm")
    assert e.paper == "Bai et al."
    assert e.summary == "Metric MI-FGSM."
    assert e.defaults == {"eps": 5 / 255, "steps": 15}


def test_empty_registry_error():
    with pytest.raises(KeyError, match="no defense is registered"):
        Registry("defense").get("cs")


def test_builtin_dataset_registry():
    import reidbench.data  # noqa: F401  (registers the datasets)

    assert {"market1501", "dukemtmcreid", "msmt17", "cuhk03np", "synthreid"} <= set(DATASETS.names())
    assert DATASETS.get("Market-1501") is DATASETS.get("market")


def test_prefix_names_resolve_through_their_resolver():
    reg, MIFGSM, _ = make_registry()
    reg.register_prefix("ta", lambda rest: ("wrapped", rest), paper="torchattacks")
    assert reg.get("ta:PGD") == ("wrapped", "PGD") and reg.get("TA:FGSM") == ("wrapped", "FGSM")
    assert "ta:anything" in reg and reg.entry("ta:PGD").paper == "torchattacks"
    with pytest.raises(KeyError, match="Also: ta:<name>"):
        reg.get("nope")


def test_torchattacks_names_through_the_attack_registry():
    import torch

    from reidbench.attacks import TorchattacksAttack
    from reidbench.models import build_architecture
    from reidbench.registry import ATTACKS

    model = build_architecture("resnet-small", 3, widths=(8, 8, 8, 8)).eval()
    atk = ATTACKS.get("ta:FGSM")(model, eps=2 / 255)
    assert isinstance(atk, TorchattacksAttack)
    x = torch.rand(2, 3, 32, 16)
    assert float((atk(x) - x).abs().max()) <= 2 / 255 + 1e-6
