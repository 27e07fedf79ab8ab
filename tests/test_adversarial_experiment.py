"""experiments/adversarial.py end to end on a tiny config.

(Its objective on the training loop, resume and devices: tests/test_objectives.py.)
"""

import json
import os

import jax
import numpy as np
import pytest

from research import models
from research.data import datasets, tfds_source
from research.eval import attack_curves
from research.launch import experiment
from research.train import checkpoint, steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = datasets.get("mnist_5k").mean, datasets.get("mnist_5k").std


def tiny_config(module):
  config = module.get_config("mnist")
  config.data.mnist_5k.total_steps = 12
  config.models.maxout.kwargs.units = (16, 16)
  config.models.maxout.kwargs.pieces = 2
  config.attack.epsilons = (0.0, 0.1, 0.25)
  config.attack.max_examples = 64
  config.attack.pgd_steps = 2
  config.attack.lbfgs_examples = 2
  config.attack.lbfgs_search_steps = 2
  config.attack.lbfgs_max_iter = 10
  config.log_every_steps = 6
  config.checkpoint_every_steps = 6
  return config


def test_experiment_writes_report_figures_and_curves(data_dir, tmp_path):
  module = experiment.load_module(os.path.join(ROOT, "experiments", "adversarial.py"))
  config = tiny_config(module)
  metrics = experiment.run_experiment(module, config, str(tmp_path), command="test")
  for name in ("softmax", "maxout", "maxout_adv"):
    for key in ("clean_error", "fgsm_error", "pgd_error", "random_sign_error"):
      assert 0.0 <= metrics[f"mnist_5k/{name}/{key}"] <= 1.0
  assert 0.0 <= metrics["mnist_5k/transfer/maxout_half_a_to_lenet5_half_b"] <= 1.0
  assert "mnist_5k/lbfgs/maxout/mean_distortion" in metrics
  for png in ("error_vs_epsilon.png", "fgsm_mnist_5k.png"):
    assert (tmp_path / png).stat().st_size > 1000
  report = (tmp_path / "report.md").read_text()
  assert "Goodfellow et al. 2014, §5" in report and "99.9%" in report
  assert "![error_vs_epsilon.png](error_vs_epsilon.png)" in report
  claims = json.loads((tmp_path / "claims.json").read_text())
  assert len(claims) == len(module.claims(config))
  rows = (tmp_path / "error_vs_epsilon.csv").read_text().splitlines()
  assert len(rows) == 1 + 3 * 3 * 3  # header + models x attacks x epsilons
  # Every classifier checkpointed in its own subfolder: a rerun resumes.
  for sub, steps in [("softmax", 12), ("maxout", 12), ("maxout_adv", 12),
                     ("maxout_half_a", 6), ("lenet5_half_b", 6)]:  # Half the data, half the steps.
    assert checkpoint.load_arrays(str(tmp_path / "mnist_5k" / sub))[0] == steps


def test_bad_config_values_name_the_key():
  module = experiment.load_module(os.path.join(ROOT, "experiments", "adversarial.py"))
  config = module.get_config("mnist")
  config.datasets = "cifar10"
  with pytest.raises(ValueError, match="config.datasets"):
    module.validate_config(config)
  config = module.get_config("")
  config.attack.epsilon = 0.22  # Not on the curve.
  with pytest.raises(ValueError, match="attack.epsilon"):
    module.validate_config(config)
  with pytest.raises(ValueError, match="Unknown argument"):
    module.get_config("imagenet")


def test_error_curve_clean_point_and_attacks(data_dir):
  test = tfds_source.load_split("mnist_5k", "test[:64]")
  x, y = test.images.astype(np.float32) / 255.0, test.labels
  model = models.get_model("softmax_regression")
  variables = model.init(jax.random.PRNGKey(0), x[:1])
  apply_fn = steps.make_apply_fn(model, MEAN, STD)
  key = jax.random.PRNGKey(1)
  clean = attack_curves.error_curve(apply_fn, variables, x, y, "fgsm", [0.0], key=key)[0]
  # FGSM ascends the loss, so it errs at least as often as random signs of the same size.
  fgsm, noise = (attack_curves.error_curve(apply_fn, variables, x, y, kind, [0.3], key=key)[0]
                 for kind in ("fgsm", "random_sign"))
  assert clean["epsilon"] == 0.0 and fgsm["error_rate"] >= noise["error_rate"]
  assert fgsm["clean_error_rate"] == clean["error_rate"]
  with pytest.raises(ValueError, match="Unknown attack"):
    attack_curves.make_attack("cw", apply_fn, variables, 0.1, key=key)
