"""Spatial transformer networks' pictures (Jaderberg et al. 2015): Fig. 3 (test
inputs above what a trained transformer makes of them) and Table 1 drawn with
our errors beside the paper's.

Drawn as plots.py draws (matplotlib's Agg canvas, saved by `plots.save`); what
they show comes from stn_analysis.py.
"""

from collections.abc import Sequence
import textwrap

from matplotlib.figure import Figure
import numpy as np

from research.eval import plots


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
  return plots.save(fig, path, tight=True)


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
  return plots.save(fig, path, tight=True)
