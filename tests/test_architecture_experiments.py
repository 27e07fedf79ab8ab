"""The architecture papers' experiments (AlexNet, VGG, GoogLeNet, ResNet, NiN):
configs, claims, the analytic checks, the multi-run helper, and one tiny
end-to-end multi-run experiment (NiN's three heads, a few steps each)."""

import json
import os

import numpy as np
import pytest

from research import models, report
from research.errors import ConfigError
from research.eval import conv_stacks, plots, training_speed
from research.launch import experiment, multirun
from research.models import summary
from research.train import config as config_lib, metrics as metrics_lib, trainer
from tests.conftest import make_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("alexnet", "vgg", "googlenet", "resnet", "nin")


def load(name: str):
  return experiment.load_module(os.path.join(ROOT, "experiments", f"{name}.py"))


# --- Configs and claims -------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("arg", [None, "full"])
def test_configs_validate_and_state_claims(name, arg):
  module = load(name)
  config = module.get_config(arg)
  experiment.validate(module, config)
  claims = module.claims(config)
  assert claims and all(isinstance(c, report.Claim) and c.paper for c in claims)
  doc = module.__doc__
  assert f"python launch.py --config=experiments/{name}.py" in doc and "minutes" in doc


@pytest.mark.parametrize("name", NAMES)
def test_unknown_argument_is_an_error(name):
  with pytest.raises(ValueError, match="Unknown argument 'nope'"):
    load(name).get_config("nope")


def test_bad_experiment_keys_name_the_key():
  resnet, vgg = load("resnet"), load("vgg")
  config = resnet.get_config()
  config.variants = ("plain20", "resnet9000")
  with pytest.raises(ValueError, match="resnet9000"):
    experiment.validate(resnet, config)
  config = vgg.get_config()
  config.configurations = ("A", "Z")
  with pytest.raises(ValueError, match="config.configurations"):
    experiment.validate(vgg, config)


@pytest.mark.parametrize("name,key,value", [
    ("nin", "model.name", "lenet5"),
    ("googlenet", "plain_width", 0),
    ("augmentation", "variants", ("crop",)),
    ("alexnet", "fig1_learning_rates", (0.01, -1.0)),
    ("transfer", "task_a", (0, 1, 2, 3, 4, 5)),
    ("transfer", "layers", (0,)),
    ("transfer", "conditions", ("AnB", "CnD")),
])
def test_each_experiment_check_is_the_one_config_error(name, key, value):
  # Every experiment's own check goes through config.require: one line naming the key.
  module = load(name)
  config = config_lib.override(module.get_config(), {key: value})
  with pytest.raises(ConfigError, match=f"^config.{key}="):
    experiment.validate(module, config)


def test_claims_compare_the_right_variants():
  """ResNet's degradation claims read the four nets' metrics the right way round."""
  metrics = {"plain20/train_eval/error": 0.10, "plain56/train_eval/error": 0.15,
             "resnet20/train_eval/error": 0.08, "resnet56/train_eval/error": 0.05,
             "plain20/test/error": 0.12, "plain56/test/error": 0.16,
             "resnet20/test/error": 0.11, "resnet56/test/error": 0.10,
             "resnet56/test/accuracy": 0.90}
  results = report.evaluate_claims(load("resnet").claims(load("resnet").get_config()), metrics)
  assert [r.holds for r in results] == [True, True, True, True, True, False]
  assert results[0].ours == pytest.approx(0.05)


# --- Analytic checks -----------------------------------------------------------

def test_vgg_stacked_3x3_receptive_fields_and_weights():
  vgg = load("vgg")
  metrics = vgg.analytic_metrics()
  assert metrics["rf/two_3x3"] == metrics["rf/two_3x3_measured"] == 5
  assert metrics["rf/three_3x3"] == metrics["rf/three_3x3_measured"] == 7
  c = vgg.WIDTH
  assert metrics["weights/three_3x3"] == 3 * (3 * 3 * c * c) == 27 * c * c
  assert metrics["weights/one_7x7"] == 7 * 7 * c * c
  assert conv_stacks.measured_receptive_field((5,)) == 5   # One 5x5 sees what two 3x3 do.
  analytic = [c for c in vgg.claims(vgg.get_config()) if "Table 3" not in c.source
              and "benchmark" not in c.source and "training set" not in c.statement]
  assert len(analytic) == 4
  assert all(r.holds for r in report.evaluate_claims(analytic, metrics))


