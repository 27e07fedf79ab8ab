"""R-CNN's four stages in order, each resumed from its file (Girshick et al. 2014, §2).

`run_stages(config, workdir)` is experiments/rcnn.py's run without the
figure: 1. the proposals of the training, held-out and test images (the
selective-search cache Fast R-CNN shares, research/train/rcnn.split_proposals);
2. fine-tuning in the one training loop (objective `rcnn_finetune`,
checkpoints in the workdir; its seconds summed over the invocations that
trained); 3. fc7 features of every region of the first rcnn.svm_images
training images, the one-vs-rest SVMs with hard-negative mining (appendix B)
and the pool5 box regressors (appendix C); 4. detection of the test images
(`rcnn.Detector`), timed per image (batch 1, after compilation), with and
without box regression. Stages 3 and 4 write their arrays to
<workdir>/rcnn_stages/<stage>-<config hash>.npz (rcnn.StageFiles), so a
killed run resumes at the stage it was in. The pieces (proposals, windows,
features, the detector) are research/train/rcnn.py's.
"""

import json
import os
import signal
import time
from typing import NamedTuple

from absl import logging
import jax
import numpy as np

from research import models
from research.data import detection
from research.train import (bbox_regression, checkpoint, detection_metrics,
                            metrics as metrics_lib, rcnn, svm, trainer)

NEVER = -1e4  # The SVM bias of a class without training regions: below any threshold.
# Fault injection for the resume test: SIGKILL this process after this stage is saved.
_KILL_AFTER_STAGE_ENV = "RESEARCH_TEST_SIGKILL_AFTER_STAGE"


class RcnnRun(NamedTuple):
  """What run_stages returns: the final metrics (see run_stages), and the test
  images (DetectionExamples), their class names and their detections with box
  regression (per image {boxes [D, 4] pixels, scores [D], labels [D]}), for figures."""
  metrics: dict
  test_examples: list
  class_names: tuple
  detections: list[dict]


def _seconds_file(workdir: str) -> str:
  return os.path.join(workdir, "rcnn_stages", "finetune_seconds.json")


