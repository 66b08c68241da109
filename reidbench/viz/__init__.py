"""Figures (extra ``[viz]``: matplotlib): ranked lists clean vs attacked (the seed's Figure 1),
perturbation panels (Figure 6), eps curves and heat-maps from matrix records, Grad-CAM maps
(Figure 8) and t-SNE embeddings (Figure 7). PNG, or SVG by the file's suffix; deterministic bytes
for the same inputs."""

from .analysis import grad_cam, identity_references, plot_grad_cam, plot_tsne, tsne
from .common import save_figure
from .ranked import RankedLists, attack_selected_queries, plot_perturbation, plot_ranked_lists, ranked_lists
from .records import plot_eps_curves, plot_heatmap

__all__ = ["RankedLists", "ranked_lists", "plot_ranked_lists", "plot_perturbation", "attack_selected_queries",
           "plot_eps_curves", "plot_heatmap", "grad_cam", "identity_references", "plot_grad_cam", "tsne", "plot_tsne", "save_figure"]
