"""Faster R-CNN checked and measured like the paper (issue 16): the default detector
overfits a handful of scenes (a train/eval inconsistency would stop it), its timing
split (Table 5), the recall-vs-proposals curves (Fig. 2) and the comparison claims
with Fast R-CNN's run."""

import json
import os

import jax
import numpy as np
import pytest

from research import errors
from research.data import proposals
from research.eval import detection_plots, faster_rcnn_measures, proposal_recall
from research.report import evaluate_claims
from research.train.objectives import fast_rcnn as fast_objective
from research.train.objectives import faster_rcnn as objective_lib
from tests import detection_runs
from tests.test_detection_experiment import load, tiny_config

# --- Recall against the number of proposals ---------------------------------------------


def test_recall_vs_proposals_on_a_hand_computed_case():
  gt = [np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
        np.zeros((0, 4), np.float32),
        np.array([[0, 0, 8, 8]], np.float32)]
  proposals = [
      # Rank 1 misses both; rank 2 hits box 0 at IoU 1; rank 3 hits box 1 at IoU 0.64 (16x16 in 20x20... 256/400).
      np.array([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 36, 36]], np.float32),
      np.array([[0, 0, 5, 5]], np.float32),     # An image without objects: counts for nothing.
      np.zeros((0, 4), np.float32)]             # No proposal: its box is never recalled.
  recall = proposal_recall.recall_vs_proposals(proposals, gt, counts=(1, 2, 3, 100),
                                               iou_thresholds=(0.5, 0.7))
  np.testing.assert_allclose(recall[0.5], [0, 1 / 3, 2 / 3, 2 / 3])
  np.testing.assert_allclose(recall[0.7], [0, 1 / 3, 1 / 3, 1 / 3])  # IoU 0.64 < 0.7.


def test_recall_vs_proposals_refuses_bad_input_and_is_nan_without_boxes():
  with pytest.raises(ValueError, match="one entry per image"):
    proposal_recall.recall_vs_proposals([np.zeros((1, 4))], [])
  with pytest.raises(ValueError, match="counts"):
    proposal_recall.recall_vs_proposals([np.zeros((1, 4))], [np.zeros((1, 4))], counts=(0,))
  with pytest.raises(ValueError, match="IoU thresholds"):
    proposal_recall.recall_vs_proposals([np.zeros((1, 4))], [np.zeros((1, 4))],
                                        iou_thresholds=(1.5,))
  out = proposal_recall.recall_vs_proposals([np.zeros((1, 4))], [np.zeros((0, 4))], counts=(1,))
  assert np.isnan(out[0.5]).all()


def test_recall_figure_draws_one_panel_per_threshold(tmp_path):
  counts = (10, 100, 1000)
  path = detection_plots.recall_figure(
      counts, {"RPN": {0.5: [0.5, 0.9, 0.95], 0.7: [0.2, 0.6, 0.7]},
               "selective search": {0.5: [0.2, 0.6, 0.9], 0.7: [0.1, 0.3, 0.6]}},
      str(tmp_path / "recall.png"), title="t")
  assert os.path.getsize(path) > 10_000
  with pytest.raises(ValueError, match="at least one curve"):
    detection_plots.recall_figure(counts, {}, str(tmp_path / "none.png"))


# --- The comparison claims with Fast R-CNN ------------------------------------------------


