"""A trained Faster R-CNN's top detections as the alignment model's regions (issue 17).

Karpathy & Fei-Fei 2015, §3.1.1: "we use the top 19 detected locations in
addition to the whole image". `detector_regions` runs a Faster R-CNN run's
newest checkpoint (its config.json and checkpoints/, read only) on every image
of a captions split at the detector's own test setting (its objective.scale /
max_size, 300 proposals, score > 0.05, per-class NMS 0.3;
models/detection_postprocess.detect), keeps the num_regions - 1 best-scoring
detections of each image in its original pixels and adds the whole image
(data/alignment_inputs.with_whole_image). The result is cached as one .npz per
split, written atomically (a temporary file, then os.replace), so a killed
computation starts again and a finished one is read back.
"""

import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from research import errors, models
from research.data import alignment_inputs, captions, datasets, detection_inputs
from research.models import detection_postprocess as post
from research.train import checkpoint, region_detection

_BATCH = 25  # Images per detector call.


class DetectorMissing(errors.ConfigError):
  """The Faster R-CNN run whose detections are the regions is not there."""


def check_detector(detector_workdir: str, key: str = "objective.detector_workdir") -> None:
  """Raises DetectorMissing (one line: what is missing and the command that makes
  it) unless detector_workdir holds a Faster R-CNN run's config.json and a checkpoint."""
  config_path = os.path.join(detector_workdir, "config.json")
  ckpt_dir = os.path.join(detector_workdir, "checkpoints")
  missing = ("config.json" if not os.path.isfile(config_path) else
             "checkpoints/" if not os.path.isdir(ckpt_dir) or not os.listdir(ckpt_dir) else None)
  if missing:
    raise DetectorMissing(
        f"config.{key}={detector_workdir!r}: no Faster R-CNN run there ({missing} missing). "
        f"To fix: python launch.py --config=experiments/faster_rcnn.py "
        f"--workdir={detector_workdir} (or point config.{key} at a trained run).")
  with open(config_path) as f:
    name = json.load(f)["objective"]["name"]
  if name != "faster_rcnn":
    raise DetectorMissing(f"config.{key}={detector_workdir!r} is a {name!r} run, not a "
                          "Faster R-CNN one (experiments/faster_rcnn.py).")


def cache_path(cache_dir: str, dataset: str, split: str, num_regions: int) -> str:
  return os.path.join(cache_dir, f"{dataset.replace('/', '_')}_{split}_{num_regions}.npz")


def _detector(detector_workdir: str):
  """(jitted images uint8 [B, S, S, 3], hw float32 [B, 2] -> detections, its config dict)."""
  with open(os.path.join(detector_workdir, "config.json")) as f:
    config = json.load(f)
  step, arrays = checkpoint.load_arrays(detector_workdir)
  params = arrays["params"]
  num_classes = params["head"]["cls_score"]["bias"].shape[0] - 1
  model = models.get_model(config["model"]["name"], num_classes=num_classes,
                           **config["model"]["kwargs"])
  data = config["data"]
  mean, std = datasets.normalization(data["name"], data["mean"], data["std"])
  logging.info("Regions: Faster R-CNN %s step %d (%d classes).", detector_workdir, step,
               num_classes)

  @jax.jit
  def detect(images, hw):
    x = region_detection.pixels_in(images, hw, mean, std)
    out, _ = model.apply({"params": params}, x, train=False, image_hw=hw)
    return post.detect_batch(out["class_logits"], out["box_deltas"], out["rois"], hw,
                             out["roi_mask"])
  return detect, config


def _rescaled_batch(examples, scale: int, max_size: int):
  """(uint8 [B, S, S, 3] rescaled and padded as the detector's input split, hw
  float32 [B, 2], factors float32 [B])."""
  images = np.zeros((len(examples), max_size, max_size, 3), np.uint8)
  hw = np.zeros((len(examples), 2), np.float32)
  factors = np.zeros((len(examples),), np.float32)
  for i, e in enumerate(examples):
    (h, w), factor = detection_inputs.rescaled_hw(e.image.shape[:2], scale, max_size)
    image = e.image
    if (h, w) != image.shape[:2]:
      image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    images[i, :h, :w], hw[i], factors[i] = image, (h, w), factor
  return images, hw, factors


def detector_regions(split: captions.CaptionSplit, detector_workdir: str, cache_file: str,
                     num_regions: int = 20) -> tuple[np.ndarray, np.ndarray]:
  """The regions of every image of `split`: the whole image and the detector's
  num_regions - 1 best detections (§3.1.1), from `cache_file` when it exists.

  Returns (float32 [N, num_regions, 4] pixel boxes of the stored images,
  region_mask float32 [N, num_regions]).

  Raises:
    DetectorMissing: no Faster R-CNN run in detector_workdir (before any work).
  """
  if os.path.exists(cache_file):
    with np.load(cache_file) as cached:
      if cached["regions"].shape == (len(split), num_regions, 4):
        logging.info("Regions of %s read from %s.", split.what, cache_file)
        return cached["regions"], cached["region_mask"]
    logging.warning("%s does not fit %s (%d images, %d regions); computing again.",
                    cache_file, split.what, len(split), num_regions)
  check_detector(detector_workdir)
  detect, config = _detector(detector_workdir)
  scale, max_size = config["objective"]["scale"], config["objective"]["max_size"]
  n = len(split)
  regions = np.zeros((n, num_regions, 4), np.float32)
  mask = np.zeros((n, num_regions), np.float32)
  start = last_log = time.time()
  for lo in range(0, n, _BATCH):
    rows = list(range(lo, min(n, lo + _BATCH)))
    examples = split.examples(rows)
    images, hw, factors = _rescaled_batch(examples, scale, max_size)
    pad = _BATCH - len(rows)  # One compiled shape: the last batch padded with copies.
    if pad:
      images = np.concatenate([images, np.repeat(images[-1:], pad, 0)])
      hw = np.concatenate([hw, np.repeat(hw[-1:], pad, 0)])
    dets = post.to_host(detect(jnp.asarray(images), jnp.asarray(hw)))
    for j, (i, e) in enumerate(zip(rows, examples)):
      d = dets[j]
      regions[i], mask[i] = alignment_inputs.with_whole_image(
          d["boxes"] / factors[j], d["scores"], e.image.shape[:2], num_regions)
    if time.time() - last_log > 30 or rows[-1] == n - 1:
      last_log = time.time()
      logging.info("Regions of %s: %d / %d images (%.1f images/s).", split.what, rows[-1] + 1,
                   n, (rows[-1] + 1) / max(time.time() - start, 1e-9))
  os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
  tmp = f"{cache_file}.tmp.{os.getpid()}.npz"
  np.savez(tmp, regions=regions, region_mask=mask,
           detector=np.asarray(os.path.abspath(detector_workdir)))
  os.replace(tmp, cache_file)
  logging.info("Regions of %s: %.1f detections per image on average, cached in %s.",
               split.what, float(mask.sum(1).mean() - 1), cache_file)
  return regions, mask
