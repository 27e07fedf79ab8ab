"""R-CNN's stages around the fine-tuning (Girshick, Donahue, Darrell & Malik 2014, §2).

  1. proposals: selective search per image (research/data/proposals.py's
     SplitProposals, the cache Fast R-CNN reads), with progress lines
     (`split_proposals`);
  2. fine-tuning: the one training loop on warped windows (objective
     `rcnn_finetune`, whose inputs `finetune_inputs` builds);
  3. features of every region of the training images (`extract_features`:
     fc7 for the SVMs, pool5 for the box regressors), one-vs-rest linear SVMs
     (svm.py) and box regressors (bbox_regression.py);
  4. detection of a test image (`Detector`): warp its proposals, features,
     SVM scores, class-specific box regression, per-class NMS (0.3).

Every stage's output is a file in the workdir (`StageFiles`), written
atomically (a temporary file renamed into place) under a name holding a hash
of the config, so a killed run resumes at the stage it was in and a changed
config never reads another's files. Single-process (the fine-tuning is the
loop's, with its devices and checkpoints).
"""

import hashlib
import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from research.data import datasets, detection, proposals as proposals_lib, rcnn_regions
from research.models import detection_postprocess as post, rcnn as rcnn_model
from research.ops import boxes as box_ops, detection_targets
from research.train import metrics as metrics_lib, steps, workdir as workdir_lib

# Config keys that do not change what a stage computes (progress and checkpoint cadence).
_CADENCE = workdir_lib.RESUMABLE_KEYS - {"total_steps", "num_epochs"}


def proposal_settings(config) -> proposals_lib.ProposalSettings:
  """config.proposals as ProposalSettings (resize_width 0: the image's own size); checked."""
  return proposals_lib.settings_from_config(config.proposals, "proposals")


def split_proposals(config, split: detection.DetectionSplit, split_name: str,
                    indices) -> tuple[list[np.ndarray], np.ndarray]:
  """(boxes per image float32 [P_i, 4], selective search's seconds float64 [n]) of
  examples `indices` of config.data's split_name: the cache Fast R-CNN reads
  (proposals.SplitProposals; config.proposals.cache_dir, "" = beside the data),
  entries computed into it where missing, with progress lines."""
  data = config.data
  source = proposals_lib.SplitProposals.open(
      proposal_settings(config), data.name, split_name, config.proposals.max_proposals,
      cache_dir=config.proposals.cache_dir, data_dir=data.data_dir)
  boxes, seconds = source.read(lambda i: split[i].image, indices,
                               log=lambda line: logging.info("%s", line))
  logging.info("proposals %s[%s]: %d images, %.1f proposals/image", data.name, split_name,
               len(boxes), np.mean([len(b) for b in boxes]) if boxes else 0.0)
  return boxes, seconds


def fill_colour(config) -> tuple:
  """R-CNN's fill beyond the image: the data's mean colour in 0..255."""
  mean, _ = datasets.normalization(config.data.name, config.data.mean, config.data.std)
  return tuple(float(255.0 * m) for m in mean)


def open_regions(config, split_name: str, num_images: int):
  """(split, indices, examples, proposal boxes, proposal seconds, RegionSets)
  of the first num_images (0: all) of config.data's split_name."""
  data = config.data
  split = detection.open_detection(data.name, split_name, data.data_dir, download=data.download)
  n = len(split) if num_images <= 0 else min(num_images, len(split))
  indices = np.arange(n)
  boxes, seconds = split_proposals(config, split, split_name, indices)
  examples = split.examples(indices)
  r = config.rcnn
  sets = rcnn_regions.region_sets(
      examples, boxes, split.class_names, fill_colour(config),
      max_proposals=config.proposals.max_proposals, max_objects=split.max_objects,
      finetune_iou=r.finetune_iou, svm_negative_iou=r.svm_negative_iou,
      regression_iou=r.regression_iou)
  return split, indices, examples, boxes, seconds, sets


