"""The All Convolutional Net (Springenberg et al. 2014): the four nets of Tables 1-2 at
full scale against hand counts, the experiment's configs and claims, and one tiny run
of the whole experiment through launch's code path."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import models, report
from research.data import datasets
from research.launch import experiment
from research.models import allcnn as allcnn_model, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("model_c", "strided_cnn_c", "convpool_cnn_c", "allcnn_c")


def load():
  return experiment.load_module(os.path.join(ROOT, "experiments", "allcnn.py"))


def conv(k: int, c_in: int, c_out: int) -> int:
  """Weights and biases of a k x k conv."""
  return k * k * c_in * c_out + c_out


# Tables 1 and 2 at full scale (CIFAR-10: 3 input channels, 10 classes), layer by layer.
MODEL_C = (conv(3, 3, 96) + conv(3, 96, 96) + conv(3, 96, 192) + conv(3, 192, 192)
           + conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10))
EXTRA = conv(3, 96, 96) + conv(3, 192, 192)   # The two convs that replace (or precede) the pools.
HAND_COUNTS = {"model_c": MODEL_C, "strided_cnn_c": MODEL_C, "convpool_cnn_c": MODEL_C + EXTRA,
               "allcnn_c": MODEL_C + EXTRA}


@pytest.mark.parametrize("name", NAMES)
def test_full_scale_nets_match_hand_counts_and_the_papers_shapes(name):
  s = summary.summarize(models.get_model(name), (32, 32, 3))
  assert s.total_params == HAND_COUNTS[name]
  shapes = {r.path: r.output_shape for r in s.rows}
  assert shapes["conv3_1"] == (6, 6, 192)   # "global averaging over 6 x 6" (Table 1).
  assert shapes["conv3_3"] == (6, 6, 10) and shapes["avg"] == (10,)
  pools = [p for p in shapes if p.startswith("pool")]
  assert len(pools) == {"model_c": 2, "strided_cnn_c": 0, "convpool_cnn_c": 2, "allcnn_c": 0}[name]


def test_hand_counts_are_tables_3_magnitudes_and_the_experiment_metric_names_them():
  assert MODEL_C == 954_730 and MODEL_C + EXTRA == 1_369_738 == allcnn_model.pool_replacement_params() + MODEL_C
  # All-CNN-C rounds to Table 3's 1.4M; Model C does not round to its 1.3M (the report says so).
  assert round(HAND_COUNTS["allcnn_c"] / 1e5) == 14 and round(MODEL_C / 1e5) == 10


def test_strided_net_computes_least_and_width_scales_channels():
  macs = {n: summary.summarize(models.get_model(n), (32, 32, 3)).total_macs for n in NAMES}
  assert macs["strided_cnn_c"] < macs["model_c"] < macs["allcnn_c"] < macs["convpool_cnn_c"]
  small = summary.summarize(models.get_model("allcnn_c", width=0.25, num_classes=10), (28, 28, 1))
  shapes = {r.path: r.output_shape for r in small.rows}
  assert shapes["conv1_3"] == (14, 14, 24) and shapes["conv2_3"] == (7, 7, 48)
  assert shapes["conv3_3"] == (5, 5, 10)    # 28 -> 14 -> 7 -> 5x5 maps averaged.


def test_class_maps_relu_follows_table_1_and_can_be_dropped():
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))   # 16 -> 8 -> 4 -> 2x2 maps.
  # Random parameters from numpy on the traced shapes: compiling Flax's init costs seconds.
  shapes = jax.eval_shape(models.get_model("allcnn_c", width=0.125).init, jax.random.key(1), x)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), shapes)
  for relu, check in ((True, lambda m: (m >= 0).all()), (False, lambda m: (m < 0).any())):
    logits, features = models.get_model("allcnn_c", width=0.125,
                                         relu_class_maps=relu).apply(variables, x)
    assert check(features["class_maps"])
    assert jnp.allclose(logits, features["class_maps"].mean(axis=(1, 2)))


def test_unknown_downsample_is_an_error_naming_the_choices():
  model = models.get_model("allcnn_c", downsample="avg")
  with pytest.raises(ValueError, match="Unknown downsample 'avg'.*conv: All-CNN-C"):
    summary.summarize(model, (32, 32, 3))


# --- The experiment: configs, validation, claims ---------------------------------

@pytest.mark.parametrize("arg", [None, "cifar10"])
def test_configs_validate_and_state_claims(arg):
  module = load()
  config = module.get_config(arg)
  experiment.validate(module, config)
  assert set(config.model.kwargs) >= {"downsample", "width", "dropout", "input_dropout"}
  claims = module.claims(config)
  assert len(claims) == 8 and all(isinstance(c, report.Claim) and c.paper for c in claims)
  assert "python launch.py --config=experiments/allcnn.py" in module.__doc__
  assert "minutes" in module.__doc__
  if arg == "cifar10":
    mean, _ = datasets.normalization(config.data.name, config.data.mean, config.data.std)
    assert config.model.kwargs.width == 1.0 and len(mean) == 3  # CIFAR-10's channels.


def test_bad_values_are_errors_naming_the_key():
  module = load()
  with pytest.raises(ValueError, match="Unknown argument 'nope'"):
    module.get_config("nope")
  for key, value, match in (("variants", ("model_c", "vgg"), "config.variants"),
                            ("variants", (), "config.variants"),
                            ("model.name", "lenet5", "config.model.name"),
                            ("model.kwargs.width", 0.0, "config.model.kwargs.width"),
                            ("model.kwargs.downsample", "avg", "kwargs.downsample='avg'")):
    config = module.get_config()
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
    with pytest.raises(ValueError, match=match):
      experiment.validate(module, config)


def test_claims_compare_the_right_nets():
  module = load()
  metrics = {"model_c/test/error": 0.10, "strided_cnn_c/test/error": 0.12,
             "convpool_cnn_c/test/error": 0.09, "all_cnn_c/test/error": 0.093,
             "model_c/macs": 100, "strided_cnn_c/macs": 40,
             "model_c/cifar10/params": MODEL_C, "all_cnn_c/cifar10/params": MODEL_C + EXTRA}
  results = report.evaluate_claims(module.claims(module.get_config()), metrics)
  assert [r.holds for r in results] == [True, False, True, True, True, True, True, True]
  assert results[4].ours == pytest.approx(0.02) and results[7].ours == pytest.approx(0.003)
  metrics["all_cnn_c/test/error"] = 0.106   # 0.6 points worse: beyond the noise allowance.
  results = report.evaluate_claims(module.claims(module.get_config()), metrics)
  assert [r.holds for r in results[5:]] == [False, False, False]


def test_notes_tabulate_the_nets_and_explain_the_comparisons():
  module = load()
  metrics = {}
  for i, v in enumerate(module.VARIANTS):
    metrics.update({f"{v}/test/error": 0.25 + i / 100, f"{v}/train_eval/error": 0.24 + i / 100,
                    f"{v}/num_params": 1000 + i, f"{v}/macs": 100 - i,
                    f"{v}/cifar10/params": HAND_COUNTS["allcnn_c" if "all" in v else v]})
  text = module.notes(module.get_config(), metrics)
  assert text.count("\n| ") == 5
  assert "| convpool_cnn_c | 1,003 | 97 | 27.00% | 28.00% | 9.31%" in text
  assert "still underfitting" in text
  assert "all_cnn_c against model_c: +1.00% test error, +1.00% training error: unlike" in text
  assert "strided_cnn_c against model_c: +2.00% test error, +2.00% training error: as in" in text
  assert "all_cnn_c against convpool_cnn_c: -2.00% test error, -2.00% training error: as" in text
  assert module.notes(module.get_config(), {}) == ""


# --- The whole experiment, tiny, through the real code path ----------------------------

def test_experiment_end_to_end_and_rerun(data_dir, tmp_path, tiny_config):
  """Two of the four nets (compilation dominates; the summaries above build all four)."""
  module = load()
  config = tiny_config(module.get_config(), total_steps=3, eval_train_examples=128,
                       variants=("model_c", "all_cnn_c"),
                       **{"data.train_split": "train[:256]", "data.eval_split": "test[:128]",
                          "model.kwargs.width": 0.125})
  workdir = str(tmp_path / "allcnn")
  metrics = experiment.run_experiment(module, config, workdir, command="test")
  assert {"model_c", "all_cnn_c"} <= set(os.listdir(workdir))
  assert metrics["all_cnn_c/steps"] == 3
  assert metrics["all_cnn_c/num_params"] - metrics["model_c/num_params"] == (
      conv(3, 12, 12) + conv(3, 24, 24))       # Width 0.125: 12 and 24 maps.
  assert metrics["all_cnn_c/cifar10/params"] == MODEL_C + EXTRA
  with open(os.path.join(workdir, "claims.json")) as f:
    claims = json.load(f)
  # The claims on the two nets trained are measured; those on the controls are not.
  measured = [c["holds"] is not None for c in claims]
  assert measured == [True, True, True, False, False, True, True, False]
  text = open(os.path.join(workdir, "report.md")).read()
  assert "9.08%" in text and "![allcnn_errors.png](allcnn_errors.png)" in text
  assert "| all_cnn_c |" in text and "| strided_cnn_c |" not in text
  # A rerun keeps the finished variants (nothing trains) and rewrites the report.
  again = experiment.run_experiment(module, config, workdir, command="test")
  assert again["all_cnn_c/test/error"] == metrics["all_cnn_c/test/error"]
