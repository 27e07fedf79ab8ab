"""Fast R-CNN (issue 16): proposals in the batches, truncated SVD at full rank, the comparison
claims, and experiments/fast_rcnn.py end to end on tiny scenes with resume after SIGKILL."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import models
from research.data import detection_inputs, proposals
from research.models import detection as detection_models
from research.models import detection_postprocess as post
from research.report import evaluate_claims
from research.train import checkpoint
from tests import detection_runs

# Seconds, not minutes: 4 steps, 16 RoIs per image, 64 proposal slots, 2 timed images.
TINY = {"total_steps": 4, "checkpoint_every_steps": 2, "log_every_steps": 1,
        "eval_batch_size": 8, "objective.num_rois": 16, "objective.num_proposals": 64,
        "objective.train_examples": 0, "optimizer.warmup_steps": 0, "timed_images": 2}


def load():
  return detection_runs.load("fast_rcnn")


def tiny_config(data_root: str, **overrides):
  return detection_runs.scenes_config("fast_rcnn", data_root, TINY, **overrides)


class _Flip:
  """An rng whose every draw flips."""

  def random(self):
    return 0.0


def test_proposals_ride_in_the_batch_rescaled_and_flipped_with_the_image(scenes, tmp_path):
  config = tiny_config(scenes)
  source = proposals.SplitProposals(proposals.ProposalCache(str(tmp_path)), "scenes_tiny",
                                    "test", 64)
  opened = detection_inputs.open_detection_inputs(config.data, "test", scale=64, max_size=64,
                                                  max_objects=0, proposals=source)
  plain, flipped = opened._read([1], None), opened._read([1], [_Flip()], training=True)
  stored = source.get(1, opened.split[1].image)
  assert stored.cached and stored.seconds > 0  # Read back from the cache _read filled.
  k = min(len(stored.boxes), 64)
  assert plain["proposal_mask"][0].sum() == k and not plain["proposals"][0, k:].any()
  np.testing.assert_allclose(plain["proposals"][0, :k], stored.boxes[:k] / 2, rtol=1e-6)
  np.testing.assert_allclose(plain["proposal_seconds"], [stored.seconds], rtol=1e-6)
  w = plain["image_hw"][0, 1]
  mirrored = plain["proposals"][0, :k][:, [0, 3, 2, 1]] * [1, -1, 1, -1] + [0, w, 0, w]
  np.testing.assert_allclose(flipped["proposals"][0, :k], mirrored, rtol=1e-6, atol=1e-5)
  assert "proposal_seconds" not in flipped
  spec = opened.eval_batch_spec(2)
  batch = next(opened.eval_batches(2))
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      k: (shape, np.dtype(dtype)) for k, (shape, dtype) in spec.items()}


def test_truncated_svd_at_full_rank_detects_exactly_what_the_full_head_does():
  model = models.get_model("fast_rcnn_small", num_classes=3)
  images = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
  rois = jnp.asarray([[[0, 0, 40, 40], [8, 16, 60, 50], [20, 4, 64, 30], [0, 0, 64, 64]]],
                     jnp.float32)
  params = model.init(jax.random.key(1), images, rois)["params"]
  params = jax.tree.map(lambda p: p * 20, params)  # Confident scores: detections above 0.05.
  full_rank = (256, 256)  # fc6: 2048 -> 256, fc7: 256 -> 256.
  svd_model = models.get_model("fast_rcnn_small", num_classes=3, svd_ranks=full_rank)
  svd_params = detection_models.truncate_head(params, full_rank)
  a, _ = model.apply({"params": params}, images, rois)
  b, _ = svd_model.apply({"params": svd_params}, images, rois)
  np.testing.assert_allclose(a["class_logits"], b["class_logits"], rtol=2e-4, atol=2e-4)
  hw = jnp.asarray([[64.0, 64.0]])
  da, db = (post.to_host(post.detect_batch(o["class_logits"], o["box_deltas"], rois, hw))[0]
            for o in (a, b))
  assert len(da["scores"]) > 0
  np.testing.assert_array_equal(da["labels"], db["labels"])
  np.testing.assert_allclose(da["boxes"], db["boxes"], atol=1e-3)
  np.testing.assert_allclose(da["scores"], db["scores"], atol=1e-4)
  # Lower rank: fewer weights, a different function.
  low = detection_models.truncate_head(params, (8, 4))
  assert low["head"]["fc6"]["first"]["kernel"].shape == (2048, 8)


def test_comparison_claims_read_the_sibling_metrics_json_and_say_not_measured_without(tmp_path):
  module = load()
  config = module.get_config()
  workdir = tmp_path / "fast_rcnn"
  ours = {"test/mAP": 0.40, "train_time_s": 100.0, "test/svd/network_seconds_per_image": 0.01,
          "test/svd/time_ratio": 0.6, "test/svd/mAP": 0.395}
  missing = {**ours, **module.compared_metrics(config, str(workdir))}
  assert missing["compare/rcnn"] == str(tmp_path / "rcnn")
  verdicts = [r.verdict for r in evaluate_claims(module.claims(config), missing)
              if r.claim.source.endswith("Table 4")]
  assert verdicts == [f"not measured: run experiments/rcnn.py into {tmp_path / 'rcnn'} first"] * 3
  (tmp_path / "rcnn").mkdir()
  (tmp_path / "rcnn" / "metrics.json").write_text(json.dumps(
      {"test/mAP": 0.38, "train_time_s": 900.0, "test/seconds_per_image": 1.1,
       "test/proposal_seconds_per_image": 0.1, "note": "text is skipped"}))
  found = {**ours, **module.compared_metrics(config, str(workdir))}
  assert found["rcnn/test/mAP"] == 0.38 and "rcnn/note" not in found
  train, test, acc = [r for r in evaluate_claims(module.claims(config), found)
                      if r.claim.source.endswith("Table 4")]
  assert train.ours == pytest.approx(9.0) and train.holds
  assert test.ours == pytest.approx(100.0) and test.holds  # (1.1 - 0.1) / 0.01.
  assert acc.ours == pytest.approx(0.02) and acc.holds
  # An explicit config.compare.rcnn wins over the sibling folder.
  config.compare.rcnn = str(tmp_path / "elsewhere")
  assert module.compared_metrics(config, str(workdir))["compare/rcnn"] == config.compare.rcnn
  assert "rcnn/test/mAP" not in module.compared_metrics(config, str(workdir))


@pytest.mark.parametrize("overrides, match", [
    ({"svd_ranks": (4096, 16)}, r"^config\.svd_ranks=\(4096, 16\): needs one rank per fc"),
    ({"objective.num_proposals": 5000}, r"^config\.objective\.num_proposals=5000: exceeds"),
    ({"objective.proposals.mode": "slow"}, r"^config\.objective\.proposals\.mode='slow'"),
    ({"model.name": "faster_rcnn_small"},
     r"^config\.model\.name='faster_rcnn_small': the fast_rcnn objective trains a FastRCNN"),
])
def test_bad_configs_stop_before_any_work_with_one_line(tmp_path, overrides, match):
  config = tiny_config(str(tmp_path / "no_data"), **overrides)
  detection_runs.assert_stops_before_work(load(), config, tmp_path / "run", match)


def test_both_configs_validate():
  module = load()
  for arg in ("", "voc07"):
    module.validate_config(module.get_config(arg))
  voc = module.get_config("voc07")
  assert (voc.batch_size, voc.objective.num_rois, voc.objective.num_proposals) == (2, 64, 2000)
  assert voc.svd_ranks == (1024, 256) and voc.objective.background_iou == (0.1, 0.5)


# --- End to end: train, evaluate, time, report, resume after SIGKILL ---------------------

_MODULE = "tests.test_fast_rcnn"  # Its load() and tiny_config(), for the runs.


def test_end_to_end_report_and_exact_resume_after_sigkill(scenes, tmp_path):
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  result = detection_runs.run(_MODULE, killed, scenes, kill_at=3)
  assert result.returncode == -9, result.stderr[-3000:]
  assert checkpoint.load_arrays(killed)[0] == 2
  stored = os.path.join(scenes, "proposals", "scenes_tiny")
  entries = {os.path.join(d, f): os.path.getmtime(os.path.join(d, f))
             for d, _, files in os.walk(stored) for f in files}
  assert len(entries) == 24 + 8  # Every train and test scene, computed before training.

  result = detection_runs.run(_MODULE, killed, scenes)  # Resumes, times, reports.
  assert result.returncode == 0, result.stderr[-3000:]
  assert {p: os.path.getmtime(p) for p in entries} == entries  # The cache was reused.
  metrics = json.load(open(os.path.join(killed, "metrics.json")))
  assert metrics["steps"] == 4
  for key in ("test/mAP", "test/coco_AP", "test/proposal_recall", "test/svd/mAP"):
    assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
  assert metrics["test/proposal_recall"] > 0.3  # Selective search finds the objects.
  assert 0 < metrics["test/network_seconds_per_image"] < metrics["test/seconds_per_image"]
  assert metrics["test/seconds_per_image"] == pytest.approx(
      metrics["test/network_seconds_per_image"] + metrics["test/proposal_seconds_per_image"])
  assert metrics["timed_images"] == 2
  # train_time_s goes on from the killed invocation's, as logged at its checkpoint (step 2).
  logged = [json.loads(l) for l in open(os.path.join(killed, "metrics.jsonl"))]
  at_step_2 = [r["train_time_s"] for r in logged if r["step"] == 2 and "train_time_s" in r]
  assert len(at_step_2) == 1 and 0 < at_step_2[0] < metrics["train_time_s"]
  report = open(os.path.join(killed, "report.md")).read()
  assert "Fast R-CNN + truncated SVD (64, 16)" in report and "66.9%" in report
  assert f"not measured: run experiments/rcnn.py into {tmp_path / 'rcnn'} first" in report
  assert os.path.getsize(os.path.join(killed, load().FIGURE)) > 10_000

  detection_runs.assert_same_as_straight(_MODULE, killed, straight, scenes)
