"""Scenes with boxes and their generated phrases (Karpathy & Fei-Fei 2015, Fig. 6-style).

Each panel: a test image with its objects' boxes, numbered, one colour each,
and under it, per box, the region generator's phrase, the full-image
generator's and the ground truth. Drawn as plots.py draws: matplotlib's Agg
canvas, saved by plots.save (plots.py itself is kept from growing).
"""

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from research.eval import alignment_plots, plots

_LINE_CHARS = 44  # Characters per text line under each image.


def _wrapped(text: str, width: int = _LINE_CHARS) -> list[str]:
  lines, line = [], ""
  for word in text.split():
    if line and len(line) + 1 + len(word) > width:
      lines.append(line)
      line = "   " + word
    else:
      line = f"{line} {word}" if line else word
  return lines + [line] if line else lines


def draw(scenes: list[dict], path: str, *, ncols: int = 2, title: str = "") -> str:
  """Saves one panel per scene as a PNG; returns the path.

  scenes: [{"image": uint8 [H, W, 3], "regions": [{"box": pixel [ymin, xmin,
  ymax, xmax], "lines": [(label, text), ...]}]}]: each region's box is drawn
  and numbered, and its lines (e.g. ("region", generated), ("truth", phrase))
  are written under the image after its number.
  """
  n = len(scenes)
  nrows = max(1, -(-n // ncols))
  most = max((sum(len(_wrapped(f"{k}: {t}")) for r in s["regions"] for k, t in r["lines"])
              for s in scenes), default=1)
  fig = Figure(figsize=(4.2 * ncols, (3.0 + 0.14 * most) * nrows), dpi=120)
  colours = alignment_plots._COLOURS  # pylint: disable=protected-access  (one palette)
  for i, scene in enumerate(scenes):
    ax = fig.add_subplot(nrows, ncols, i + 1)
    ax.imshow(scene["image"])
    ax.set_xticks([]), ax.set_yticks([])
    y = -0.03
    for j, region in enumerate(scene["regions"]):
      colour = colours[j % len(colours)]
      ymin, xmin, ymax, xmax = region["box"]
      ax.add_patch(Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin, fill=False,
                             edgecolor=colour, linewidth=1.5))
      ax.text(xmin + 1, ymin + 1, str(j + 1), color="white", fontsize=7, va="top",
              fontweight="bold", bbox={"facecolor": colour, "pad": 1, "linewidth": 0})
      for label, text in region["lines"]:
        for k, line in enumerate(_wrapped(f"{label}: {text}")):
          prefix = f"{j + 1}. " if (label, k) == (region["lines"][0][0], 0) else "   "
          ax.text(0.0, y, prefix + line, transform=ax.transAxes, fontsize=6.5,
                  family="monospace", va="top", color=colour)
          y -= 0.055
  if title:
    fig.suptitle(title, fontsize=8)
  fig.subplots_adjust(hspace=0.25 + 0.04 * most, top=0.93)
  return plots.save(fig, path)
