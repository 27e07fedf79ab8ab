"""Zeiler & Fergus 2013's figures: Fig. 2 (top-9 projections beside their image
patches), the first-layer filters, and Fig. 7 (occlusion sensitivity).

Drawn as plots.py draws (matplotlib's Agg canvas, saved by `plots.save`); the
numbers they show come from deconvnet_vis.py. A deconvnet projection is signed:
each is shown on its own scale, zero as mid-gray, as the paper shows them.
"""

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
import numpy as np

from research.eval import plots


def signed_to_unit(x: np.ndarray) -> np.ndarray:
  """A signed reconstruction [..., H, W, C] to [0, 1], zero at 0.5, per image."""
  x = np.asarray(x, np.float32)
  scale = np.abs(x).reshape(x.shape[0], -1).max(axis=1).reshape(-1, *[1] * (x.ndim - 1))
  return 0.5 + 0.5 * x / np.maximum(scale, 1e-12)


def _show(ax, image, title=None, **kwargs):
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  ax.imshow(image, cmap=kwargs.pop("cmap", "gray" if image.ndim == 2 else None),
            interpolation="nearest", **kwargs)
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=7)


def top9_figure(rows, path: str, title: str) -> str:
  """Fig. 2 for one layer: per feature map, its top-9 projections (3x3, left)
  and the corresponding image patches (3x3, right).

  rows: list of (label, projections [9, h, w, C] signed, patches [9, h, w, C] in [0, 1]).
  """
  height = 2.9 * len(rows) + 0.5
  fig = Figure(figsize=(6.0, height), dpi=90)
  fig.suptitle(title, fontsize=8)
  for r, (label, projections, patches) in enumerate(rows):
    for c, (images, what) in enumerate(((signed_to_unit(projections), "projections"),
                                        (patches, "patches"))):
      ax = fig.add_subplot(len(rows), 2, 2 * r + c + 1)
      _show(ax, plots.tile(images, 3, padding=1), title=f"{label}: {what}", vmin=0, vmax=1)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))  # Room for the title.
  return plots.save(fig, path)


def filters_figure(kernel: np.ndarray, path: str, title: str) -> str:
  """First-layer filters [k, k, C_in, C_out] as images, each scaled to [0, 1]."""
  w = np.moveaxis(np.asarray(kernel, np.float32), -1, 0)  # [C_out, k, k, C_in]
  lo = w.min(axis=(1, 2, 3), keepdims=True)
  hi = w.max(axis=(1, 2, 3), keepdims=True)
  w = (w - lo) / np.maximum(hi - lo, 1e-12)
  grid = plots.tile(w, 8, padding=1)
  scale = max(1, 560 // grid.shape[1])
  fig = Figure(figsize=(grid.shape[1] * scale / 100 + 0.2, grid.shape[0] * scale / 100 + 0.4),
               dpi=100)
  ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
  _show(ax, grid, vmin=0, vmax=1)
  fig.suptitle(title, fontsize=8)
  return plots.save(fig, path)


def occlusion_figure(rows, path: str, class_names, title: str) -> str:
  """Fig. 7: per image (a) the image and the occluder, (b) the total activation
  of the strongest layer-5 map against the occluder's position, (c) that map
  projected by the deconvnet, (d) p(true class), (e) the most probable class.

  rows: dicts with image [H, W, C] in [0, 1], size (occluder side), label,
  feature_map int, activation [Gy, Gx], projection [H, W, C] signed,
  p_true [Gy, Gx], top_class int [Gy, Gx].
  """
  k = len(class_names)
  height = 2.0 * len(rows) + 0.4
  fig = Figure(figsize=(10, height), dpi=100)
  fig.suptitle(title, fontsize=9)
  for r, row in enumerate(rows):
    axes = [fig.add_subplot(len(rows), 5, 5 * r + i + 1) for i in range(5)]
    _show(axes[0], row["image"], title=f"(a) {class_names[row['label']]}", vmin=0, vmax=1)
    s = row["size"]
    axes[0].add_patch(_square(s))
    image = axes[1].imshow(row["activation"], cmap="viridis")
    fig.colorbar(image, ax=axes[1], fraction=0.046)
    axes[1].set_title(f"(b) layer-5 map {row['feature_map']} total", fontsize=7)
    _show(axes[2], signed_to_unit(row["projection"][None])[0], vmin=0, vmax=1,
          title="(c) its projection")
    image = axes[3].imshow(row["p_true"], cmap="magma", vmin=0, vmax=1)
    fig.colorbar(image, ax=axes[3], fraction=0.046)
    axes[3].set_title("(d) p(true class)", fontsize=7)
    image = axes[4].imshow(row["top_class"], cmap="tab10", vmin=-0.5, vmax=max(k, 10) - 0.5,
                           interpolation="nearest")
    present = np.unique(row["top_class"])
    axes[4].set_title("(e) most probable: " + ", ".join(class_names[c][:10] for c in present),
                      fontsize=6)
    for ax in axes[1:]:
      ax.set_xticks([])
      ax.set_yticks([])
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))
  return plots.save(fig, path)


def _square(size: int):
  return Rectangle((-0.5, -0.5), size, size, fill=True, facecolor="gray", alpha=0.8,
                   edgecolor="yellow", linewidth=0.8)
