"""Every figure of the project, drawn with one save helper.

Matplotlib through its Agg canvas directly (no pyplot), so importing this
neither needs a display nor changes the process's global backend; `save`
writes every PNG. It is the one module that imports matplotlib
(tests/test_layers.py checks), which is why it runs past 400 lines: grids,
curves and the papers' own figures (Yosinski et al.'s Fig. 2, ZF Net, STN)
share the helpers above them.

Images are float arrays [N, H, W, C], C in {1, 3}, in `value_range` ([0, 1]
by default; pass (-1, 1) for DCGAN samples); ZF Net's projections are signed
(deconvnet reconstructions), each shown on its own scale, zero as mid-gray,
as the paper shows them.
"""

from collections.abc import Sequence
import os
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
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


# --- Zeiler & Fergus 2013: Fig. 2, filters, Fig. 7 -------------------------


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
      _show(ax, tile(images, 3, padding=1), title=f"{label}: {what}", vmin=0, vmax=1)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))  # Room for the title.
  return save(fig, path)


def filters_figure(kernel: np.ndarray, path: str, title: str) -> str:
  """First-layer filters [k, k, C_in, C_out] as images, each scaled to [0, 1]."""
  w = np.moveaxis(np.asarray(kernel, np.float32), -1, 0)  # [C_out, k, k, C_in]
  lo = w.min(axis=(1, 2, 3), keepdims=True)
  hi = w.max(axis=(1, 2, 3), keepdims=True)
  w = (w - lo) / np.maximum(hi - lo, 1e-12)
  grid = tile(w, 8, padding=1)
  scale = max(1, 560 // grid.shape[1])
  fig = Figure(figsize=(grid.shape[1] * scale / 100 + 0.2, grid.shape[0] * scale / 100 + 0.4),
               dpi=100)
  ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
  _show(ax, grid, vmin=0, vmax=1)
  fig.suptitle(title, fontsize=8)
  return save(fig, path)


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
  return save(fig, path)


def _square(size: int):
  return Rectangle((-0.5, -0.5), size, size, fill=True, facecolor="gray", alpha=0.8,
                   edgecolor="yellow", linewidth=0.8)


# --- Spatial transformer networks: Fig. 3, Table 1 ------------------------


def pose_figure(blocks: Sequence[dict], path: str, *, title: str = "") -> str:
  """One pair of rows per block: the inputs, then the transformer's outputs.

  Args:
    blocks: dicts with "name" (the row label, e.g. "RTS"), "inputs" [N, H, W, 1],
      "outputs" [N, H', W', 1], and optionally "predicted" and "labels" (int
      [N]): the prediction is written over each output, in red when wrong.
    path: the PNG to write.
    title: the figure's title.
  """
  cols = max(len(b["inputs"]) for b in blocks)
  rows = 2 * len(blocks)
  title = textwrap.fill(title, max(60, 12 * cols))
  title_h = 0.2 + 0.18 * title.count("\n") if title else 0.0  # Inches.
  height = 1.0 * rows + title_h
  fig = Figure(figsize=(0.9 * cols + 1.0, height), dpi=100)
  for r, block in enumerate(blocks):
    for kind, images in enumerate((block["inputs"], block["outputs"])):
      for c, image in enumerate(images):
        ax = fig.add_subplot(rows, cols, (2 * r + kind) * cols + c + 1)
        ax.imshow(np.clip(image[..., 0], 0, 1), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if c == 0:
          ax.set_ylabel(f"{block['name']}\n{'input' if kind == 0 else 'ST output'}",
                        fontsize=7)
        if kind == 1 and "predicted" in block:
          wrong = "labels" in block and block["predicted"][c] != block["labels"][c]
          ax.set_title(str(int(block["predicted"][c])), fontsize=7, pad=1,
                       color="red" if wrong else "black")
  if title:
    fig.suptitle(title, fontsize=9, y=1 - 0.05 / height, va="top")
  # Leave the title its strip: tight_layout alone would draw the rows over it.
  fig.tight_layout(pad=0.3, h_pad=0.4, w_pad=0.2, rect=(0, 0, 1, 1 - title_h / height))
  return save(fig, path, tight=True)


def results_table(row_names: Sequence[str], col_names: Sequence[str], ours, paper,
                  path: str, *, title: str = "") -> str:
  """Draws a table whose cells read "ours (paper)", errors in %.

  Args:
    row_names, col_names: the models and the datasets.
    ours, paper: float [rows, cols] errors in %, NaN where not run / not reported.
  """
  def text(o, p):
    left = "—" if np.isnan(o) else f"{o:.1f}"
    return left + ("" if np.isnan(p) else f" ({p:.1f})")

  ours, paper = np.asarray(ours, float), np.asarray(paper, float)
  cells = [[text(o, p) for o, p in zip(ro, rp)] for ro, rp in zip(ours, paper)]
  fig = Figure(figsize=(1.3 + 1.1 * len(col_names), 0.6 + 0.3 * (len(row_names) + 1)),
               dpi=100)
  ax = fig.add_axes((0, 0, 1, 0.85 if title else 1))
  ax.set_axis_off()
  table = ax.table(cellText=cells, rowLabels=list(row_names), colLabels=list(col_names),
                   loc="center", cellLoc="center")
  table.auto_set_font_size(False)
  table.set_fontsize(8)
  table.scale(1, 1.3)
  if title:
    fig.suptitle(textwrap.fill(title, 20 + 16 * len(col_names)), fontsize=8)
  return save(fig, path, tight=True)


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
