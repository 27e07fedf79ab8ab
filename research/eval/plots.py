"""Pictures: image grids, adversarial triptychs, latent interpolation strips.

Matplotlib through its Agg canvas directly (no pyplot), so importing this
neither needs a display nor changes the process's global backend. Images are
float arrays [N, H, W, C], C in {1, 3}, in `value_range` ([0, 1] by
default; pass (-1, 1) for DCGAN samples).
"""

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _to_unit(images, value_range=(0.0, 1.0)) -> np.ndarray:
  lo, hi = value_range
  return np.clip((np.asarray(images, np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _save(fig: Figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, format="png")
  return path


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
  _save(fig, path)
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
  return _save(fig, path)


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