def test_comparison_claims_read_fast_rcnn_metrics_or_say_not_measured(tmp_path):
  module = load()
  config = module.get_config()
  ours = {"test/mAP": 0.40, "test/proposal_seconds_per_image": 0.002, "test/rpn_recall": 0.9}
  workdir = tmp_path / "runs" / "faster_rcnn"
  workdir.mkdir(parents=True)
  absent = {**ours, **module.compared_metrics(config, str(workdir))}
  results = {r.claim.source: r for r in evaluate_claims(module.claims(config), absent)}
  versus = [r for r in results.values() if "Tables 2 and 3" in r.claim.source
            or "Table 5" in r.claim.source]
  assert len(versus) == 2
  for r in versus:
    assert r.holds is None and r.note == (f"not measured: run experiments/fast_rcnn.py into "
                                          f"{tmp_path / 'runs' / 'fast_rcnn'} first")
  # The sibling folder runs/fast_rcnn, as the Fast R-CNN experiment writes it.
  (tmp_path / "runs" / "fast_rcnn").mkdir()
  with open(tmp_path / "runs" / "fast_rcnn" / "metrics.json", "w") as f:
    json.dump({"test/mAP": 0.42, "test/proposal_seconds_per_image": 0.05}, f)
  found = {**ours, **module.compared_metrics(config, str(workdir))}
  by_source = {r.claim.source: r for r in evaluate_claims(module.claims(config), found)}
  m = by_source["Ren et al. 2015, Tables 2 and 3"]
  t = by_source["Ren et al. 2015, Table 5 and §1"]
  assert m.ours == pytest.approx(-0.02) and m.holds is False  # 2 points below: does not hold.
  assert t.ours == pytest.approx(0.04) and t.holds is True
  # config.compare.fast_rcnn names another folder.
  config.compare.fast_rcnn = str(tmp_path / "elsewhere")
  assert module.compared_metrics(config, str(workdir))["compare/fast_rcnn"] == config.compare.fast_rcnn
  assert "fast_rcnn/test/mAP" not in module.compared_metrics(config, str(workdir))


# --- The default detector on a handful of scenes --------------------------------------------

# The default model and loss; few proposals, so the NMS loops compile and run fast.
OVERFIT = {"objective.num_rois": 64, "model.kwargs.pre_nms_train": 600,
           "model.kwargs.post_nms_train": 200, "model.kwargs.pre_nms_test": 600,
           "model.kwargs.post_nms_test": 100, "batch_size": 4, "optimizer.warmup_steps": 0}
# 150 steps of 8 images (32 RoIs each) reached only mAP 0.56 on the 8 scenes; 300 of 4
# with 64 RoIs (the default's) learn them (0.84 on 8 detection_scenes training scenes).
OVERFIT_STEPS = 300


def _train(scenes, steps: int):
  """(objective, state, the 8 scenes, last step's metrics) after `steps` steps on 8 scenes."""
  config = tiny_config(scenes, total_steps=steps, **OVERFIT)
  config.objective.flip = False
  train, _ = objective_lib.Objective.open_inputs(config)
  train = train.take(8)
  objective = objective_lib.Objective(config, train, steps, "/nonexistent")
  state, metrics = objective.init_state(), {}
  if steps:
    step = jax.jit(objective.train_step)
    batches = train.train_batches(config.batch_size, config.seed, prefetch=0)
    for _ in range(steps):
      state, metrics = step(state, next(batches))
  return objective, state, train, jax.device_get(metrics)


@pytest.fixture(scope="module")
def overfit(scenes):
  return _train(scenes, OVERFIT_STEPS)


@pytest.fixture(scope="module")
def untrained(scenes):
  """What timing and proposal ranking need: a detector of any quality (untrained: no
  training step to compile)."""
  return _train(scenes, 0)


@pytest.mark.slow
def test_the_default_detector_overfits_a_handful_of_scenes(overfit):
  """A correct detector learns 8 scenes by heart: every part between the data and
  the mAP (image scaling, box encoding and its stds, the background class offset,
  the score threshold, NMS, the evaluation's box units) has to agree for a high mAP
  on the scenes it trained on."""
  objective, state, train, last = overfit
  sums = None
  eval_step = jax.jit(objective.eval_step)
  for batch in train.eval_batches(8):
    sums = objective.eval_accumulate(sums, eval_step(state, batch))
  metrics = objective.eval_metrics(sums)
  print("overfit:", {k: float(v) for k, v in last.items()}, metrics)
  assert last["accuracy"] >= 0.85, last
  assert metrics["mAP"] >= 0.6, metrics
  assert metrics["rpn_recall"] >= 0.7, metrics


