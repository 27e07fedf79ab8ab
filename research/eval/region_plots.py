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
  texts = [[(j, line) for j, r in enumerate(s["regions"]) for label, text in r["lines"]
            for line in _text_lines(j, label, text, r["lines"][0][0])] for s in scenes]
  most = max((len(t) for t in texts), default=0)
  side, pad, line_in = 3.0, 0.35, 0.125  # Inches: image, margins, one text line.
  row_h = side + most * line_in + pad
  width, height = ncols * (side + 2 * pad), nrows * row_h + 0.4
  fig = Figure(figsize=(width, height), dpi=120)
  colours = alignment_plots._COLOURS  # pylint: disable=protected-access  (one palette)
  for i, scene in enumerate(scenes):
    r, c = divmod(i, ncols)
    left, top = c * (side + 2 * pad) + pad, height - 0.4 - r * row_h
    ax = fig.add_axes((left / width, (top - side) / height, side / width, side / height))
    ax.imshow(scene["image"])
    ax.set_xticks([]), ax.set_yticks([])
    for j, region in enumerate(scene["regions"]):
      colour = colours[j % len(colours)]
      ymin, xmin, ymax, xmax = region["box"]
      ax.add_patch(Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin, fill=False,
                             edgecolor=colour, linewidth=1.5))
      ax.text(xmin + 1, ymin + 1, str(j + 1), color="white", fontsize=7, va="top",
              fontweight="bold", bbox={"facecolor": colour, "pad": 1, "linewidth": 0})
    for k, (j, line) in enumerate(texts[i]):
      fig.text(left / width, (top - side - 0.05 - k * line_in) / height, line, fontsize=6.5,
               family="monospace", va="top", color=colours[j % len(colours)])
  if title:
    fig.suptitle(title, fontsize=8, y=1 - 0.12 / height)
  return plots.save(fig, path)


def _text_lines(j: int, label: str, text: str, first_label: str) -> list[str]:
  lines = _wrapped(f"{label}: {text}")
  return [(f"{j + 1}. " if label == first_label and k == 0 else "   ") + line
          for k, line in enumerate(lines)]