def test_scaled_variants_for_the_experiments():
  def s(name, **kwargs):
    return summary.summarize(models.get_model(name, **kwargs), (28, 28, 1))
  # AlexNet §3.4: 3x3/2 pools rounding up give the sizes of 2x2/2 pools.
  pools = lambda x: [r.output_shape for r in x.rows if r.path.startswith("pool")]  # noqa: E731
  assert pools(s("alexnet_small", pool_rounding="ceil")) == pools(s("alexnet_small", pool_window=2))
  assert s("alexnet_fig1", activation="tanh").total_params == s("alexnet_fig1").total_params
  # NiN: the FC head adds exactly the 7x7x10 -> 10 layer.
  assert s("nin_small", head="fc").total_params - s("nin_small").total_params == 4910
  # GoogLeNet's plain baseline costs about what the Inception net does.
  costs = load("googlenet")._small_costs(load("googlenet").get_config())
  assert 0.85 < costs["plain_over_inception_macs"] < 1.15
  assert 0.9 < costs["plain_over_inception_params"] < 1.1


# --- The multi-run helper ---------------------------------------------------------

def _fake_trainer(calls: list):
  """Stands in for trainer.train_and_evaluate: logs two evals, returns metrics."""
  def train_and_evaluate(config, workdir):
    calls.append(workdir)
    if config.optimizer.learning_rate > 1:
      raise FloatingPointError("Training loss became nan at step 3; stopping.")
    writer = metrics_lib.MetricWriter(workdir, tensorboard=False)
    lr = config.optimizer.learning_rate
    for step in (2, 4):
      writer.write(step, {"test/error": 1 - 10 * lr * step})
    writer.close()
    return {"test/error": 1 - 40 * lr, "steps": 4, "note": "not a number"}
  return train_and_evaluate


