"""Selective search's time per image (research/data/proposals.py), on real photographs.

  nice -n 5 python -m benchmarks.selective_search [--short_side=192] [--resize_width=500]

Runs fast mode (R-CNN §2.1) on the ten photographs that scikit-learn and
scikit-image ship (research/data/photos.py, shorter side `short_side`
pixels), once at that size and once resized to `resize_width` pixels wide
(R-CNN's setting; 0 skips it), and prints the median seconds per image and
the median number of boxes kept (cap 2,000). The paper's figure for fast mode
is about 2 s per image on a CPU (Faster R-CNN §1).

Measured here (2 CPU cores shared with other jobs, load average ~12;
opencv-contrib-python-headless 4.13.0.92; 2026-11-29), defaults:
  own size (192 to 289 x 192 pixels): 0.78 s per image (0.49 to 1.14), 315 boxes
  500 pixels wide: 3.61 s per image (2.78 to 5.01), 470 boxes
OpenCV's fast mode yields far fewer than R-CNN's ~2,000 boxes on such small
images (after dropping boxes under 8 pixels and duplicates).
"""

from absl import app, flags
import numpy as np

from research.data import photos, proposals

_SHORT = flags.DEFINE_integer("short_side", 192, "Shorter side of the photos, pixels.")
_WIDTH = flags.DEFINE_integer("resize_width", 500, "R-CNN's width; 0 skips that run.")


def main(_):
  images = photos.load_photos(_SHORT.value)
  runs = [("own size", None)] + ([(f"{_WIDTH.value} px wide", _WIDTH.value)] if _WIDTH.value else [])
  for what, width in runs:
    settings = proposals.ProposalSettings(resize_width=width)
    found = [proposals.selective_search(image, settings) for image in images]
    sizes = sorted(f"{i.shape[1]}x{i.shape[0]}" for i in images)
    print(f"{what} ({len(images)} photos, {sizes[0]} .. {sizes[-1]}): "
          f"{np.median([f.seconds for f in found]):.2f} s per image (median; "
          f"min {min(f.seconds for f in found):.2f}, max {max(f.seconds for f in found):.2f}), "
          f"{int(np.median([len(f.boxes) for f in found]))} boxes (median)")


if __name__ == "__main__":
  app.run(main)
