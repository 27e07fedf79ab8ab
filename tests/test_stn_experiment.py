"""experiments/stn.py: its cells, configs and claims, and a tiny run through the real code."""

import json
import os

import numpy as np
import pytest

from research import models
from research.eval import stn_analysis
from research.launch import experiment, multirun
from research.models import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
stn = experiment.load_module(os.path.join(ROOT, "experiments", "stn.py"))


def test_default_config_runs_table_1s_affine_cells():
  config = stn.get_config()
  stn.validate_config(config)
  cells = stn.cells(config)
  assert len(cells) == 16  # 4 models x R, RTS, P, E.
  assert [c.name for c in cells[:4]] == ["fcn", "cnn", "st_fcn", "st_cnn"]
  assert {c.dataset for c in cells} == {"r", "rts", "p", "e"}
  c = stn.cell_config(config, cells[3])
  assert (c.data.name, c.model.name, c.model.kwargs.transform) == ("mnist_5k_r_x12", "st_cnn",
                                                                    "affine")
  assert "stn" not in c and "models" not in c
  assert c.data.mean == (0.0,) and c.data.std == (1.0,)


def test_arguments_add_cells_and_bad_ones_stop():
  config = stn.get_config("tps,tc")
  names = {(c.name, c.dataset) for c in stn.cells(config)}
  assert ("st_cnn_tps", "tc") in names and ("st_cnn", "rts") in names
  tc = stn.cell_config(config, stn.Cell("st_cnn", "tps", "tc"))
  assert tc.model.kwargs.st_downsample == 2 and tc.model.kwargs.tps_grid_size == 4
  assert len(stn.cells(stn.get_config("full"))) == 5 * 8
  assert stn.get_config("fashion").stn.source == "fashion_mnist"
  with pytest.raises(ValueError, match="Unknown argument"):
    stn.get_config("nope")
  config = stn.get_config()
  config.stn.datasets = ("r", "x")
  with pytest.raises(ValueError, match="stn.datasets"):
    stn.validate_config(config)


@pytest.mark.parametrize("name", ["fcn", "cnn", "st_fcn", "st_cnn"])
@pytest.mark.parametrize("dataset,hw", [("r", 28), ("rts", 42), ("tc", 60)])
def test_every_model_passes_the_trainers_summary_at_every_size(name, dataset, hw):
  # The trainer checks conv arithmetic: a 2x2 pool must tile its input.
  config = stn.get_config("tps,tc")
  for t in (config.stn.transforms if name.startswith("st_") else (None,)):
    c = stn.cell_config(config, stn.Cell(name, t, dataset))
    model = models.get_model(c.model.name, **c.model.kwargs.to_dict())
    assert summary.summarize(model, (hw, hw, 1), train=False).total_params > 0


def test_claims_pair_each_st_model_with_its_baseline():
  config = stn.get_config()
  claims = stn.claims(config)
  assert len(claims) == 8
  first = claims[0]
  assert "ST-FCN Aff" in first.statement and "FCN on R" in first.statement
  assert first.paper == "1.2% vs 2.1%"
  by_statement = {c.statement: c for c in claims}
  st_cnn_rts = by_statement["ST-CNN Aff has lower test error than the CNN on RTS."]
  assert st_cnn_rts.paper == "0.5% vs 0.8%"
  metrics = {"st_cnn/rts/test/error": 0.01, "cnn/rts/test/error": 0.02}
  result = st_cnn_rts.evaluate(metrics)
  assert result.holds and result.ours_text() == "1.0% vs 2.0%"
  assert not st_cnn_rts.evaluate({**metrics, "st_cnn/rts/test/error": 0.02}).holds
  assert st_cnn_rts.evaluate({}).holds is None  # Not measured.
  tc = stn.claims(stn.get_config("tc"))
  assert any(c.paper == "1.7% vs 3.5%" for c in tc)
  assert all(c.paper.startswith("(on MNIST)") for c in stn.claims(stn.get_config("fashion")))