def test_run_variants_into_subfolders_skips_finished_and_merges(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(trainer, "train_and_evaluate", _fake_trainer(calls))
  base = make_tiny_config()
  variants = {"a": {"optimizer.learning_rate": 0.01}, "b": {"optimizer.learning_rate": 0.02}}
  results = multirun.run_variants(base, variants, str(tmp_path))
  assert calls == [str(tmp_path / "a"), str(tmp_path / "b")]
  assert os.path.exists(tmp_path / "a" / multirun.RESULT_FILE)
  merged = multirun.merge(results)
  assert merged == {"a/test/error": pytest.approx(0.6), "a/steps": 4,
                    "b/test/error": pytest.approx(0.2), "b/steps": 4}
  steps, errors = metrics_lib.series(str(tmp_path / "b"), "test/error")
  assert steps == [2, 4] and errors == pytest.approx([0.6, 0.2])
  assert metrics_lib.steps_to_reach(str(tmp_path / "b"), "test/error", 0.6) == 2
  assert metrics_lib.steps_to_reach(str(tmp_path / "b"), "test/error", 0.1) is None
  # A rerun keeps finished variants; a changed config trains again; the
  # experiment's own (declared) study keys are not part of a run.
  assert multirun.run_variants(base, variants, str(tmp_path)) == results
  assert len(calls) == 2
  multirun.run_variants(base, {"a": {"optimizer.learning_rate": 0.03}}, str(tmp_path))
  assert len(calls) == 3
  base.unlock()
  base.variants = ("a", "b")
  multirun.run_variants(base, {"b": variants["b"]}, str(tmp_path), study_keys=("variants",))
  assert len(calls) == 3


def test_study_keys_are_declared_and_left_out_of_every_run(tmp_path):
  config = make_tiny_config()
  config.unlock()
  config.nets = ("a", "b")
  with pytest.raises(ValueError, match=r"\['nets'\] are not the trainer's.*STUDY_KEYS"):
    multirun.run_variants(config, {"a": {}}, str(tmp_path))
  with pytest.raises(ValueError, match=r"Study keys \['table'\] are not in the config"):
    multirun.base_config(config, ("nets", "table"))
  base = multirun.base_config(config, ("nets",))
  assert "nets" not in base and "nets" in config
  assert base.to_json_best_effort() == make_tiny_config().to_json_best_effort()


@pytest.mark.parametrize("name", ("resnet", "vgg", "googlenet", "nin", "augmentation",
                                  "transfer", "stn", "zfnet_visualization", "allcnn"))
def test_multirun_experiments_declare_their_study_keys(name):
  """Each multi-run experiment is a base trainer config plus its STUDY_KEYS, and
  its variants override keys the base has."""
  module = load(name)
  for arg in (None, "full") if name in ("resnet", "vgg", "googlenet", "nin") else (None,):
    config = module.get_config(arg)
    base = multirun.base_config(config, module.STUDY_KEYS)
    trainer.validate_config(base)
    if hasattr(module, "variants"):
      for overrides in module.variants(config).values():
        config_lib.override(base, overrides)  # Raises on a key the base lacks.


def test_a_diverging_variant_is_a_result_when_allowed(tmp_path, monkeypatch):
  monkeypatch.setattr(trainer, "train_and_evaluate", _fake_trainer([]))
  hot = {"hot": {"optimizer.learning_rate": 1e30}}
  with pytest.raises(FloatingPointError):
    multirun.run_variants(make_tiny_config(), hot, str(tmp_path / "x"))
  results = multirun.run_variants(make_tiny_config(), hot, str(tmp_path / "y"), divergence_ok=True)
  assert results == {"hot": {"diverged": 1.0}}
  assert multirun.finished_metrics(config_lib.override(make_tiny_config(), hot["hot"]),
                                   str(tmp_path / "y" / "hot")) == {"diverged": 1.0}


def test_steps_to_target_keeps_each_arms_fastest_rate(tmp_path):
  curves = {("relu", 0.1): [0.5, 0.2, 0.1], ("relu", 0.3): [0.4, 0.3, 0.3],
            ("tanh", 0.1): [0.6, 0.4, 0.3], ("tanh", 0.3): [0.5, 0.3, 0.25]}
  runs = {}
  for (arm, lr), errors in curves.items():
    runs[arm, lr] = str(tmp_path / f"{arm}_{lr}")
    writer = metrics_lib.MetricWriter(runs[arm, lr], tensorboard=False)
    for step, error in zip((10, 20, 30), errors):
      writer.write(step, {"train_eval/error": error})
    writer.close()
  metrics, best = training_speed.steps_to_target(runs, "tanh", "train_eval/error", 100,
                                                 paper_target=0.35)
  # The target is tanh's lowest error (0.25 at lr 0.3); relu gets there by step 20 at 0.1.
  assert metrics["target_error"] == 0.25
  assert metrics["relu/steps_to_target"] == 20 and metrics["relu/learning_rate"] == 0.1
  assert metrics["tanh/steps_to_target"] == 30 and metrics["tanh/learning_rate"] == 0.3
  assert metrics["speedup"] == 1.5 and metrics["relu/reached_target"] == 1.0
  assert metrics["tanh/reached_target"] == 1.0  # tanh at 0.1 never does: 100 steps.
  assert metrics["relu/steps_to_35pct"] == 20 and metrics["tanh/steps_to_35pct"] == 20
  assert best["relu"] == ([10, 20, 30], [0.5, 0.2, 0.1])


def test_plot_curves_writes_a_png(tmp_path):
  path = plots.plot_curves({"relu": ([0, 1, 2], [0.5, 0.2, 0.1]), "tanh": ([0, 2], [0.5, 0.3])},
                           str(tmp_path / "curves.png"), xlabel="epoch", ylabel="error",
                           hlines={"target": 0.3}, styles={"tanh": {"linestyle": "--"}})
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# --- One multi-run experiment end to end ----------------------------------------------

def test_nin_experiment_end_to_end_and_rerun(data_dir, tmp_path):
  nin = load("nin")
  config = nin.get_config()
  config.data.train_split, config.data.eval_split = "train[:256]", "test[:128]"
  config.num_epochs, config.total_steps = 0.0, 3
  config.eval_train_examples, config.eval_every_epochs = 256, 0.0
  workdir = str(tmp_path / "nin")
  metrics = experiment.run_experiment(nin, config, workdir, command="test")
  assert {"gap", "fc", "fc_dropout"} <= set(os.listdir(workdir))
  assert metrics["fc_layer_params"] == 4910 and metrics["gap/steps"] == 3
  assert np.isfinite(metrics["fc/gap"])
  with open(os.path.join(workdir, "claims.json")) as f:
    claims = json.load(f)
  assert len(claims) == 4 and all(c["holds"] is not None for c in claims)  # All measured.
  text = open(os.path.join(workdir, "report.md")).read()
  assert "11.59%" in text and "![nin_heads.png](nin_heads.png)" in text
  # A rerun keeps the finished variants (nothing trains) and rewrites the report.
  again = experiment.run_experiment(nin, config, workdir, command="test")
  assert again["gap/test/error"] == metrics["gap/test/error"]
