"""R-CNN end to end (issue 16): experiments/rcnn.py through the launch path on tiny scenes,
its stage files reused after a SIGKILL, and bad input stopped before any work."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from research.data import detection
from research.errors import ConfigError
from research.launch import experiment
from research.ops import boxes as box_ops
from research.train import bbox_regression, config as config_lib
from tests.conftest import ROOT
from tests.test_detection_reader import _mock_voc, _voc_record
# The tiny scenes (24 train, 8 validation, 8 test, 128 px) and their statistics.
from tests.detection_runs import SCENES_MEAN, SCENES_STD

# Seconds: a 16-pixel warp, a narrow net, 6 steps of 16 windows, 8 test scenes.
TINY = {"total_steps": 6, "checkpoint_every_steps": 3, "log_every_steps": 3,
        "batch_size": 16, "eval_batch_size": 32, "optimizer.warmup_steps": 0,
        "model.kwargs.widths": (8, 8, 8, 8, 8), "model.kwargs.fc_width": 32,
        "rcnn.warp_size": 16, "rcnn.context": 1.0, "rcnn.positives_per_batch": 4,
        "rcnn.train_images": 24, "rcnn.svm_images": 12, "rcnn.test_images": 8,
        "rcnn.finetune_eval_images": 8, "rcnn.finetune_eval_windows": 32, "rcnn.chunk": 64,
        "rcnn.svm_initial_negatives": 200, "rcnn.figure_images": 4,
        "proposals.max_proposals": 100}


def load():
  return experiment.load_module(os.path.join(ROOT, "experiments", "rcnn.py"))


def tiny_config(data_root: str, **overrides):
  config = load().get_config()
  config.data.name, config.data.data_dir = "scenes_tiny", data_root
  config.data.mean, config.data.std = SCENES_MEAN, SCENES_STD
  return config_lib.override(config, {**TINY, **overrides})


_RUN_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from research.launch import experiment
    from tests.test_rcnn import load, tiny_config
    experiment.run_experiment(load(), tiny_config({data!r}), {workdir!r}, command="test")
""")


def _run(data: str, workdir: str, env_extra=None) -> subprocess.CompletedProcess:
  env = {**os.environ, **(env_extra or {})}
  return subprocess.run([sys.executable, "-c", _RUN_SCRIPT.format(root=ROOT, data=data,
                                                                  workdir=workdir)],
                        env=env, capture_output=True, text=True, timeout=600)


def test_end_to_end_report_then_resume_after_a_kill_reuses_the_stage_files(scenes, tmp_path):
  whole = str(tmp_path / "whole")
  done = _run(scenes, whole)
  assert done.returncode == 0, done.stderr[-3000:]
  metrics = json.load(open(os.path.join(whole, "metrics.json")))
  for key in ("test/mAP", "test/mAP_no_bbox_regression", "test/coco_AP",
              "test/seconds_per_image", "test/proposal_seconds_per_image", "train_time_s"):
    assert np.isfinite(metrics[key]), key
  assert 0.0 <= metrics["test/mAP"] <= 1.0
  assert metrics["test/seconds_per_image"] > metrics["test/proposal_seconds_per_image"] > 0
  assert metrics["train_time_s"] >= metrics["finetune_seconds"] > 0
  assert os.path.exists(os.path.join(whole, "detections.png"))
  report = open(os.path.join(whole, "report.md")).read()
  assert "VOC07 mAP@0.5" in report and "58.5%" in report
  assert len(json.load(open(os.path.join(whole, "claims.json")))) == 2
  stages = {os.path.basename(p).split("-")[0]
            for p in glob.glob(os.path.join(whole, "rcnn_stages", "*.npz"))}
  assert stages == {"features", "svms", "regressors", "test"}

  # Killed right after the features were saved: the rerun reuses them, trains the rest,
  # and ends with the uninterrupted run's detections.
  killed = str(tmp_path / "killed")
  first = _run(scenes, killed, {"RESEARCH_TEST_SIGKILL_AFTER_STAGE": "features"})
  assert first.returncode == -9, first.stderr[-3000:]
  (features,) = glob.glob(os.path.join(killed, "rcnn_stages", "features-*.npz"))
  assert not glob.glob(os.path.join(killed, "rcnn_stages", "svms-*.npz"))
  stamp = os.stat(features).st_mtime_ns
  second = _run(scenes, killed)
  assert second.returncode == 0, second.stderr[-3000:]
  assert os.stat(features).st_mtime_ns == stamp
  resumed = json.load(open(os.path.join(killed, "metrics.json")))
  for key in ("test/mAP", "test/mAP_no_bbox_regression", "test/coco_AP"):
    assert resumed[key] == pytest.approx(metrics[key], abs=1e-9), key
  # A changed config reads none of the old files (its hash differs).
  from research.train import rcnn
  a, b = tiny_config(scenes), tiny_config(scenes, **{"rcnn.svm_c": 0.01})
  assert rcnn.config_hash(a, 6) != rcnn.config_hash(b, 6)
  assert rcnn.config_hash(a, 6) == rcnn.config_hash(tiny_config(scenes, log_every_steps=1), 6)


