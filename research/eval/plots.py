"""The project's figures' one save helper, and the figures many papers share.

Matplotlib through its Agg canvas directly (no pyplot), so importing this
neither needs a display nor changes the process's global backend; `save`
writes every PNG. Here: image grids (samples, Goodfellow et al.'s Fig. 1,
latent walks), curves and bars (training curves, attack curves, sweeps,
Yosinski et al.'s Fig. 2) and captioned images. A paper's own figures sit
beside this in research/eval/<topic>_plots.py (deconvnet_plots: ZF Net;
stn_plots: STN; detection_plots, alignment_plots, region_plots), drawn the
same way; only these modules import matplotlib (tests/test_layers.py checks).

Images are float arrays [N, H, W, C], C in {1, 3}, in `value_range` ([0, 1]
by default; pass (-1, 1) for DCGAN samples).
"""

from collections.abc import Sequence
import os
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from research.train import metrics as metrics_lib


def save(fig: Figure, path: str, *, tight: bool = False, dpi: float | None = None) -> str:
  """Writes `fig` as a PNG at `path` (making its folder); returns the path.

  tight: crop to the drawn content (a table's row labels and long titles
  reach outside the axes); dpi: default the figure's.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  FigureCanvasAgg(fig)
  kwargs = dict(bbox_inches="tight", pad_inches=0.1) if tight else {}
  fig.savefig(path, format="png", dpi=dpi or "figure", **kwargs)
  return path


# --- Image grids -----------------------------------------------------------------


def _to_unit(images, value_range=(0.0, 1.0)) -> np.ndarray:
  lo, hi = value_range
  return np.clip((np.asarray(images, np.float32) - lo) / (hi - lo), 0.0, 1.0)


def tile(images, nrow: int, *, padding: int = 2, pad_value: float = 1.0,
         value_range=(0.0, 1.0)) -> np.ndarray:
  """Tiles images [N, H, W, C] into one [rows*(H+p)+p, nrow*(W+p)+p, C] array in [0, 1].

  nrow: images per row (torchvision's make_grid convention); the last row
  is padded with `pad_value`.
  """
  x = _to_unit(images, value_range)
  if x.ndim == 3:
    x = x[..., None]
  n, h, w, c = x.shape
  rows = -(-n // nrow)
  grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c),
                 pad_value, np.float32)
  for i in range(n):
    r, col = divmod(i, nrow)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = x[i]
  return grid


def image_grid(images, nrow: int, path: str, *, value_range=(0.0, 1.0), padding: int = 2,
               scale: int = 3, title: str | None = None) -> np.ndarray:
  """Saves a PNG of `tile(images, nrow)`, each pixel drawn scale x scale; returns the tile."""
  grid = tile(images, nrow, padding=padding, value_range=value_range)
  h, w, c = grid.shape
  dpi = 100
  extra = 0.3 if title else 0.0
  fig = Figure(figsize=(w * scale / dpi, h * scale / dpi + extra), dpi=dpi)
  ax = fig.add_axes((0, 0, 1, h * scale / dpi / (h * scale / dpi + extra)))
  ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray", vmin=0, vmax=1,
            interpolation="nearest")
  ax.set_axis_off()
  if title:
    fig.suptitle(title, fontsize=9, y=0.995, va="top")
  save(fig, path)
  return grid


def _label(names, k) -> str:
  return str(names[int(k)]) if names is not None else str(int(k))


def adversarial_triptych(clean, adversarial, clean_pred, clean_conf, adv_pred, adv_conf,
                         path: str, *, true_labels=None, class_names=None,
                         epsilon: float | None = None, max_rows: int = 8,
                         value_range=(0.0, 1.0)) -> str:
  """Goodfellow et al. 2014 Fig. 1, one row per example: x, the perturbation, x_adv.

  Args:
    clean, adversarial: [N, H, W, C] in value_range.
    clean_pred, adv_pred: int [N] predicted classes; clean_conf, adv_conf:
      float [N], their softmax probabilities, shown as percentages.
    true_labels: optional int [N], shown on the clean image.
    class_names: optional sequence mapping class index to name.
    epsilon: if given, the perturbation is shown as 0.5 + delta / (2 eps)
      (mid-grey is zero, black/white is -eps/+eps: the sign pattern for FGSM);
      otherwise scaled by each row's max |delta|.
  """
  clean, adversarial = _to_unit(clean, value_range), _to_unit(adversarial, value_range)
  n = min(len(clean), max_rows)
  fig = Figure(figsize=(6.0, 2.1 * n), dpi=100)
  for i in range(n):
    delta = adversarial[i] - clean[i]
    if epsilon:
      # In value_range units epsilon is eps / (hi - lo) in [0, 1] units.
      shown = 0.5 + delta * (value_range[1] - value_range[0]) / (2 * epsilon)
    else:
      shown = 0.5 + delta / (2 * max(np.abs(delta).max(), 1e-12))
    truth = f" (true {_label(class_names, true_labels[i])})" if true_labels is not None else ""
    panels = [
        (clean[i], f"{_label(class_names, clean_pred[i])} {100 * clean_conf[i]:.1f}%{truth}"),
        (np.clip(shown, 0, 1), f"perturbation{f' (±{epsilon:g})' if epsilon else ' (scaled)'}"),
        (adversarial[i], f"{_label(class_names, adv_pred[i])} {100 * adv_conf[i]:.1f}%"),
    ]
    for j, (img, text) in enumerate(panels):
      ax = fig.add_subplot(n, 3, 3 * i + j + 1)
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1,
                interpolation="nearest")
      ax.set_title(text, fontsize=8)
      ax.set_axis_off()
  fig.tight_layout()
  return save(fig, path)


def interpolation_strip(images, path: str, *, value_range=(0.0, 1.0), scale: int = 3,
                        title: str | None = None) -> np.ndarray:
  """Latent walks (DCGAN §6.1): images [R, S, H, W, C], one row of S steps per walk.

  Pair with `research.ops.gan.interpolate_latents` and the generator.
  """
  images = np.asarray(images)
  if images.ndim == 4:   # One walk [S, H, W, C].
    images = images[None]
  rows, steps = images.shape[:2]
  return image_grid(images.reshape(rows * steps, *images.shape[2:]), steps, path,
                    value_range=value_range, scale=scale, title=title)


# --- Curves and bars ------------------------------------------------------


def plot_error_curves(workdir: str, colors: dict[str, str], path: str, *,
                      steps_per_epoch: float, title: str) -> dict[str, tuple]:
  """Saves train (dashed) and test error against epochs for the variants in
  `colors` {name: matplotlib colour}, each read from workdir/name; returns the
  curves {"<name> train" | "<name> test": (epochs, errors)}."""
  curves, styles = {}, {}
  for name, color in colors.items():
    for key, split, style in (("train_eval/error", "train", dict(linestyle="--")),
                              ("test/error", "test", {})):
      steps, err = metrics_lib.series(os.path.join(workdir, name), key)
      curves[f"{name} {split}"] = ([s / steps_per_epoch for s in steps], err)
      styles[f"{name} {split}"] = dict(color=color, marker="o", **style)
  plot_curves(curves, path, xlabel="epoch", ylabel="error", styles=styles, title=title)
  return curves


def plot_curves(curves: dict[str, tuple], path: str, *, xlabel: str, ylabel: str,
                title: str = "", hlines: dict[str, float] | None = None,
                styles: dict[str, dict] | None = None, ylim=None,
                yscale: str = "linear") -> str:
  """Saves a PNG of labelled curves {label: (x, y)} (matplotlib's Agg canvas).

  `hlines` {label: y} draws dashed reference lines (e.g. a target error);
  `styles` {label: matplotlib line kwargs} sets a curve's look.
  """
  fig = Figure(figsize=(6.4, 4.2), dpi=100)
  ax = fig.add_subplot()
  for label, (x, y) in curves.items():
    ax.plot(x, y, label=label, **(styles or {}).get(label, {}))
  for label, y in (hlines or {}).items():
    ax.axhline(y, color="gray", linestyle="--", linewidth=1, label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_yscale(yscale)
  if ylim is not None:
    ax.set_ylim(*ylim)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  return save(fig, path)


_ATTACK_STYLES = {"fgsm": "-", "pgd": "--", "random_sign": ":"}


def attack_curves(rows: list[dict], path: str, *, title: str = "") -> str:
  """One panel per dataset: error rate against epsilon, a colour per model and a
  line style per attack. rows: dicts with dataset, model, attack, epsilon, error_rate."""
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  models = list(dict.fromkeys(r["model"] for r in rows))
  colors = {m: f"C{i}" for i, m in enumerate(models)}
  fig = Figure(figsize=(5.2 * len(datasets), 4.2), dpi=100)
  for i, ds in enumerate(datasets):
    ax = fig.add_subplot(1, len(datasets), i + 1)
    for model in models:
      for attack in _ATTACK_STYLES:
        points = sorted((r["epsilon"], r["error_rate"]) for r in rows
                        if r["dataset"] == ds and r["model"] == model and r["attack"] == attack)
        if points:
          eps, err = zip(*points)
          ax.plot(eps, err, _ATTACK_STYLES[attack], color=colors[model], marker=".",
                  label=f"{model} {attack}")
    ax.set_title(ds, fontsize=10)
    ax.set_xlabel("epsilon (L-infinity, [0, 1] pixels)")
    ax.set_ylabel("test error rate")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if i == 0:
      ax.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save(fig, path)


def accuracy_bars(names, test, train, path: str, *, title: str) -> str:
  """Test accuracy per variant as bars, training accuracy as a tick on each, the
  gap written above: names, test, train are equal-length sequences."""
  fig = Figure(figsize=(8, 4.2), dpi=100)
  ax = fig.add_subplot()
  x = np.arange(len(names))
  ax.bar(x, test, color=["gray" if n == "none" else "C0" for n in names], label="test")
  ax.scatter(x, train, color="C3", marker="_", s=400, label="train (unaugmented)")
  for i, (a, b) in enumerate(zip(test, train)):
    ax.text(i, a + 0.002, f"{a:.3f}\ngap {b - a:.3f}", ha="center", va="bottom", fontsize=7)
  ax.set_xticks(x, names, rotation=20, fontsize=8)
  ax.set_ylim(min(test) - 0.03, 1.01)
  ax.set_ylabel("accuracy")
  ax.set_title(title)
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  return save(fig, path)


def sweep_figure(path: str, *, ylabel: str, title: str, lines=None, xlabel: str = "",
                 xscale: str = "linear", bars=None) -> str:
  """A sweep's metric: `lines` {label: [(x, y), ...]} against a swept number, or,
  when nothing numeric was swept, `bars` [(run name, y), ...]."""
  fig = Figure(figsize=(6, 4))
  ax = fig.add_subplot()
  if lines is not None:
    for label, points in lines.items():
      xs, ys = zip(*sorted(points))
      ax.plot(xs, ys, marker="o", label=label or None)
    ax.set_xscale(xscale)
    ax.set_xlabel(xlabel)
    if any(lines):
      ax.legend(fontsize=8)
  else:
    ax.bar(range(len(bars)), [y for _, y in bars])
    ax.set_xticks(range(len(bars)), [name for name, _ in bars], rotation=30, ha="right",
                  fontsize=8)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return save(fig, path, dpi=120)


def transfer_figure(accuracies: dict[str, tuple], base_b: float, xticks, path: str) -> str:
  """Yosinski et al. 2014, Fig. 2: test accuracy on task B against the layer n at
  which the network is chopped, a line per condition ({"BnB": (ns, accs), ...};
  BnB, BnB+, AnB, AnB+ get the paper's colours), baseB as a dashed line.

  xticks: (positions, labels) of the n axis.
  """
  fig = Figure(figsize=(7, 4.5), dpi=100)
  ax = fig.add_subplot()
  ax.axhline(base_b, color="gray", linestyle="--", label="baseB")
  styles = {"BnB": ("C0", "o", "-"), "BnB+": ("C0", "s", ":"),
            "AnB": ("C3", "o", "-"), "AnB+": ("C3", "s", ":")}
  for condition, (ns, accs) in accuracies.items():
    color, marker, line = styles.get(condition, (None, "o", "-"))
    ax.plot(ns, accs, color=color, marker=marker, linestyle=line, label=condition)
  ax.set_xticks(*xticks)
  ax.set_xlabel("layer n at which the network is chopped and retrained")
  ax.set_ylabel("test accuracy on task B")
  ax.set_title("Fig. 2 at our scale: Fashion-MNIST halves A and B")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return save(fig, path)


def caption_grid(images, captions: Sequence[Sequence[tuple[str, str]]], path: str, *,
                 cols: int = 4, title: str = "") -> str:
  """Images with captions under each (Karpathy & Fei-Fei 2015, Fig. 5-style samples).

  images: N uint8 [H_i, W_i, 3] (sizes may differ); captions: per image, (label, sentence) pairs,
  e.g. [("RNN", generated), ("ref", a reference)], drawn as "label: sentence".
  """
  n = len(images)
  rows = max(1, -(-n // cols))
  fig = Figure(figsize=(3.0 * cols, 3.6 * rows + (0.3 if title else 0.0)), dpi=120)
  for i in range(n):
    ax = fig.add_subplot(rows, cols, i + 1)
    ax.imshow(np.asarray(images[i]), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    text = "\n".join(textwrap.fill(f"{label}: {sentence}", 44) for label, sentence in captions[i])
    ax.set_xlabel(text, fontsize=6.5, loc="left")
  if title:
    fig.suptitle(textwrap.fill(title, 40 * cols), fontsize=9)
  return save(fig, path, tight=True)
