"""Region-level generation (issue 17, Karpathy & Fei-Fei 2015 §4.3): §3.1.4's MRF
against exhaustive search, the region-phrase examples, region crops as a
captions split, and experiments/caption_regions.py end to end on the tiny
caption_scenes (a tiny alignment run and a tiny full-image generator first),
with its resume and the one-line error for an absent alignment run."""

import itertools
import json
import os

import jax
import numpy as np
import pytest

from research.data import captions, region_captions, vocab
from research.eval import region_phrases
from research.launch import experiment, multirun
from research.train import checkpoint, config as config_lib, objectives
from tests.conftest import ROOT, final_params
from tests.test_caption_alignment import NAME, load as load_alignment, tiny_config
from tests.test_caption_data import tiny  # noqa: F401  (the tiny caption_scenes fixture)
from tests.test_caption_generation import coco_dir  # noqa: F401  (coco_captions's layout)


def load():
  return experiment.load_module(os.path.join(ROOT, "experiments", "caption_regions.py"))


# Tiny shapes shared by the full-image generator and the region generator.
GENERATOR = {"data.name": NAME, "data.train_split": "train", "objective.image_size": 16,
             "objective.encoder_widths": (4,), "objective.encoder_features": 8,
             "objective.hidden": 8, "objective.embed": 8, "objective.min_count": 1,
             "objective.max_len": 8, "objective.decode_len": 6, "objective.beam_size": 2,
             "batch_size": 4, "eval_batch_size": 4, "optimizer.warmup_steps": 0,
             "checkpoint_every_steps": 2, "eval_every_steps": 0, "log_every_steps": 2}


# --- §3.1.4's MRF ----------------------------------------------------------------------


def _exhaustive(scores, beta):
  n, r = scores.shape
  def energy(a):
    return sum(scores[j, a[j]] for j in range(n)) + beta * sum(
        a[j] == a[j + 1] for j in range(n - 1))
  return max(energy(a) for a in itertools.product(range(r), repeat=n)), energy


def test_the_mrf_alignment_is_the_exhaustive_optimum_and_argmax_at_beta_0():
  rng = np.random.default_rng(0)
  for trial in range(30):
    scores = rng.normal(size=(5, 3))
    if trial % 3 == 0:
      scores[:, 2] = -np.inf  # A padded region is never chosen.
    for beta in (0.0, 0.3, 1.0, 5.0):
      a = region_phrases.mrf_alignment(scores, beta)
      best, energy = _exhaustive(scores, beta)
      assert energy(a) == pytest.approx(best), (trial, beta, a)
      assert np.all(a != 2) if trial % 3 == 0 else True
    np.testing.assert_array_equal(region_phrases.mrf_alignment(scores, 0.0),
                                  np.argmax(scores, axis=1))
  # By hand: beta 1 turns the middle word (its best region 1 by 0.5) to region 0.
  scores = np.array([[2.0, 0.0], [0.0, 0.5], [2.0, 0.0]])
  assert region_phrases.mrf_alignment(scores, 0.0).tolist() == [0, 1, 0]
  assert region_phrases.mrf_alignment(scores, 1.0).tolist() == [0, 0, 0]
  assert region_phrases.mrf_alignment(np.zeros((0, 2)), 1.0).shape == (0,)


def test_region_examples_group_phrases_per_image_and_region_without_the_whole_image():
  pairs = [{"index": 7, "phrases": [{"region": 0, "box": [0, 0, 9, 9], "phrase": "a photo"},
                                    {"region": 2, "box": [1, 1, 4, 4], "phrase": "red coat"}]},
           {"index": 7, "phrases": [{"region": 2, "box": [1, 1, 4, 4], "phrase": "a coat"},
                                    {"region": 3, "box": [2, 2, 5, 5], "phrase": ""}]},
           {"index": 8, "phrases": [{"region": 2, "box": [0, 1, 3, 4], "phrase": "a bag"}]}]
  assert region_phrases.region_examples(pairs) == [
      {"index": 7, "box": [1, 1, 4, 4], "phrases": ["red coat", "a coat"]},
      {"index": 8, "box": [0, 1, 3, 4], "phrases": ["a bag"]}]


# --- Region crops as a captions split ----------------------------------------------------


def test_object_regions_are_crops_with_their_phrases_and_own_ids(tiny):  # noqa: F811
  scenes = captions.open_captions(NAME, "test", tiny)
  regions = region_captions.RegionCaptionSplit.from_objects(scenes)
  objects = [(i, k) for i in range(len(scenes)) for k in range(len(scenes.phrases(i)))]
  assert len(regions) == len(objects) > 0
  i, k = objects[-1]
  example = regions[len(regions) - 1]
  scene = scenes[i]
  y0, x0, y1, x1 = scene.boxes[k]
  assert example.captions == (scenes.phrases(i)[k],)
  assert abs(example.image.shape[0] - (y1 - y0)) <= 2 and abs(example.image.shape[1] - (x1 - x0)) <= 2
  np.testing.assert_array_equal(example.image, region_captions.crop(scene.image, scene.boxes[k]))
  ids = [regions.annotation(j).image_id for j in range(len(regions))]
  assert ids[0] == region_captions.TEST_FIRST_ID and len(set(ids)) == len(ids)
  assert regions.annotation(0).scene_image_id == scenes.annotation(0).image_id

  assert region_captions.crop(np.zeros((10, 10, 3)), [9.6, 9.7, 12.0, 30.0]).shape == (1, 1, 3)
  with pytest.raises(ValueError, match="empty box"):
    region_captions.RegionCaptionSplit(scenes, [0], [[5, 5, 5, 9]], [("a coat",)], "bad")
  with pytest.raises(vocab.EmptyCaptionError, match="region 0"):
    region_captions.RegionCaptionSplit(scenes, [0], [[1, 1, 5, 9]], [("!",)], "bad")
  with pytest.raises(ValueError, match="scene indices"):
    region_captions.RegionCaptionSplit(scenes, [99], [[1, 1, 5, 9]], [("a coat",)], "bad")