def test_windows_are_sampled_32_96_and_warped_like_the_test_regions(scenes):
  from research.train import rcnn
  config = tiny_config(scenes)
  train, evals = rcnn.finetune_inputs(config)
  assert train.num_classes == 21 and train.class_names[0] == "background"
  rows = train.step_rows(128, seed=0, step=5)
  labels = train.sets.finetune_labels[train.rows[rows]]
  assert (labels[:32] > 0).all() and (labels[32:] == 0).all()
  np.testing.assert_array_equal(rows, train.step_rows(128, seed=0, step=5))
  assert not np.array_equal(rows, train.step_rows(128, seed=0, step=6))
  batch = next(train.train_batches(16, seed=0, start_step=2))
  assert batch["image"].shape == (16, 16, 16, 3) and batch["image"].dtype == np.uint8
  assert (batch["label"][:4] > 0).all() and (batch["label"][4:] == 0).all()
  # The training warp is the test warp (research/models/rcnn.warp_pixels).
  from research.models import rcnn as rcnn_model
  r = train.step_rows(16, 0, 2)[0]
  s = train.sets
  direct = rcnn_model.warp_pixels(s.images[s.image[r]], s.boxes[r][None], 16, 1.0, s.fill)
  np.testing.assert_array_equal(batch["image"][0], np.asarray(direct)[0])
  (held_out,) = evals.values()
  assert len(held_out) == 32
  eval_batch = next(held_out.eval_batches(20))
  assert eval_batch["mask"].tolist() == [1.0] * 20


def test_ridge_regressors_recover_a_linear_map_and_leave_absent_classes_alone():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 6))
  true = rng.normal(size=(6, 4))
  t = x @ true + 0.5
  reg = bbox_regression.train_regressors(x, t, np.zeros(400, int), 2, lam=0.0,
                                         feature_norm=None)
  np.testing.assert_allclose(reg.predict(x)[:, 0], t, atol=1e-6)
  np.testing.assert_allclose(reg.predict(x)[:, 1], 0.0)  # No pairs: the box stays.
  assert reg.num_pairs.tolist() == [400, 0]
  shrunk = bbox_regression.train_regressors(x, t, np.zeros(400, int), 2, lam=1e6)
  assert np.abs(shrunk.weights[0]).max() < 0.1 * np.abs(reg.weights[0]).max()
  with pytest.raises(ValueError, match="classes must be in"):
    bbox_regression.train_regressors(x, t, np.full(400, 2), 2)


@pytest.mark.parametrize("record, error, match", [
    (_voc_record([[0.5, 0.1, 0.5, 0.3]], [3], [False]), box_ops.InvalidBoxError,
     r"box 0 .* has zero or negative height"),
    (_voc_record([[0.1, 0.1, 0.2, 0.3]], [25], [False]), detection.AnnotationError,
     r"label 25, outside the class list of 20 classes"),
])
def test_bad_annotations_stop_before_any_work_with_one_line(tmp_path, record, error, match):
  module = load()
  config = module.get_config("voc07")
  config.data.data_dir = str(tmp_path / "data")
  os.makedirs(config.data.data_dir)
  workdir = tmp_path / "run"
  with _mock_voc([record]):
    with pytest.raises(error, match=match) as e:
      experiment.run_experiment(module, config, str(workdir), command="test")
  assert isinstance(e.value, ConfigError) and "\n" not in str(e.value)
  assert not workdir.exists() or not os.listdir(workdir)
  assert not os.path.exists(tmp_path / "data" / "proposals")


@pytest.mark.parametrize("overrides, match", [
    ({"rcnn.positives_per_batch": 128}, r"^config\.rcnn\.positives_per_batch=128"),
    ({"rcnn.context": 8.0}, r"^config\.rcnn\.context=8\.0"),
    ({"proposals.mode": "slow"}, r"^config\.proposals\.mode='slow'"),
])
def test_bad_configs_stop_before_any_work(tmp_path, overrides, match):
  config = tiny_config(str(tmp_path / "no_data"), **overrides)
  with pytest.raises(ConfigError, match=match):
    experiment.run_experiment(load(), config, str(tmp_path / "run"), command="test")
  assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


def test_both_configs_validate_and_claims_read_their_metrics():
  module = load()
  for arg in ("", "voc07"):
    module.validate_config(module.get_config(arg))
  voc = module.get_config("voc07")
  assert (voc.rcnn.warp_size, voc.rcnn.context, voc.proposals.max_proposals) == (227, 16.0, 2000)
  assert (voc.batch_size, voc.rcnn.positives_per_batch, voc.optimizer.learning_rate) == (
      128, 32, 1e-3)
  metrics = {"test/mAP": 0.4, "test/mAP_no_bbox_regression": 0.35}
  verdicts = [c.check(metrics[c.measure] if isinstance(c.measure, str) else c.measure(metrics))
              for c in module.claims(module.get_config())]
  assert verdicts == [True, True]
  worse = {"test/mAP": 0.3, "test/mAP_no_bbox_regression": 0.35}
  assert not module.claims(module.get_config())[1].measure(worse) > 0
  with pytest.raises(ValueError, match="Unknown argument"):
    module.get_config("coco")