def test_timing_splits_proposals_from_the_whole_detector(untrained):
  objective, state, train, _ = untrained
  out = faster_rcnn_measures.faster_rcnn_seconds(objective, state, train, num_images=3)
  assert out["test/timed_images"] == 3
  assert 0 < out["test/proposal_seconds_per_image"] < out["test/seconds_per_image"] < 10
  with pytest.raises(ValueError, match="at least one image"):
    faster_rcnn_measures.faster_rcnn_seconds(objective, state, train, num_images=0)


def test_ranked_proposals_are_the_rpn_layer_and_selective_search_in_original_pixels(
    untrained, tmp_path):
  objective, state, train, _ = untrained
  config = objective.config.copy_and_resolve_references()
  config.proposals.cache_dir = str(tmp_path / "proposals")
  found = faster_rcnn_measures.ranked_proposals(
      config, objective, state, train, "train", num_images=3, max_proposals=200)
  assert [len(found[k]) for k in ("rpn", "selective_search", "ground_truth")] == [3, 3, 3]
  # The RPN's boxes at the test-time setting are the first post_nms_test of the longer list.
  batch = next(train.eval_batches(3))
  out, _ = objective._apply(state.params, objective.images(batch), train=False,
                            image_hw=batch["image_hw"])
  for i in range(3):
    mine = np.asarray(out["proposals"][i])[np.asarray(out["proposal_mask"][i])]
    assert 50 < len(found["rpn"][i]) <= 200
    np.testing.assert_allclose(found["rpn"][i][:len(mine)], mine, atol=1e-4)
    np.testing.assert_allclose(found["ground_truth"][i], train.examples(3)[i].boxes)
    ss = found["selective_search"][i]
    assert len(ss) > 10 and (ss >= 0).all() and (ss <= 128).all()
  assert all(s > 0 for s in found["selective_search_seconds"])
  # Cached: the second read is the same boxes.
  again = faster_rcnn_measures.ranked_proposals(
      config, objective, state, train, "train", num_images=1, max_proposals=200)
  np.testing.assert_array_equal(again["selective_search"][0], found["selective_search"][0])


def test_ranked_proposals_read_selective_search_under_the_configs_settings(untrained, tmp_path):
  """The voc07 bug: the default settings (native size, 2,000 boxes) were used whatever
  the config said, so a second cache was computed beside Fast R-CNN's."""
  objective, state, train, _ = untrained
  config = objective.config.copy_and_resolve_references()
  config.proposals.cache_dir = str(tmp_path / "proposals")
  config.proposals.resize_width, config.proposals.max_proposals = 64, 12
  found = faster_rcnn_measures.ranked_proposals(
      config, objective, state, train, "train", num_images=2, max_proposals=20)
  settings = proposals.settings_from_config(config.proposals, "proposals")
  cache = proposals.ProposalCache(config.proposals.cache_dir, settings)
  for k, (i, example) in enumerate(zip(train.indices[:2], train.examples(2))):
    assert os.path.exists(cache.path("scenes_tiny", "train", int(i)))
    np.testing.assert_array_equal(found["selective_search"][k],
                                  proposals.selective_search(example.image, settings).boxes)
    assert len(found["selective_search"][k]) <= 12
  assert os.listdir(tmp_path / "proposals" / "scenes_tiny" / "train") == [settings.tag()]
  config.proposals.mode = "best"
  with pytest.raises(errors.ConfigError, match=r"proposals\.mode"):
    faster_rcnn_measures.ranked_proposals(config, objective, state, train, "train", 1, 20)


def test_the_recall_curves_read_fast_rcnns_selective_search_cache():
  # Same settings, same cache folder: Fig. 2 reads what Fast R-CNN's run computed.
  fast = detection_runs.load("fast_rcnn")
  for arg in ("", "voc07"):
    ours, theirs = load().get_config(arg), fast.get_config(arg)
    assert (proposals.settings_from_config(ours.proposals, "proposals")
            == fast_objective.proposal_settings(theirs)), arg
    assert ours.proposals.cache_dir == theirs.objective.proposal_cache == ""
