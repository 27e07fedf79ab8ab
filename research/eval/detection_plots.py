"""Detection figures: scenes with their ground-truth boxes and, optionally, detections;
recall against the number of proposals (Faster R-CNN Fig. 2).

Beside `plots.py` and drawn the same way: matplotlib through its Agg canvas,
saved by `plots.save`. Ground truth is drawn solid, with the class name above
the box; detections dashed, with "name score".

  python -m research.eval.detection_plots --name=detection_scenes --split=test \\
      --num=16 --out=results/detection_scenes/test_scenes.png
"""

import jax
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
import numpy as np

from research.eval import plots
from research.models import detection_postprocess as post

_GT_COLOUR, _DET_COLOUR = "#00ff66", "#ff3355"


def _draw_boxes(ax, boxes, names, colour, linestyle):
  for (ymin, xmin, ymax, xmax), name in zip(np.asarray(boxes).reshape(-1, 4), names):
    ax.add_patch(Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin, fill=False,
                           edgecolor=colour, linewidth=1.0, linestyle=linestyle))
    ax.text(xmin - 0.5, ymin - 1.0, name, color="black", fontsize=5, va="bottom",
            bbox=dict(facecolor=colour, edgecolor="none", pad=0.4, alpha=0.85))


def scene_grid(examples, class_names, path: str, *, detections=None, ncols: int = 4,
               score_threshold: float = 0.5, title: str | None = None) -> str:
  """Saves a grid of `examples` (`DetectionExample`s) with their boxes as a PNG.

  detections: optional, per example {boxes [D, 4] pixels, scores [D],
  labels [D]}; those with score >= score_threshold are drawn. Returns path.
  Pixel (r, c) covers [r, r + 1) x [c, c + 1) in box coordinates, so a box is
  drawn on the edges of the pixels it encloses.
  """
  n = len(examples)
  if n == 0:
    raise ValueError("scene_grid needs at least one example.")
  if detections is not None and len(detections) != n:
    raise ValueError(f"{len(detections)} detections for {n} examples.")
  nrows = -(-n // ncols)
  fig = Figure(figsize=(2.2 * ncols, 2.2 * nrows + (0.3 if title else 0.0)), dpi=150)
  for k, e in enumerate(examples):
    ax = fig.add_subplot(nrows, ncols, k + 1)
    ax.imshow(e.image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    _draw_boxes(ax, e.boxes, [class_names[int(c)] for c in e.labels], _GT_COLOUR, "-")
    if detections is not None:
      d = detections[k]
      keep = np.ravel(d["scores"]) >= score_threshold
      names = [f"{class_names[int(c)]} {s:.2f}"
               for c, s in zip(np.ravel(d["labels"])[keep], np.ravel(d["scores"])[keep])]
      _draw_boxes(ax, np.asarray(d["boxes"]).reshape(-1, 4)[keep], names, _DET_COLOUR, "--")
    ax.set_xlim(-0.5, e.image.shape[1] - 0.5)
    ax.set_ylim(e.image.shape[0] - 0.5, -0.5)
    ax.set_title(f"{e.filename} ({len(e.labels)})", fontsize=6)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return plots.save(fig, path)


def recall_figure(counts, curves: dict, path: str, *, title: str | None = None) -> str:
  """Saves recall against the number of proposals (Faster R-CNN Fig. 2's layout) as a PNG.

  counts: the numbers of proposals N (the log-scaled horizontal axis).
  curves: {method name: {IoU threshold: recalls [len(counts)]}}, e.g.
  proposal_recall.recall_vs_proposals' output per method; one panel per
  threshold, one line per method. Returns path.
  """
  thresholds = sorted({t for per_iou in curves.values() for t in per_iou})
  if not thresholds:
    raise ValueError("recall_figure needs at least one curve.")
  fig = Figure(figsize=(3.6 * len(thresholds), 3.0), dpi=150)
  for k, t in enumerate(thresholds):
    ax = fig.add_subplot(1, len(thresholds), k + 1)
    for name, per_iou in curves.items():
      if t in per_iou:
        ax.plot(counts, per_iou[t], marker="o", markersize=3, label=name)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("number of proposals")
    ax.set_ylabel("recall")
    ax.set_title(f"IoU = {t:g}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return plots.save(fig, path)


def detector_figure(eval_step, state, split, path: str, *, num: int = 8,
                    title: str | None = None, score_threshold: float = 0.5) -> str:
  """The first `num` images of a detection input split (detection_inputs.
  DetectionInputSplit) with their ground truth and a detector's detections
  (score >= score_threshold), as scene_grid draws them; returns path.

  eval_step: a region objective's (state, batch) -> {"detections" (leading [B]
  axis, detection_postprocess.detect's), "scale" [B], ...}, in the rescaled
  pixels of the batch; the boxes are mapped back to the stored images'.
  """
  num = min(num, len(split))
  out = jax.device_get(jax.jit(eval_step)(state, next(split.eval_batches(num))))
  dets = [{**d, "boxes": d["boxes"] / float(out["scale"][i])}
          for i, d in enumerate(post.to_host(out["detections"]))]
  return scene_grid(split.examples(num), split.class_names, path, detections=dets, title=title,
                    score_threshold=score_threshold)


def main(argv):
  from absl import flags
  from research.data import detection
  del argv
  f = flags.FLAGS
  split = detection.open_detection(f.name, f.split, f.data_dir)
  examples = [split[i] for i in range(min(f.num, len(split)))]
  path = scene_grid(examples, split.class_names, f.out,
                    title=f"{f.name}[{f.split}]: ground truth")
  print(path)


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_string("name", "detection_scenes", "TFDS name of a detection dataset.")
  flags.DEFINE_string("split", "test", "Split to draw.")
  flags.DEFINE_integer("num", 16, "Examples to draw (the first ones).")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir (default $TFDS_DATA_DIR or "
                      "~/tensorflow_datasets).")
  flags.DEFINE_string("out", "detection_scenes.png", "PNG to write.")
  app.run(main)
