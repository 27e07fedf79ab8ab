"""Faster R-CNN in the one training loop (issue 16): the detection input split, the
faster_rcnn objective end to end through experiments/faster_rcnn.py, exact resume
after SIGKILL, and bad anchor configs stopped before any work."""

import json
import os

import jax
import numpy as np
import pytest

from research.data import detection, detection_inputs, pipeline
from research.train import caption_regions, objectives
from research.train.objectives import faster_rcnn as objective_lib
from tests import detection_runs
from tests.test_detection_reader import _mock_voc, _voc_record

# A seconds-long budget: few proposals (the NMS loops dominate compilation), 4 steps.
TINY = {"total_steps": 4, "checkpoint_every_steps": 2, "log_every_steps": 1,
        "eval_batch_size": 8, "objective.num_rois": 16, "optimizer.warmup_steps": 0,
        "model.kwargs.pre_nms_train": 300, "model.kwargs.post_nms_train": 48,
        "model.kwargs.pre_nms_test": 300, "model.kwargs.post_nms_test": 32,
        "timed_images": 2, "recall_images": 4}


def load():
  return detection_runs.load("faster_rcnn")


def tiny_config(data_root: str, **overrides):
  return detection_runs.scenes_config("faster_rcnn", data_root, TINY, **overrides)


# --- The input split -----------------------------------------------------------------


def test_voc_images_are_rescaled_padded_and_flipped_with_their_boxes(tmp_path):
  # 40 x 60 images: shorter side to 80 would make the longer 120 > max_size 100, so
  # the factor is 100 / 60 (py-faster-rcnn's cap), 67 x 100, padded to 100 x 100.
  records = [_voc_record([[0.1, 0.5, 0.6, 1.0], [0.0, 0.0, 1.0, 0.25]], [14, 0], [False, True]),
             _voc_record([], [], [])]
  for r in records:
    r["image"] = np.full_like(r["image"], 200)
  with _mock_voc(records):
    split = detection.open_detection("voc/2007", "test", str(tmp_path))
  inputs = detection_inputs.DetectionInputSplit(split, scale=80, max_size=100, max_objects=3)
  batch = next(inputs.eval_batches(3))
  assert batch["image"].shape == (3, 100, 100, 3) and batch["image"].dtype == np.uint8
  np.testing.assert_allclose(batch["image_hw"], [[67, 100]] * 3)
  np.testing.assert_allclose(batch["scale"], [100 / 60] * 3, rtol=1e-6)
  np.testing.assert_allclose(batch["boxes"][0, :2],
                             [[6.7, 50, 40.2, 100], [0, 0, 67, 25]], rtol=1e-5)
  assert batch["gt_mask"].tolist() == [[True, True, False], [False] * 3, [False] * 3]
  assert batch["difficult"][0].tolist() == [False, True, False]
  assert batch["mask"].tolist() == [1, 1, 0]  # Padding: a copy of the last image.
  assert not batch["image"][:, 67:].any() and (batch["image"][:, :67] == 200).all()
  # Training: difficult objects leave the loss; flips are a function of (seed, step, row).
  for step in range(4):
    a, b = (next(inputs.train_batches(2, seed=3, start_step=step, prefetch=0))
            for _ in range(2))
    jax.tree.map(np.testing.assert_array_equal, a, b)
  flips = []
  for step in range(8):
    t = next(inputs.train_batches(2, seed=3, start_step=step, prefetch=0))
    row = int(np.flatnonzero(t["gt_mask"].any(axis=1))[0])  # The image with objects.
    assert t["gt_mask"][row].tolist() == [True, False, False]
    box = t["boxes"][row, 0]
    flips.append(bool(np.isclose(box[1], 0.0)))  # [6.7, 50, 40.2, 100] mirrored: xmin 0.
    expect = [6.7, 0, 40.2, 50] if flips[-1] else [6.7, 50, 40.2, 100]
    np.testing.assert_allclose(box, expect, rtol=1e-5, atol=1e-4)
  assert 0 < sum(flips) < len(flips), flips


def test_the_objective_is_registered_and_both_configs_validate():
  module = load()
  assert "faster_rcnn" in objectives.names()
  for arg in ("", "voc07"):
    config = module.get_config(arg)
    module.validate_config(config)
  voc = module.get_config("voc07")
  assert (voc.objective.scale, voc.objective.max_size, voc.objective.num_rois) == (600, 1000, 128)
  assert voc.model.kwargs.anchor_sizes == (128.0, 256.0, 512.0)
  with pytest.raises(ValueError, match="Unknown argument"):
    module.get_config("coco")