def finetune_inputs(config):
  """(training windows, {"test": held-out windows}) for the rcnn_finetune objective:
  config.rcnn.train_images of data.train_split, and finetune_eval_windows windows of
  the first finetune_eval_images of rcnn.finetune_eval_split, drawn 1:3 like a batch."""
  r = config.rcnn
  size, context = r.warp_size, r.context
  frac = r.positives_per_batch / config.batch_size
  *_, train_sets = open_regions(config, config.data.train_split, r.train_images)
  train = rcnn_regions.WarpedRegionSplit(train_sets, size, context, frac)
  *_, eval_sets = open_regions(config, r.finetune_eval_split, r.finetune_eval_images)
  held_out = rcnn_regions.WarpedRegionSplit(eval_sets, size, context, frac)
  rows = np.sort(held_out.step_rows(r.finetune_eval_windows, config.seed, 0))
  return train, {"test": rcnn_regions.WarpedRegionSplit(eval_sets, size, context, frac, rows)}


# --- Stage files ------------------------------------------------------------------------


def config_hash(config, *extra) -> str:
  """12 hex digits of the config (less the cadence keys) and `extra`."""
  values = {k: v for k, v in json.loads(config.to_json_best_effort()).items()
            if k not in _CADENCE}
  text = json.dumps([values, [str(e) for e in extra]], sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


class StageFiles:
  """<workdir>/rcnn_stages/<stage>-<key>.npz, each written whole or not at all."""

  def __init__(self, workdir: str, key: str):
    self.root, self.key = os.path.join(workdir, "rcnn_stages"), key

  def path(self, stage: str) -> str:
    return os.path.join(self.root, f"{stage}-{self.key}.npz")

  def load(self, stage: str) -> dict | None:
    path = self.path(stage)
    if not os.path.exists(path):
      return None
    with np.load(path, allow_pickle=False) as f:
      logging.info("R-CNN stage %r: reusing %s", stage, path)
      return {k: f[k] for k in f.files}

  def save(self, stage: str, arrays: dict) -> None:
    os.makedirs(self.root, exist_ok=True)
    path = self.path(stage)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)


# --- Features --------------------------------------------------------------------------


def feature_fn(model, variables, config, layers=("fc7", "pool5")):
  """Jitted (image uint8 [H, W, 3], boxes [C, 4]) -> float32 [C, sum of the layers'
  sizes]: the warped regions' activations (R-CNN §2.1), standardised as in training."""
  mean, std = datasets.normalization(config.data.name, config.data.mean, config.data.std)
  r, fill = config.rcnn, fill_colour(config)

  @jax.jit
  def fn(image, boxes):
    crops = rcnn_model.warp_pixels(image, boxes, r.warp_size, r.context, fill)
    x = steps.standardize(steps.to_unit_range(crops), mean, std)
    _, features = model.apply(variables, x, train=False)
    missing = [k for k in layers if k not in features]
    if missing:
      raise KeyError(f"config.model.name={config.model.name!r} has no feature {missing[0]!r} "
                     f"(it has {sorted(features)}); R-CNN reads fc7 and pool5 (AlexNet).")
    return jnp.concatenate([features[k].reshape(len(boxes), -1) for k in layers], axis=1)
  return fn


def image_features(fn, image, boxes, chunk: int) -> np.ndarray:
  """fn over all of one image's boxes, `chunk` at a time: float32 [N, D]."""
  image = jnp.asarray(image)
  return rcnn_model.in_chunks(lambda b: fn(image, b), boxes, chunk)


