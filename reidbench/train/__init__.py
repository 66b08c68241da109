"""Training: recipes, the engine with defense hooks, and the preset runner."""

from .engine import TRAIN_NUMERICS, TrainResult, build_optimizer, train_model, triplet_loss
from .recipes import RECIPES, Recipe, get_recipe
from .runner import FINAL_CHECKPOINT, fine_tune, train_preset

__all__ = ["Recipe", "RECIPES", "get_recipe", "train_model", "TrainResult", "triplet_loss", "build_optimizer",
           "train_preset", "fine_tune", "FINAL_CHECKPOINT", "TRAIN_NUMERICS"]
