"""The word-to-region alignment figure (Karpathy & Fei-Fei 2015, Fig. 5).

Each panel: a test image with the regions its sentence's words align to (one
colour per region) and, below, the sentence with every word in its region's
colour (grey: the whole image). Drawn as plots.py draws: matplotlib's Agg
canvas, saved by plots.save. Input: region_phrases.infer's pairs.
"""

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from research.eval import plots

_WHOLE = "#777777"
_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
            "#9a6324", "#469990", "#800000")
_LINE_CHARS = 34  # Characters per line of the sentence under each image.


def _colour(region: int, order: list[int]) -> str:
  return _WHOLE if region == 0 else _COLOURS[order.index(region) % len(_COLOURS)]


def draw(pairs: list[dict], split, path: str, ncols: int = 2) -> str:
  """Saves one panel per pair (region_phrases.infer's) as a PNG; returns the path."""
  n = len(pairs)
  nrows = max(1, -(-n // ncols))
  fig = Figure(figsize=(3.2 * ncols, 4.2 * nrows), dpi=120)
  for i, pair in enumerate(pairs):
    ax = fig.add_subplot(nrows, ncols, i + 1)
    image = split.examples([pair["row"]])[0].image
    ax.imshow(image)
    ax.set_xticks([]), ax.set_yticks([])
    order = [r for r in dict.fromkeys(pair["word_region"]) if r != 0]
    for phrase in pair["phrases"]:
      if phrase["region"] == 0:
        continue
      ymin, xmin, ymax, xmax = phrase["box"]
      ax.add_patch(Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin, fill=False,
                             edgecolor=_colour(phrase["region"], order), linewidth=1.5))
    x, y = 0.0, -0.05
    for word, region in zip(pair["sentence"].split(), pair["word_region"]):
      if x + len(word) > _LINE_CHARS:
        x, y = 0.0, y - 0.08
      ax.text(x / _LINE_CHARS, y, word, transform=ax.transAxes, fontsize=7,
              family="monospace", va="top", color=_colour(region, order),
              fontweight="bold" if region else "normal")
      x += len(word) + 1
  fig.suptitle("Word-to-region alignment (each word coloured by its best region; grey: "
               "whole image)", fontsize=8)
  fig.subplots_adjust(hspace=0.6)
  return plots.save(fig, path)