@pytest.mark.parametrize("overrides, match", [
    ({"model.kwargs.anchor_sizes": (512.0, 1024.0)},
     r"^config\.model\.kwargs\.anchor_sizes=\(512\.0, 1024\.0\): no anchor fits inside the "
     r"128x128 image"),
    ({"model.kwargs.anchor_sizes": (16.0, 64.0)},
     r"^config\.model\.kwargs\.anchor_sizes=\(16\.0, 64\.0\): an object of \d+ pixels .* add an "
     r"intermediate size"),
    ({"objective.background_iou": (0.5, 0.1)}, r"^config\.objective\.background_iou="),
    ({"model.name": "vgg16"}, r"^config\.model\.name='vgg16': the faster_rcnn objective trains"),
])
def test_bad_configs_stop_before_any_work_with_one_line(tmp_path, overrides, match):
  config = tiny_config(str(tmp_path / "no_data"), **overrides)
  detection_runs.assert_stops_before_work(load(), config, tmp_path / "run", match)


def test_claims_read_the_right_metrics():
  module = load()
  # The claims on this run's own metrics (the comparisons with Fast R-CNN: test_faster_rcnn.py).
  results = {c.measure: c.check(v) for c in module.claims(module.get_config())
             if isinstance(c.measure, str)
             for v in [{"test/mAP": 0.45, "test/rpn_recall": 0.7}[c.measure]]}
  assert results == {"test/mAP": True, "test/rpn_recall": False}
  voc = module.claims(module.get_config("voc07"))[0]
  assert voc.measure == "test/mAP" and voc.check(0.70) and not voc.check(0.60)


# --- End to end: train, evaluate, report, resume after SIGKILL -------------------------

_MODULE = "tests.test_detection_experiment"  # Its load() and tiny_config(), for the runs.


def test_end_to_end_report_and_exact_resume_after_sigkill(scenes, tmp_path):
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  detection_runs.kill_then_resume(_MODULE, killed, scenes)
  rows = [json.loads(l) for l in open(os.path.join(killed, "metrics.jsonl"))]
  metrics = {k: v for r in rows for k, v in r.items()}
  assert metrics["step"] == 4
  for key in ("test/mAP", "test/coco_AP", "test/coco_AP50", "test/rpn_recall"):
    assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
  assert np.isfinite(metrics["train/rpn_loss"]) and np.isfinite(metrics["train/head_loss"])
  report = open(os.path.join(killed, "report.md")).read()
  assert "VOC07 mAP@0.5" in report and "69.9% mAP" in report
  assert os.path.getsize(os.path.join(killed, load().FIGURE)) > 10_000
  assert os.path.getsize(os.path.join(killed, load().RECALL_FIGURE)) > 10_000
  final = json.load(open(os.path.join(killed, "metrics.json")))
  assert final["train_time_s"] > 0  # Both invocations' steps (trainer.py sums over resumes).
  assert 0 < final["test/proposal_seconds_per_image"] < final["test/seconds_per_image"]
  assert final["test/recall_images"] == 4 and "Recall of the first 4 test images" in report

  detection_runs.assert_same_as_straight(_MODULE, killed, straight, scenes)

  # The captioning experiments load such a run as their region detector (caption_regions).
  detect, _ = caption_regions._detector(killed)  # pylint: disable=protected-access
  found = detect(np.zeros((2, 128, 128, 3), np.uint8), np.array([[128, 128], [64, 96]], np.float32))
  boxes = np.asarray(found["boxes"])
  assert boxes.shape[0] == 2 and boxes.shape[-1] == 4 and np.all(np.isfinite(boxes))


def test_the_interface_the_trainer_reads(scenes):
  config = tiny_config(scenes)
  train, evals = objective_lib.Objective.open_inputs(config)
  assert isinstance(train, pipeline.InputSplit) and len(train) == 24
  assert train.image_shape == (128, 128, 3) and train.num_classes == 20
  assert set(evals) == {"test"} and len(evals["test"]) == 8
  spec = evals["test"].eval_batch_spec(8)
  batch = next(evals["test"].eval_batches(8))
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      k: (shape, np.dtype(dtype)) for k, (shape, dtype) in spec.items()}