def extract_features(fn, sets: rcnn_regions.RegionSets, num_images: int, fc7_size: int,
                     chunk: int) -> dict:
  """Features of the regions of the first num_images images of `sets`:
  {"rows": int [N'] (regions of sets), "fc7": float16 [N', D7], "pool5": float32
  [R, D5] of the regression pairs among them, "pool5_rows": int [R], "seconds"}."""
  start = time.perf_counter()
  rows = np.flatnonzero(sets.image < num_images)
  fc7, pool5, pool5_rows = [], [], []
  progress = metrics_lib.Progress(num_images, 1, 0)
  for i in range(num_images):
    mine = rows[sets.image[rows] == i]
    out = image_features(fn, sets.images[i], sets.boxes[mine], chunk)
    fc7.append(out[:, :fc7_size].astype(np.float16))
    pairs = sets.regression_mask[mine]
    pool5.append(out[pairs, fc7_size:])
    pool5_rows.append(mine[pairs])
    if (i + 1) % max(1, num_images // 10) == 0 or i + 1 == num_images:
      logging.info("features: %s", progress.line(i + 1, {"regions/image": len(mine)}))
  return {"rows": rows, "fc7": np.concatenate(fc7), "pool5": np.concatenate(pool5),
          "pool5_rows": np.concatenate(pool5_rows),
          "seconds": np.float64(time.perf_counter() - start)}


# --- Detection -------------------------------------------------------------------------


class Detector:
  """R-CNN at test time (§2.2), one image at a time.

  detect(image, proposals) -> (with box regression, without) detections, each
  {boxes [D, 4], scores [D], labels [D]} (detection_metrics' input): SVM
  scores of the fc7 features; each class's boxes moved by its regressor
  (appendix C) or left as proposed; per class NMS at nms_iou; the best
  max_detections with score > score_threshold. Proposals are padded to a
  multiple of `chunk` so the NMS compiles once per size bucket (`warm_up`).
  """

  def __init__(self, fn, svms, regressors, fc7_size: int, *, chunk: int, nms_iou: float,
               score_threshold: float, max_detections: int = post.MAX_DETECTIONS):
    self.fn, self.svms, self.regressors, self.fc7_size = fn, svms, regressors, fc7_size
    self.chunk = chunk
    self._nms = jax.jit(lambda scores, boxes, hw, valid: post.detections_from_scores(
        scores, boxes, hw, valid, score_threshold=score_threshold, nms_iou=nms_iou,
        max_detections=max_detections))

  def _padded(self, n: int) -> int:
    return max(1, -(-n // self.chunk)) * self.chunk

  def warm_up(self, image, counts) -> None:
    """Compiles the features and NMS for every padded size among `counts` proposals."""
    c = len(self.svms.bias)
    for p in sorted({self._padded(n) for n in counts}):
      image_hw = np.asarray(image.shape[:2], np.float32)
      jax.block_until_ready(self._nms(np.zeros((p, c), np.float32), np.zeros((p, c, 4), np.float32),
                                      image_hw, np.zeros(p, bool)))
    self.fn(jnp.asarray(image), jnp.zeros((self.chunk, 4), jnp.float32)).block_until_ready()

  def detect(self, image, proposals, with_plain: bool = True):
    proposals = np.asarray(proposals, np.float32).reshape(-1, 4)
    n, p, c = len(proposals), self._padded(len(proposals)), len(self.svms.bias)
    hw = np.asarray(image.shape[:2], np.float32)
    if n == 0:
      empty = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
               "labels": np.zeros(0, np.int32)}
      self.last_seconds = 0.0
      return empty, dict(empty)
    start = time.perf_counter()
    feats = image_features(self.fn, image, proposals, self.chunk)
    scores = np.zeros((p, c), np.float32)
    scores[:n] = self.svms.scores(feats[:, :self.fc7_size])
    t = self.regressors.predict(feats[:, self.fc7_size:])   # [n, C, 4]
    moved = np.zeros((p, c, 4), np.float32)
    moved[:n] = np.asarray(box_ops.decode(t, proposals[:, None, :], *detection_targets.RAW))
    valid = np.arange(p) < n
    with_bb = post.to_host(jax.tree.map(lambda a: a[None], self._nms(scores, moved, hw, valid)))[0]
    self.last_seconds = time.perf_counter() - start  # The detector's time (not the ablation's).
    if not with_plain:
      return with_bb, None
    plain = np.zeros((p, c, 4), np.float32)
    plain[:n] = proposals[:, None, :]
    without = post.to_host(jax.tree.map(lambda a: a[None], self._nms(scores, plain, hw, valid)))[0]
    return with_bb, without
