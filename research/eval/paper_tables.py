"""Tables of our errors beside a paper's, and the noise in such a comparison.

Used for Spatial Transformer Networks' Table 1 (experiments/stn.py); any
experiment whose paper reports a grid of errors (models x datasets) can use
it. Errors are fractions in metrics and percentages in the tables.
"""

import math

import numpy as np


def error_grid(rows, cols, metrics: dict, paper: dict | None, *,
               key: str = "{row}/{col}/test/error") -> tuple[np.ndarray, np.ndarray]:
  """(ours, paper), float [len(rows), len(cols)] errors in %, NaN where missing.

  rows, cols: metric-key names (e.g. "st_cnn", "rts"); `key` builds each
  cell's metric from them. paper: {row: {col: error %}}, or None when the
  paper has no number for this setting (all NaN).
  """
  ours = np.full((len(rows), len(cols)), np.nan)
  theirs = np.full_like(ours, np.nan)
  for i, r in enumerate(rows):
    for j, c in enumerate(cols):
      ours[i, j] = 100 * metrics.get(key.format(row=r, col=c), np.nan)
      if paper is not None:
        theirs[i, j] = paper.get(r, {}).get(c, np.nan)
  return ours, theirs


def markdown(row_labels, col_labels, ours, paper, *, first_column: str = "model") -> str:
  """A markdown table whose cells read "ours (paper)", one decimal, "—" for NaN."""
  fmt = lambda v: "—" if math.isnan(v) else f"{v:.1f}"
  lines = [f"| {first_column} | " + " | ".join(col_labels) + " |",
           "|---" * (len(col_labels) + 1) + "|"]
  lines += [f"| {r} | " + " | ".join(f"{fmt(o)} ({fmt(p)})" for o, p in zip(ro, rp)) + " |"
            for r, ro, rp in zip(row_labels, ours, paper)]
  return "\n".join(lines)


def difference_standard_error(a: float, b: float, n: int) -> float:
  """The standard error of the difference of two error rates a and b, each
  measured on the same n test examples treated as independent samples."""
  return math.sqrt(a * (1 - a) / n + b * (1 - b) / n)
