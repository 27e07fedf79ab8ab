"""experiments/gan.py end to end on a tiny config, and the GAN objective on the loop."""

import json
import os

import jax
import numpy as np
import pytest

from research.launch import experiment
from research.train import checkpoint, trainer
from research.train.objectives import gan as gan_objective
from tests.conftest import objective_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_module():
  return experiment.load_module(os.path.join(ROOT, "experiments", "gan.py"))


def tiny_config(module):
  config = module.get_config("mnist")
  config.data.train_split = "train[:512]"
  config.data.validation_split = "train[:64]"
  config.data.test_split = "test[:128]"
  config.classifier.data.train_split = "train[:512]"
  config.classifier.data.eval_split = "test[:128]"
  config.classifier.num_epochs = 1.0
  config.gan_mlp.generator.hidden = (32, 32)
  config.gan_mlp.discriminator.units = (16, 16)
  config.gan_mlp.discriminator.pieces = 2
  config.dcgan.generator.width = 8
  config.dcgan.discriminator.width = 8
  config.gan_mlp.total_steps = config.dcgan.total_steps = 4
  config.gan_mlp.batch_size = config.dcgan.batch_size = 16
  config.sample_every_steps = config.checkpoint_every_steps = config.log_every_steps = 2
  config.eval.num_samples = 200
  config.eval.samples_during_training = 64
  config.eval.parzen_sigmas = (0.1, 0.3)
  config.eval.interpolation_walks, config.eval.interpolation_steps = 2, 4
  return config


def test_experiment_writes_report_samples_and_figures(data_dir, tmp_path):
  module = load_module()
  config = tiny_config(module)
  metrics = experiment.run_experiment(module, config, str(tmp_path), command="test")
  for name in ("gan_mlp", "dcgan", "gaussian_baseline"):
    assert metrics[f"{name}/frechet"] > 0
    assert np.isfinite(metrics[f"{name}/parzen"]) and metrics[f"{name}/parzen_sigma"] in (0.1, 0.3)
  assert metrics["data/frechet"] < metrics["gaussian_baseline/frechet"]
  for png in ("samples_gan_mlp.png", "samples_dcgan.png", "progress_dcgan.png",
              "interpolation_dcgan.png", "interpolation_gan_mlp.png",
              "samples_gaussian_baseline.png", "frechet_during_training.png"):
    assert (tmp_path / png).stat().st_size > 1000, png
  # Sample grids every 2 steps (and at step 0), each also as uint8 for figures.
  for name in ("gan_mlp", "dcgan"):
    steps = [s for s, _ in gan_objective.snapshots(str(tmp_path / name))]
    assert steps == [0, 2, 4]
    assert (tmp_path / name / "samples" / "step_000004.png").exists()
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
    last = [r for r in rows if r["step"] == 4]  # Train, eval and train_time_s rows of the last step.
    assert {"train/d_loss", "train/g_loss"} <= set().union(*last)
    assert any("eval/frechet_2k" in r for r in rows)
  report = (tmp_path / "report.md").read_text()
  assert "225 ± 2" in report and "![samples_dcgan.png](samples_dcgan.png)" in report
  assert len(json.loads((tmp_path / "claims.json").read_text())) == 3


def _tiny_gan_run(workdir, name, total_steps, generator_loss="non_saturating"):
  config = objective_config("gan", total_steps=total_steps, log_every_steps=1,
                            eval_every_steps=100)
  config.objective.generator_loss = generator_loss
  if name == "dcgan":
    config.objective.gan = "dcgan"
    config.objective.generator = {"latent_dim": 8, "width": 4}
    config.objective.discriminator = {"width": 4}
    config.objective.init_output_bias = False
  return trainer.train(config, str(workdir)).state


# DCGAN's step takes most of a minute to compile on 2 loaded cores: slow. (The
# MLP GAN's resume after SIGKILL is in tests/test_objectives.py.)
@pytest.mark.slow
def test_dcgan_training_resumes_exactly(data_dir, tmp_path, monkeypatch):
  # Batch norm's running averages are part of what has to come back exactly.
  straight = _tiny_gan_run(tmp_path / "straight", "dcgan", 5)
  batches = trainer.pipeline.train_batches

  def crashing(*args, **kwargs):  # A crash while fetching the batch of step 4.
    for i, batch in enumerate(batches(*args, **kwargs)):
      if i == 3:
        raise KeyboardInterrupt("simulated kill")
      yield batch

  with monkeypatch.context() as patch:
    patch.setattr(trainer.pipeline, "train_batches", crashing)
    with pytest.raises(KeyboardInterrupt):
      _tiny_gan_run(tmp_path / "killed", "dcgan", 5)
  resumed = _tiny_gan_run(tmp_path / "killed", "dcgan", 5)
  assert int(resumed.step) == 5
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert checkpoint.load_arrays(str(tmp_path / "killed"))[0] == 5


def test_minimax_loss_trains_and_bad_values_name_the_key(data_dir, tmp_path):
  state = _tiny_gan_run(tmp_path / "minimax", "gan_mlp", 2, generator_loss="minimax")
  assert int(state.step) == 2
  module = load_module()
  for key, value, match in [("generator_loss", "wasserstein", "config.generator_loss"),
                            ("gans", "gan_mlp,vae", "config.gans")]:
    config = module.get_config("")
    config[key] = value
    with pytest.raises(ValueError, match=match):
      module.validate_config(config)
  config = module.get_config("")
  config.gan_mlp.optimizer.name = "rmsprop"
  with pytest.raises(ValueError, match="gan_mlp.optimizer.name"):
    module.validate_config(config)
  with pytest.raises(ValueError, match="Unknown argument"):
    module.get_config("cifar10")