def test_notes_show_the_table_and_explain_a_failed_claim():
  config = stn.get_config()
  metrics = {f"{m}/{d}/test/error": 0.05 for m in ("fcn", "cnn", "st_fcn", "st_cnn")
             for d in ("r", "rts", "p", "e")}
  metrics["st_cnn/rts/test/error"] = 0.052  # Worse than the CNN, by 2 images in 1,000.
  metrics["st_fcn/e/test/error"] = 0.09     # Worse by far.
  text = stn.notes(config, metrics)
  assert "| ST-CNN Aff | 5.0 (0.7) | 5.2 (0.5) | 5.0 (0.8) | 5.0 (1.2) |" in text
  assert "5,000 real digits" in text
  failures = [line for line in text.splitlines() if line.startswith("*Does not hold:*")]
  assert len(failures) == 8  # Ties fail too: "lower" is strict.
  rts = next(line for line in failures if "CNN on RTS" in line)
  assert "within two standard errors" in rts and "noise" in rts
  e = next(line for line in failures if "ST-FCN Aff has lower test error than the FCN on E" in line)
  assert "short training" in e


def test_tiny_run_end_to_end_then_a_rerun_reuses_the_cells(data_dir, tmp_path):
  config = stn.get_config()
  # One column, the CNN pair (XLA compiles dominate: a few per cell).
  config.stn.datasets, config.stn.models = ("r",), ("cnn", "st_cnn")
  config.data.train_split, config.data.eval_split = "train[:128]", "test[:64]"
  config.num_epochs, config.total_steps = 0.0, 2
  config.eval_train_examples = 64
  config.stn.num_pictures = 3
  config.stn.train_copies = 2  # Builds mnist_5k_r_x2: 8,000 images, a few seconds.
  workdir = str(tmp_path / "stn")
  metrics = experiment.run_experiment(stn, config, workdir, command="python launch.py ...")
  for cell in ("cnn", "st_cnn"):
    assert 0 <= metrics[f"{cell}/r/test/error"] <= 1
    assert metrics[f"{cell}/r/steps"] == 2
    assert os.path.exists(os.path.join(workdir, f"{cell}_r", "checkpoints"))
  report = open(os.path.join(workdir, "report.md")).read()
  assert "ST-CNN Aff has lower test error than the CNN on R." in report
  assert "0.7% vs 1.2%" in report and "st_cnn/r/test/error" in report
  assert "## Table 1 (left): test error %" in report and "| ST-CNN Aff |" in report
  for png in ("pose_st_cnn.png", "table1.png"):
    assert f"![{png}]({png})" in report
  table = open(os.path.join(workdir, "table1.md")).read()
  assert "| ST-CNN Aff |" in table and "(0.7)" in table

  # The transformer's outputs are the pictures' second rows: at 2 steps from
  # the identity they still look like the inputs.
  block = stn_analysis.transformed_test_images(
      stn.cell_config(config, stn.Cell("st_cnn", "affine", "r")), os.path.join(workdir, "st_cnn_r"),
      3, "R")
  assert block["name"] == "R" and block["predicted"].shape == block["labels"].shape == (3,)
  assert block["outputs"].shape == block["inputs"].shape == (3, 28, 28, 1)
  assert np.abs(block["outputs"] - block["inputs"]).mean() < 0.1

  # A rerun trains nothing: every cell kept its final metrics.
  with open(os.path.join(workdir, "cnn_r", multirun.RESULT_FILE)) as f:
    assert json.load(f)["metrics"]["test/error"] == metrics["cnn/r/test/error"]
  assert experiment.run_experiment(stn, config, workdir, command="python launch.py") == metrics


def test_distorted_copies_extend_the_base_dataset(data_dir):
  from research.data import distorted_copies, tfds_source
  assert distorted_copies.register("mnist_5k", "r", 1) == "mnist_5k_r"
  name = distorted_copies.register("mnist_5k", "r", 2)
  train = tfds_source.load_split(name, "train", data_dir)
  base = tfds_source.load_split("mnist_5k_r", "train", data_dir)
  n = len(base)
  assert len(train) == 2 * n
  np.testing.assert_array_equal(train.images[:n], base.images)  # Copy 0 is the base draw,
  np.testing.assert_array_equal(train.labels[n:], base.labels)  # copy 1 the same digits
  assert np.abs(train.images[n:].astype(int) - base.images).mean() > 10  # in new poses.
  np.testing.assert_array_equal(tfds_source.load_split(name, "test", data_dir).images,
                                tfds_source.load_split("mnist_5k_r", "test", data_dir).images)
