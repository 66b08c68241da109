"""Model presets: architecture + training recipe (+ the defenses a preset carries, added by the
defense modules). A preset resolves differently on the embedded synthreid (a small CPU model at
128x64) and on real datasets (the seed's ResNet-50 at 256x128 with ImageNet weights)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..registry import MODELS

__all__ = ["ModelPreset", "get_preset", "is_synthetic", "training_preset"]


def is_synthetic(dataset_name: str) -> bool:
    return dataset_name.lower().startswith("synthreid")


@dataclass(frozen=True)
class ModelPreset:
    """``arch``/``recipe`` for real datasets; ``synth_arch``/``synth_recipe`` for synthreid."""

    name: str
    description: str
    arch: str = "ft_net"
    recipe: str = "seed"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    synth_arch: str = "resnet-small"
    synth_recipe: str = "cpu"
    synth_arch_kwargs: dict[str, Any] = field(default_factory=dict)
    train_defense: str | None = None   # a training-time defense (PD, AT, GOAT) by registry name
    test_defense: str | None = None    # a test-time defense (CS, ...) carried by the preset
    train_defense_kwargs: dict[str, Any] = field(default_factory=dict)

    def resolve(self, dataset_name: str, pretrained: bool | None = None) -> tuple[str, dict[str, Any], str]:
        """(architecture, its keyword arguments, recipe name) for a dataset."""
        if is_synthetic(dataset_name):
            return self.synth_arch, dict(self.synth_arch_kwargs), self.synth_recipe
        kwargs = dict(self.arch_kwargs)
        kwargs["pretrained"] = True if pretrained is None else pretrained
        return self.arch, kwargs, self.recipe


def _register(preset: ModelPreset, aliases=(), paper="") -> None:
    MODELS.register(preset.name, aliases=aliases, paper=paper or preset.description, kind="preset")(preset)


_register(ModelPreset("baseline", "normally trained ReID model: ft_net ResNet-50, CE (the seed's baseline)"),
          aliases=("base",))
_register(ModelPreset("sb", "strong baseline: BNNeck ResNet-50, CE-LS + triplet (Luo et al. 2019)", arch="bnneck",
                      recipe="strong", synth_arch_kwargs={"widths": (32, 64, 128, 256)}), aliases=("strong-baseline-preset",))
_register(ModelPreset("pd", "baseline trained with the proactive defense PD (seed, section 3.2.1)", train_defense="pd"),
          aliases=("proactive",))
# seed Table 5's "CF" row: the commented-out ``Fuse_RGB_Gray_Sketch(G=0.05, G_rgb=0.01, S_rgb=0.01, Aug=0)``
# of the seed's train.py -- grayscale and channel fusion, no AutoAugment, no LHT
_register(ModelPreset("cf", "baseline trained with channel fusion only (grayscale + CF, no AutoAugment, no LHT; "
                      "seed Table 5 ablation)", train_defense="pd",
                      train_defense_kwargs={"p_gray": 0.05, "p_gray_rgb": 0.01, "p_sketch_rgb": 0.01, "p_aug": 0.0,
                                            "p_lht": 0.0}), aliases=("channel-fusion",))
_register(ModelPreset("jad", "joint defense JAD = PD-trained model + circuitous scaling at test time (the seed's method)",
                      train_defense="pd", test_defense="cs"), aliases=("joint-defense",))
for _atk in ("sma", "lta", "mifgsm"):
    _register(ModelPreset(f"at-{_atk}", f"offline adversarial training against {_atk.upper()}: baseline fine-tuned on "
                          "clean + adversarial training images (Bai et al., as in the seed)", train_defense="at",
                          train_defense_kwargs={"attack": _atk}))
_register(ModelPreset("goat", "online adversarial training GOAT (Bouniot et al.): PGD-7 batches with FNA-style guides",
                      train_defense="goat"))
_register(ModelPreset("goat-ft", "GOAT at the seed's training budget for JAD and AT: the baseline's normal training, "
                      "then 20 epochs of online adversarial fine-tuning", train_defense="goat",
                      train_defense_kwargs={"finetune_epochs": 20}))
_register(ModelPreset("goat-cea", "GOAT as CEA's released code trains it: eps in normalised units (about 1.1/255 in "
                      "pixels), train-mode BatchNorm during generation, pulling guide of any identity",
                      train_defense="goat", train_defense_kwargs={"cea_faithful": True}))
_register(ModelPreset("goat-sma", "SMA-guided online adversarial training (CEA's --adv --sma variant): PGD-7 batches "
                      "pushed away from their own clean features", train_defense="goat",
                      train_defense_kwargs={"guides": "sma"}))
_register(ModelPreset("densenet", "ft_net with a DenseNet-121 backbone (the seed's second architecture)",
                      arch="ft_net_dense", synth_arch_kwargs={"widths": (16, 40, 80, 160)}))


def get_preset(name: str) -> ModelPreset:
    entry = MODELS.entry(name)
    if entry.meta.get("kind") != "preset":
        raise ValueError(f"{entry.name!r} is an architecture; give a model preset "
                         f"({', '.join(e.name for e in MODELS.entries() if e.meta.get('kind') == 'preset')})")
    return entry.obj


def training_preset(name: str) -> ModelPreset:
    """The preset whose trained weights ``name`` uses. A preset that only adds a test-time defense
    to another preset's training (``jad`` = ``pd`` + CS) shares that preset's weights, so a matrix
    trains them once and the two rows differ by the test-time defense alone."""
    p = get_preset(name)
    if p.test_defense is None:
        return p
    for entry in MODELS.entries():
        q = entry.obj
        if entry.meta.get("kind") == "preset" and q.test_defense is None and \
                replace(q, name=p.name, description=p.description, test_defense=p.test_defense) == p:
            return q
    return p
