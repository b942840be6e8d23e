"""Diagnostic plots: per-class accuracy vs training count and reliability diagram (long-tailed evaluation), and
MGP reconstructions (original / masked input / reconstruction / reconstruction with the visible patches pasted back).

Figures are drawn with matplotlib's object-oriented API on an Agg canvas (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``): no display is needed, pyplot is never imported and the user's global backend is left
alone (calling ``matplotlib.use("Agg")`` from a library would break inline plots in notebooks).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import reliability_bins

__all__ = [
    "mgp_reconstruction_grid",
    "plot_mgp_reconstructions",
    "plot_per_class_accuracy",
    "plot_reliability_diagram",
]

_GROUP_STYLE = {  # group -> (colour, label)
    "many": ("tab:blue", "many-shot"),
    "medium": ("tab:orange", "medium-shot"),
    "few": ("tab:red", "few-shot"),
}


def _save(fig: Figure, path) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    # Drawing text leaves exceptions caught inside matplotlib (font and mathtext parsing) whose tracebacks reach the
    # callers' frames: a training script's trainer, and with it its persistent DataLoader workers, would become cyclic
    # garbage, which the collector may free queues-first, so that each worker waits 5 s to be killed. Free the cycles
    # now, while the callers still hold their objects.
    gc.collect()
    return path


def _label_of(label_names, class_id: int) -> str:
    if label_names is None:
        return str(class_id)
    if isinstance(label_names, Mapping):
        return str(label_names.get(class_id, label_names.get(str(class_id), class_id)))
    return str(label_names[class_id])


def plot_per_class_accuracy(
    per_class_accuracy: Sequence[float | None],
    train_class_counts: Sequence[int],
    path,
    label_names: Sequence[str] | Mapping | None = None,
    title: str | None = None,
    many_threshold: int = 100,
    few_threshold: int = 20,
) -> str:
    """Scatter of per-class accuracy (0..1) against training count (log x), coloured by shot group.

    ``per_class_accuracy`` is ``long_tail_metrics(...)["per_class_accuracy"]``; classes with ``None`` (absent
    from the evaluation set) are skipped. The many / few thresholds are drawn as vertical lines and each
    group's mean per-class accuracy as a dashed horizontal line. Classes with 0 training images are drawn at
    x = 0.5. ``label_names`` (a list or an ``id2label`` mapping) annotates the points when there are at most
    30 classes. Saves a PNG at ``path`` (parent folders created) and returns ``path``.
    """
    accuracy = list(per_class_accuracy)
    counts = np.asarray(train_class_counts, dtype=np.float64)
    if len(accuracy) != counts.shape[0]:
        raise ValueError(f"per_class_accuracy has {len(accuracy)} entries but train_class_counts has {counts.shape[0]}")
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    groups = {
        "many": counts > many_threshold,
        "few": counts < few_threshold,
    }
    groups["medium"] = ~(groups["many"] | groups["few"])
    evaluated = np.array([a is not None for a in accuracy], dtype=bool)
    values = np.array([a if a is not None else np.nan for a in accuracy], dtype=np.float64)
    x = np.where(counts > 0, counts, 0.5)
    for name in ("many", "medium", "few"):
        colour, label = _GROUP_STYLE[name]
        mask = groups[name] & evaluated
        if not mask.any():
            continue
        mean = float(values[mask].mean())
        ax.scatter(x[mask], values[mask], s=18, color=colour, label=f"{label} ({mask.sum()} cls, mean {mean:.1%})")
        ax.hlines(mean, x[mask].min(), x[mask].max(), colors=colour, linestyles="dashed", linewidth=1)
    for threshold in (few_threshold, many_threshold):
        ax.axvline(threshold, color="grey", linestyle=":", linewidth=1)
    if label_names is not None and len(accuracy) <= 30:
        for c in np.flatnonzero(evaluated):
            ax.annotate(
                _label_of(label_names, int(c)), (x[c], values[c]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel("per-class accuracy")
    ax.set_title(title if title is not None else "Per-class accuracy vs training count")
    ax.grid(True, which="major", alpha=0.3)
    if evaluated.any():
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def reliability_diagram_figure(logits, labels, n_bins: int = 15, title: str | None = None) -> Figure:
    """The reliability diagram as a matplotlib `Figure` (what `plot_reliability_diagram` saves).

    Per non-empty confidence bin (those of :func:`modeling_livt.evaluation.metrics.reliability_bins`, the ECE's own
    code): a solid bar up to the bin's accuracy (container label ``"accuracy"``), a hatched outline spanning from the
    accuracy to the bin's mean confidence (``"gap to confidence"``: above the bar for an overconfident bin, inside it
    for an underconfident one; drawn unfilled on top so the accuracy bar stays visible), a marker at the mean
    confidence, the diagonal of perfect calibration and the ECE / MCE in the title.
    """
    bins = reliability_bins(logits, labels, n_bins=n_bins)
    lower = np.asarray(bins["bin_lower"])
    width = 1.0 / n_bins
    nonempty = np.array([c > 0 for c in bins["count"]], dtype=bool)
    acc = np.array([a if a is not None else 0.0 for a in bins["accuracy"]])[nonempty]
    conf = np.array([c if c is not None else 0.0 for c in bins["confidence"]])[nonempty]
    left = lower[nonempty]

    fig = Figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(left, acc, width=width, align="edge", color="tab:blue", edgecolor="black", linewidth=0.5,
           label="accuracy", zorder=2)
    ax.bar(left, np.abs(conf - acc), bottom=np.minimum(acc, conf), width=width, align="edge", fill=False,
           edgecolor="tab:red", hatch="//", linewidth=0.8, label="gap to confidence", zorder=3)
    ax.plot(left + width / 2, conf, linestyle="none", marker="_", markersize=10, markeredgewidth=2, color="tab:red",
            label="mean confidence", zorder=4)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration", zorder=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("accuracy")
    ece_text = f"ECE {bins['ece']:.2%}, MCE {bins['mce']:.2%}"
    ax.set_title(f"{title}\n{ece_text}" if title else f"Reliability diagram ({ece_text})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_reliability_diagram(logits, labels, path, n_bins: int = 15, title: str | None = None) -> str:
    """Save :func:`reliability_diagram_figure` as a PNG at ``path``; returns ``path``."""
    return _save(reliability_diagram_figure(logits, labels, n_bins=n_bins, title=title), path)


# ---------------------------------------------------------------------------------------------------------------------
# MGP (MAE) reconstructions
# ---------------------------------------------------------------------------------------------------------------------
RECONSTRUCTION_COLUMNS = ("original", "masked", "reconstruction", "pasted")
NORMALISED_COLUMNS = ("target_normalised", "prediction_normalised")  # norm-pix models only
_RECONSTRUCTION_TITLES = {
    "original": "original",
    "masked": "masked input",
    "reconstruction": "reconstruction",
    "pasted": "reconstruction +\nvisible patches",
    "target_normalised": "target\n(per-patch norm.)",
    "prediction_normalised": "prediction\n(per-patch norm.)",
}


def mgp_reconstruction_grid(
    model,
    pixel_values: torch.Tensor,
    noise: torch.Tensor | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    fill: float = 0.5,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """What an MGP model makes of `pixel_values [N, 3, H, W]` (the model's normalised input), as in MAE's notebook.

    Runs `model(pixel_values, noise=noise)` in eval mode without gradients (`noise [N, L]` fixes the mask; without
    it a noise drawn from a `torch.Generator` seeded with `seed` does, so two calls mask the same patches). When the
    model was trained with `config.norm_pix_loss`, its prediction of each patch is un-normalised with that patch's
    own mean and (unbiased) variance of the target, the inverse of the loss's `(x - mean) / sqrt(var + 1e-6)`,
    before `unpatchify`. With `image_mean`/`image_std` (the image processor's) every image is mapped back to RGB
    (`x * std + mean`, nominally in [0, 1]; not clipped, plotting clips).

    Returns CPU float tensors, images `[N, 3, H, W]`: `original`; `masked` (visible patches of the original, masked
    ones set to `fill`); `reconstruction` (the decoder's prediction of every patch); `pasted` (the reconstruction
    with the visible patches of the original pasted back in); plus `mask [N, 1, H, W]` (1 = masked, pixel level)
    and `loss` (the model's MGP loss on this batch, a scalar). With `norm_pix_loss` also `target_normalised` and
    `prediction_normalised` (what the loss compares: per-patch normalised pixels, unpatchified, not mapped to RGB).

    Caveat of the norm-pix un-normalisation (MAE's own): each masked patch's mean and variance come from the target,
    so the reconstruction shows the true mean colour and contrast of every masked patch whatever the model learned;
    only the pattern inside a patch is the model's. On flat patches (e.g. digits upscaled 8 -> 32 px with patch 4:
    every patch is one digit pixel, the normalised target is 0) the reconstruction equals the original even for an
    untrained model: look at `prediction_normalised` against `target_normalised` there, or train without norm-pix.
    """
    config = model.config
    p = config.patch_size
    pixel_values = pixel_values.float()
    batch_size, _, height, width = pixel_values.shape
    num_patches = (height // p) * (width // p)
    if noise is None:
        noise = torch.rand(batch_size, num_patches, generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            inputs = pixel_values.to(device=device, dtype=next(model.parameters()).dtype)
            outputs = model(inputs, noise=noise.to(device))
    finally:
        model.train(was_training)
    pred = outputs.logits.detach().float().cpu()  # [N, L, p*p*C]
    normalised = {}
    if config.norm_pix_loss:
        target = model.patchify(pixel_values)
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        normalised = {
            "target_normalised": model.unpatchify((target - mean) / (var + 1.0e-6) ** 0.5, (height, width)),
            "prediction_normalised": model.unpatchify(pred, (height, width)),
        }
        pred = pred * (var + 1.0e-6) ** 0.5 + mean
    reconstruction = model.unpatchify(pred, (height, width))
    patch_mask = outputs.mask.detach().float().cpu()  # [N, L], 1 = masked
    mask = model.unpatchify(patch_mask.unsqueeze(-1).expand(-1, -1, p * p * config.num_channels), (height, width))
    mask = mask[:, :1]  # [N, 1, H, W]: the same for every channel
    original = pixel_values.cpu()
    if image_mean is not None or image_std is not None:
        channels = original.shape[1]
        mean_t = torch.as_tensor(image_mean if image_mean is not None else [0.0] * channels).view(1, -1, 1, 1)
        std_t = torch.as_tensor(image_std if image_std is not None else [1.0] * channels).view(1, -1, 1, 1)
        original = original * std_t + mean_t
        reconstruction = reconstruction * std_t + mean_t
    masked = torch.where(mask.bool(), torch.full_like(original, fill), original)
    pasted = torch.where(mask.bool(), reconstruction, original)
    return {
        "original": original,
        "masked": masked,
        "reconstruction": reconstruction,
        "pasted": pasted,
        "mask": mask,
        "loss": outputs.loss.detach().float().cpu(),
        **normalised,
    }


def _to_image(tensor: torch.Tensor) -> np.ndarray:
    """`[C, H, W]` in [0, 1] -> `[H, W, C]` array for imshow (clipped; one channel drawn as grey)."""
    array = tensor.detach().float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def plot_mgp_reconstructions(grid: Mapping[str, torch.Tensor], path, title: str | None = None) -> str:
    """One row per image, columns original / masked input / reconstruction / reconstruction with the visible
    patches pasted back in, from :func:`mgp_reconstruction_grid` (called with the processor's mean/std so the
    images are RGB in [0, 1]; values are clipped to [0, 1]). A norm-pix grid adds two columns: the per-patch
    normalised target and prediction (drawn as ``0.5 + v / 4``: 0 is mid grey, +-2 std black/white), the part of
    the picture the target's patch statistics do not give away. Saves a PNG at ``path``, returns ``path``."""
    num_images = int(grid["original"].shape[0])
    if num_images == 0:
        raise ValueError("mgp reconstruction grid has no image")
    columns = RECONSTRUCTION_COLUMNS + tuple(c for c in NORMALISED_COLUMNS if c in grid)
    cell = 1.6
    fig = Figure(figsize=(cell * len(columns), cell * num_images + (0.6 if title else 0.3)), layout="constrained")
    axes = fig.subplots(num_images, len(columns), squeeze=False)
    for row in range(num_images):
        for col, name in enumerate(columns):
            ax = axes[row][col]
            image = grid[name][row]
            if name in NORMALISED_COLUMNS:
                image = 0.5 + image / 4
            ax.imshow(_to_image(image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(_RECONSTRUCTION_TITLES[name], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