def finetune(config, workdir: str):
  """Stage 2, the loop's (resumable); returns (TrainResult, fine-tuning seconds
  over all invocations that trained)."""
  already = checkpoint.Checkpointer(workdir).latest_step() if os.path.isdir(
      os.path.join(workdir, "checkpoints")) else None
  result = trainer.train(config, workdir)
  path = _seconds_file(workdir)
  spent = json.load(open(path)) if os.path.exists(path) else {"seconds": 0.0}
  if already is None or already < result.metrics["steps"]:
    spent["seconds"] += result.metrics["wall_time_s"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp", "w") as f:
      json.dump(spent, f)
    os.replace(f"{path}.tmp", path)
  return result, spent["seconds"]


def _stage(files: rcnn.StageFiles, name: str, compute) -> dict:
  """The stage's saved arrays, or compute() saved first (then the test's kill, if asked)."""
  found = files.load(name)
  if found is not None:
    return found
  arrays = compute()
  files.save(name, arrays)
  if os.environ.get(_KILL_AFTER_STAGE_ENV) == name:
    os.kill(os.getpid(), signal.SIGKILL)
  return arrays


def _flat(dets: list[dict]) -> dict:
  """Per-image detections as flat arrays (an .npz's), "image" the image's position."""
  return {"image": np.concatenate([np.full(len(d["scores"]), i) for i, d in enumerate(dets)]),
          **{k: np.concatenate([d[k] for d in dets]) for k in ("boxes", "scores", "labels")}}


def _per_image(flat: dict, prefix: str, n: int) -> list[dict]:
  """_flat's inverse for the arrays named <prefix><key>."""
  image = flat[f"{prefix}image"]
  return [{k: flat[f"{prefix}{k}"][image == i] for k in ("boxes", "scores", "labels")}
          for i in range(n)]


def _first(n: int, size: int) -> np.ndarray:
  """The indices of the first n (0: all) of `size` examples."""
  return np.arange(size if n <= 0 else min(n, size))


def train_svms(config, feats: dict, sets, num_classes: int) -> dict:
  """Stage 3's SVMs (svm.train_svms, appendix B) on the fc7 features `feats` of the
  regions `sets`, as arrays: weights float32 [D7, K], bias [K] (NEVER for a class
  without both positive and negative regions), classes bool [K] (those trained),
  feature_scale, seconds. Raises ValueError when no class can be trained."""
  r = config.rcnn
  start = time.perf_counter()
  labels = sets.svm_labels[feats["rows"]]
  # A class without positives (or negatives) among these images gets no SVM: it
  # never scores above the threshold (NEVER), and the report counts the classes trained.
  trained_classes = (labels == 1).any(axis=0) & (labels == 0).any(axis=0)
  if not trained_classes.any():
    raise ValueError(f"no class has both positive and negative regions in the first "
                     f"{r.svm_images} training images; raise config.rcnn.svm_images.")
  trained = svm.train_svms(feats["fc7"].astype(np.float32), labels[:, trained_classes],
                           rounds=r.svm_rounds, initial_negatives=r.svm_initial_negatives,
                           c=r.svm_c, seed=config.seed)
  logging.info("SVMs: %d classes on %d regions in %.0f s; final caches %s", len(trained.bias),
               len(labels), time.perf_counter() - start, [h[-1]["cache"] for h in trained.history])
  weights = np.zeros((trained.weights.shape[0], num_classes), np.float32)
  bias = np.full((num_classes,), NEVER, np.float32)
  weights[:, trained_classes], bias[trained_classes] = trained.weights, trained.bias
  return {"weights": weights, "bias": bias, "classes": trained_classes,
          "feature_scale": np.float64(trained.feature_scale),
          "seconds": np.float64(time.perf_counter() - start)}


def train_regressors(config, feats: dict, sets, num_classes: int) -> dict:
  """Stage 3's class-specific box regressors (appendix C) on the pool5 features of
  the regression pairs among `sets`, as arrays (bbox_regression.BoxRegressors' fields
  and seconds)."""
  start = time.perf_counter()
  rows = feats["pool5_rows"]
  trained = bbox_regression.train_regressors(
      feats["pool5"], sets.regression_targets[rows], sets.regression_classes[rows], num_classes,
      lam=config.rcnn.ridge_lambda)
  return {"weights": trained.weights, "bias": trained.bias,
          "feature_scale": np.float64(trained.feature_scale), "num_pairs": trained.num_pairs,
          "seconds": np.float64(time.perf_counter() - start)}


def detect_images(detector: rcnn.Detector, examples, boxes) -> dict:
  """Stage 4: each example's detections with and without box regression (as
  _flat arrays prefixed bb_ and plain_) and the detector's seconds per image."""
  detector.warm_up(examples[0].image, [len(b) for b in boxes])
  with_bb, without, seconds = [], [], []
  progress = metrics_lib.Progress(len(examples), 1, 0)
  for i, (e, b) in enumerate(zip(examples, boxes), start=1):
    a, plain = detector.detect(e.image, b)
    with_bb.append(a)
    without.append(plain)
    seconds.append(detector.last_seconds)
    if i % max(1, len(examples) // 10) == 0 or i == len(examples):
      logging.info("detection: %s", progress.line(i, {"s/image": np.mean(seconds)}))
  return {**{f"bb_{k}": v for k, v in _flat(with_bb).items()},
          **{f"plain_{k}": v for k, v in _flat(without).items()},
          "seconds": np.asarray(seconds)}


def run_stages(config, workdir: str) -> RcnnRun:
  """The four stages, each resumed from its files (see the module docstring).

  Returns RcnnRun; its metrics: test/mAP (VOC 2007 11-point mAP@0.5, with box
  regression) and test/mAP_no_bbox_regression, test/coco_AP (AP50, AP75) and
  test/coco_AP_no_bbox_regression, test/images, test/proposals_per_image,
  test/proposal_seconds_per_image (selective search's stored seconds),
  test/features_seconds_per_image (the detector's), test/seconds_per_image
  (their sum), finetune/window_accuracy and finetune/train_loss, the seconds of
  each training stage (finetune_seconds, feature_seconds, svm_seconds,
  regression_seconds; train_time_s their sum), svm_training_regions,
  svm_classes_trained, regression_pairs.
  """
  r, data = config.rcnn, config.data
  # Every split opens (and checks every annotation) before any work.
  test_split = detection.open_detection(data.name, data.eval_split, data.data_dir,
                                        download=data.download)
  for name, n in ((data.train_split, r.train_images), (r.finetune_eval_split,
                                                       r.finetune_eval_images)):
    split = detection.open_detection(data.name, name, data.data_dir, download=data.download)
    rcnn.split_proposals(config, split, name, _first(n, len(split)))  # Stage 1 (cached).
  test_indices = _first(r.test_images, len(test_split))
  test_boxes, proposal_seconds = rcnn.split_proposals(config, test_split, data.eval_split,
                                                      test_indices)

  result, finetune_seconds = finetune(config, workdir)  # Stage 2.
  state = result.state
  variables = {"params": state.params, **({"batch_stats": state.batch_stats}
                                          if state.batch_stats else {})}
  num_classes = len(test_split.class_names)
  model = models.get_model(config.model.name, num_classes=num_classes + 1,
                           **config.model.kwargs.to_dict())
  fn = rcnn.feature_fn(model, variables, config)
  shapes = jax.eval_shape(lambda x: model.apply(variables, x, train=False)[1],
                          jax.ShapeDtypeStruct((1, r.warp_size, r.warp_size, 3), np.float32))
  fc7_size = int(np.prod(shapes["fc7"].shape[1:]))
  files = rcnn.StageFiles(workdir, rcnn.config_hash(config, int(state.step)))

  # Stage 3: features, SVMs, regressors. The regions are built only when a stage runs.
  sets = None
  def training_sets():
    nonlocal sets
    if sets is None:
      *_, sets = rcnn.open_regions(config, data.train_split, r.svm_images)
    return sets
  def features():
    s = training_sets()
    return rcnn.extract_features(fn, s, int(s.image.max()) + 1, fc7_size, r.chunk)
  feats = _stage(files, "features", features)
  svm_arrays = _stage(files, "svms",
                      lambda: train_svms(config, feats, training_sets(), num_classes))
  reg_arrays = _stage(files, "regressors",
                      lambda: train_regressors(config, feats, training_sets(), num_classes))

  # Stage 4: detection of the test images.
  test_examples = test_split.examples(test_indices)
  def test():
    detector = rcnn.Detector(
        fn, svm.LinearSvms(svm_arrays["weights"], svm_arrays["bias"],
                           float(svm_arrays["feature_scale"]), []),
        bbox_regression.BoxRegressors(reg_arrays["weights"], reg_arrays["bias"],
                                      float(reg_arrays["feature_scale"]), reg_arrays["num_pairs"]),
        fc7_size, chunk=r.chunk, nms_iou=r.nms_iou, score_threshold=r.score_threshold)
    return detect_images(detector, test_examples, test_boxes)
  found = _stage(files, "test", test)
  n = len(test_indices)
  with_bb, without = _per_image(found, "bb_", n), _per_image(found, "plain_", n)

  coco_gt = detection.to_coco(test_split, test_indices)
  coco = detection_metrics.coco_eval(with_bb, coco_gt)
  metrics = {
      "test/mAP": detection_metrics.voc_eval(with_bb, test_examples, num_classes)["mAP"],
      "test/mAP_no_bbox_regression":
          detection_metrics.voc_eval(without, test_examples, num_classes)["mAP"],
      "test/coco_AP": coco["AP"], "test/coco_AP50": coco["AP50"], "test/coco_AP75": coco["AP75"],
      "test/coco_AP_no_bbox_regression": detection_metrics.coco_eval(without, coco_gt)["AP"],
      "test/images": n,
      "test/proposals_per_image": float(np.mean([len(b) for b in test_boxes])),
      "test/proposal_seconds_per_image": float(np.mean(proposal_seconds)),
      "test/features_seconds_per_image": float(np.mean(found["seconds"])),
      "test/seconds_per_image": float(np.mean(found["seconds"]) + np.mean(proposal_seconds)),
      "finetune/window_accuracy": result.metrics.get("test/accuracy", float("nan")),
      "finetune/train_loss": result.metrics.get("train/loss", float("nan")),
      "finetune_seconds": finetune_seconds,
      "feature_seconds": float(feats["seconds"]),
      "svm_seconds": float(svm_arrays["seconds"]),
      "regression_seconds": float(reg_arrays["seconds"]),
      "svm_training_regions": int(len(feats["rows"])),
      "svm_classes_trained": int(np.sum(svm_arrays["classes"])),
      "regression_pairs": int(np.sum(reg_arrays["num_pairs"])),
  }
  metrics["train_time_s"] = (finetune_seconds + metrics["feature_seconds"] +
                             metrics["svm_seconds"] + metrics["regression_seconds"])
  return RcnnRun(metrics, test_examples, tuple(test_split.class_names), with_bb)
