"""Train a model preset on a dataset end to end: decode, build, train, checkpoint."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .. import distributed
from ..data import DecodedImages, ReIDDataset, load_images
from ..data.loader import StreamedImages, default_workers
from ..models import build_architecture, get_preset, save_checkpoint
from ..models.architectures import initialisation
from ..registry import parse_defense
from ..training_protocol import TrainingHooks
from ..utils import seed_everything
from .engine import TrainResult, train_model
from .recipes import Recipe, get_recipe

log = logging.getLogger(__name__)

__all__ = ["train_preset", "fine_tune", "FINAL_CHECKPOINT"]

FINAL_CHECKPOINT = "model.pt"


def train_preset(preset: str, dataset: ReIDDataset, out_dir: str | os.PathLike, *, seed: int = 0,
                 epochs: int | None = None, arch: str | None = None, device: str | torch.device = "cpu",
                 resume: bool = False, pretrained: bool | None = None, amp: bool | str = False,
                 channels_last: bool = False, compile: str | None = None, workers: int | None = None,
                 stream: bool = False, progress: bool = True) -> tuple[TrainResult, dict[str, Any]]:
    """Train model preset ``preset`` on ``dataset.train``; write ``out_dir/model.pt`` + ``model.json``.

    ``epochs`` / ``arch`` override the preset's (``epochs`` also AT's fine-tuning epochs); ``pretrained``
    starts from the architecture's ImageNet weights (torchvision's, a download, for ft_net and the
    other ResNet/DenseNet models; the packaged ones, offline, for efficientnet-lite0/-lite2); None:
    the preset's default (:meth:`~reidbench.models.presets.ModelPreset.resolve`: ImageNet weights,
    on synthreid EfficientNet-Lite0's). The sidecar's ``init`` says which
    (:func:`~reidbench.models.architectures.initialisation`). ``amp`` (``"fp16"``/``True``, ``"bf16"``)
    sets the recipe's mixed precision; ``channels_last`` and ``compile`` (a ``torch.compile`` backend)
    change how the engine runs, not what it computes (to float rounding), and are recorded in the card.
    ``workers``: DataLoader processes fetching the next batches (default: none on a CPU, up to 4 beside a
    GPU); ``stream`` decodes the training images from their files batch by batch (in the workers)
    instead of all of them first through the image cache. Neither changes the weights."""
    p = get_preset(preset)
    arch_name, arch_kwargs, recipe_name = p.resolve(dataset, pretrained, arch)
    init = initialisation(arch_name, bool(arch_kwargs.get("pretrained", False)))  # before any work: fails early
    recipe = get_recipe(recipe_name)
    if epochs is not None:
        recipe = recipe.replace(epochs=epochs)
    if amp:
        recipe = recipe.replace(amp=amp)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    workers = default_workers(device) if workers is None else workers
    if stream:
        train = DecodedImages(StreamedImages(dataset.train), list(dataset.train), [])
    else:
        train = load_images(dataset.train, progress=progress, desc="decoding train")
    num_classes = int(train.pids.max()) + 1
    model = build_architecture(arch_name, num_classes, **arch_kwargs)
    fingerprint = dataset.fingerprint()
    # the training-time defense, built by the registry: it hands the engine hooks and stages
    # (reidbench.training_protocol), so that training never imports a defense
    defense = parse_defense(p.train_defense).with_kwargs(**p.train_defense_kwargs).build()
    hooks = TrainingHooks()
    if defense is not None:
        if epochs is not None:
            defense.override_epochs(epochs)  # --epochs sets every training stage (AT's fine-tuning too)
        hooks = defense.training_hooks(train.images, train.pids, seed)
    result = train_model(
        model, train.images, train.pids, recipe, seed=seed, out_dir=out, resume=resume, device=device,
        progress=progress, train_transform=hooks.train_transform, batch_hook=hooks.batch_hook,
        batch_train_transform=hooks.batch_train_transform, channels_last=channels_last, compile=compile,
        workers=workers, config={"preset": p.name, "arch": arch_name, "arch_kwargs": arch_kwargs,
                "dataset": {"name": dataset.name, "fingerprint": fingerprint, "root": str(dataset.root)},
                "train_defense": p.train_defense, "test_defense": p.test_defense},
    )
    history = result.history
    seconds = result.seconds
    if defense is not None and defense.has_fit_side:  # e.g. AT, goat-ft: fine-tune the trained model
        t_fit = time.perf_counter()
        tuned = fine_tune(defense, result.model, train.images, train.pids, train.camids, recipe=recipe, seed=seed,
                          out_dir=out / "fit", resume=resume, device=device, progress=progress, workers=workers)
        result.model = tuned.model
        history = history + tuned.history
        seconds += time.perf_counter() - t_fit  # the fit stage (AT's adversarial set, fine-tuning) counts
    saved_kwargs = {k: v for k, v in arch_kwargs.items() if k != "pretrained"}  # weights come from the file
    world = distributed.current()
    extra: dict[str, Any] = {"world_size": world.size} if world.distributed else {}  # torchrun: the same numbers, said
    if channels_last or compile:
        extra["execution"] = {"channels_last": channels_last, "compile": compile}
    card = distributed.on_main(lambda: save_checkpoint(  # rank 0 writes; every rank gets the card
        result.model, out / FINAL_CHECKPOINT, arch=arch_name, arch_kwargs=saved_kwargs, num_classes=num_classes,
        preset=p.name, pretrained=bool(arch_kwargs.get("pretrained", False)), init=init,
        dataset={"name": dataset.name, "fingerprint": fingerprint}, recipe=recipe.to_dict(), seed=seed,
        train_defense=p.train_defense, test_defense=p.test_defense, history=history,
        defense=defense.describe() if defense is not None else None,
        train_seconds=round(seconds, 2), device=str(device), **extra,
    ))
    return result, card


def fine_tune(defense, model: nn.Module, images, pids: torch.Tensor, camids: torch.Tensor | None = None, *,
              recipe: Recipe, seed: int = 0, out_dir: str | os.PathLike | None = None, resume: bool = False,
              device: str | torch.device = "cpu", progress: bool = False, workers: int = 0) -> TrainResult:
    """Run ``defense``'s fine-tuning stage (:meth:`finetune_stage`: AT, goat-ft) on the trained
    ``model`` with ``recipe`` for the stage's epochs; it keeps a training state in ``out_dir`` and
    resumes from it like any training. A defense without such a stage returns the model as it is."""
    stage = defense.finetune_stage(model, images, pids, camids, seed=seed, device=device, progress=progress)
    if stage is None:
        return TrainResult(model)
    log.info("%s: %d epochs on %d images", stage.name, stage.epochs, len(stage.pids))
    return train_model(model, stage.images, stage.pids, recipe.replace(epochs=stage.epochs), seed=seed,
                       out_dir=out_dir, resume=resume, device=device, progress=progress,
                       batch_hook=stage.batch_hook, config=stage.config, workers=workers)