def test_a_dataset_without_region_phrases_is_a_one_line_error(coco_dir):  # noqa: F811
  scenes = captions.open_captions("coco_captions", "test", coco_dir)
  with pytest.raises(ValueError, match=r"has no region phrases \(objects/phrase\).*To fix"):
    region_captions.RegionCaptionSplit.from_objects(scenes)


# --- The experiment ----------------------------------------------------------------------


def _untrained_run(objective_cls, config, workdir: str) -> None:
  """A run folder as the trainer leaves it (config.json, vocab.json, a checkpoint),
  with the initial parameters: what this experiment reads, without training."""
  train, _ = objective_cls.open_inputs(config)
  objective = objective_cls(config, train, 1, workdir)
  os.makedirs(workdir, exist_ok=True)
  state = objective.start(objective.init_state())  # Writes vocab.json.
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json())
  saver = checkpoint.Checkpointer(workdir)
  saver.save(1, state)
  saver.close()


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):  # noqa: F811
  """A tiny alignment run (ground-truth regions) and full-image generator, siblings."""
  root = tmp_path_factory.mktemp("caption_runs")
  align = multirun.base_config(tiny_config(tiny), load_alignment().STUDY_KEYS)
  _untrained_run(objectives.get("caption_alignment").Objective, align,
                 str(root / "caption_alignment" / "full"))
  generation = experiment.load_module(os.path.join(ROOT, "experiments",
                                                   "caption_generation.py"))
  config = config_lib.override(generation.get_config(""), {**GENERATOR, "data.data_dir": tiny})
  _untrained_run(objectives.get("caption_generation").Objective, config,
                 str(root / "caption_generation"))
  return root


def _config(data, **overrides):
  return config_lib.override(load().get_config(), {
      **GENERATOR, "data.data_dir": data, "total_steps": 4, "regions.figure_scenes": 2,
      **overrides})


def test_an_absent_alignment_run_stops_before_any_work_naming_the_command(tiny, tmp_path):  # noqa: F811
  workdir, module = tmp_path / "caption_regions", load()
  with pytest.raises(module.RunMissing,
                     match=r"^config\.compare\.caption_alignment='.*caption_alignment': no "
                           r"finished caption_alignment run there \(full/config\.json missing\)\. "
                           r"To fix: python launch\.py --config=experiments/caption_alignment\.py "
                           r"--workdir=.*caption_alignment"):
    experiment.run_experiment(module, _config(tiny), str(workdir), command="test")
  assert not workdir.exists()
  with pytest.raises(ValueError, match="regions.beta"):
    load().validate_config(_config(tiny, **{"regions.beta": -1.0}))


@pytest.fixture(scope="module")
def straight(runs, tiny):  # noqa: F811
  """The experiment run straight to step 4 beside `runs`: (workdir, metrics)."""
  workdir = str(runs / "caption_regions")
  return workdir, experiment.run_experiment(load(), _config(tiny), workdir, command="test")


def test_end_to_end_report_figure_and_pairs(straight, tiny):  # noqa: F811
  workdir, metrics = straight
  module = load()
  for prefix in ("test", "full_image/test"):
    for key in ("bleu1", "bleu4", "cider"):
      assert np.isfinite(metrics[f"{prefix}/{key}"]), (prefix, key)
  scenes = captions.open_captions(NAME, "test", tiny)
  objects = sum(len(scenes.phrases(i)) for i in range(len(scenes)))
  assert metrics["regions/test_regions"] == objects
  with open(os.path.join(workdir, module.PAIRS)) as f:
    pairs = json.load(f)
  assert pairs["images"] == 24 and pairs["sentences"] == 24 * 5
  assert metrics["regions/train_regions"] == len(pairs["examples"]) > 0
  assert all(e["phrases"] and e["index"] < 24 for e in pairs["examples"])
  report = open(os.path.join(workdir, "report.md")).read()
  assert "| ours: region generator" in report and "RNN: region-level model | 35.2" in report
  assert "## The paper's claims (" in report and report.count("| **") == 4  # 4 verdicts.
  beta = module.get_config().regions.beta
  assert f"beta {beta:g}: Each sentence" in report and "| ours: region generator, beam length" in report
  assert os.path.getsize(os.path.join(workdir, module.FIGURE)) > 10_000
  with open(os.path.join(workdir, "vocab.json")) as f:  # The region phrases' vocabulary.
    assert "<unk>" in vocab.Vocabulary.from_json(f.read()).words


def test_a_stopped_run_resumes_to_the_same_parameters_reusing_the_pairs(straight, runs, tiny,  # noqa: F811
                                                                          tmp_path):
  workdir = str(tmp_path / "caption_regions")
  compare = {"compare.caption_alignment": str(runs / "caption_alignment"),
             "compare.caption_generation": str(runs / "caption_generation"),
             "regions.figure_scenes": 0, "regions.other_decodings": False}
  module = load()
  experiment.run_experiment(module, _config(tiny, total_steps=2, **compare), workdir,
                            command="test")
  written = os.path.getmtime(os.path.join(workdir, module.PAIRS))
  experiment.run_experiment(module, _config(tiny, **compare), workdir, command="test")
  assert os.path.getmtime(os.path.join(workdir, module.PAIRS)) == written
  (step_a, a), (step_b, b) = final_params(straight[0]), final_params(workdir)
  assert step_a == step_b == 4
  jax.tree.map(np.testing.assert_array_equal, a, b)
