"""Every objective on the one training loop: a killed run resumes bit for bit,
2 devices compute what 1 does, metrics and hooks arrive, bad keys are named.

(The classification objective's own kill and 2-device tests are in
tests/test_train.py; this file covers the other objectives the same way.)
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest

from research.train import checkpoint, trainer
from research.train.objectives import gan as gan_objective
from tests.conftest import objective_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import jax
    assert jax.device_count() == {devices}
    from tests.conftest import objective_config
    from research.train import trainer
    trainer.train(objective_config({objective!r}), {workdir!r})
""")


def _subprocess(objective, workdir, devices=1, env_extra=None):
  env = {**os.environ, **(env_extra or {})}
  if devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  script = _SCRIPT.format(root=ROOT, devices=devices, objective=objective, workdir=workdir)
  return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                        text=True, cwd=ROOT)


@pytest.mark.parametrize("objective", ["adversarial", "gan"])
def test_killed_run_resumes_exactly_and_two_devices_equal_one(data_dir, tmp_path, objective):
  straight, killed, two = (str(tmp_path / n) for n in ("straight", "killed", "two"))
  result = trainer.train(objective_config(objective), straight)
  assert int(result.state.step) == 6

  # SIGKILL after step 5: the newest finished checkpoint is step 2 or 4 (saving
  # is asynchronous; 4's save makes 2's finish first); the rerun resumes there.
  run = _subprocess(objective, killed, env_extra={trainer._KILL_AT_STEP_ENV: "5"})
  assert run.returncode == -9, run.stderr[-2000:]
  assert checkpoint.load_arrays(killed)[0] in (2, 4)
  trainer.train(objective_config(objective), killed)
  (step_a, state_a), (step_b, state_b) = (checkpoint.load_arrays(straight),
                                          checkpoint.load_arrays(killed))
  assert step_a == step_b == 6
  # The whole state, optimizer moments included, bit for bit.
  jax.tree.map(np.testing.assert_array_equal, state_a, state_b)

  run = _subprocess(objective, two, devices=2)
  assert run.returncode == 0, run.stderr[-2000:]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               state_a, checkpoint.load_arrays(two)[1])


def test_gan_objective_logs_both_players_and_saves_sample_grids(data_dir, tmp_path):
  seen = []

  def eval_fn(state, step):
    seen.append((step, int(state.step)))
    return {"probe": float(step)}

  config = objective_config("gan", total_steps=4)
  result = trainer.train(config, str(tmp_path), eval_fn=eval_fn)
  assert seen == [(0, 0), (3, 3), (4, 4)]  # At the start, every 3 steps and the end.
  assert [s for s, _ in gan_objective.snapshots(str(tmp_path))] == [0, 3, 4]
  grid = gan_objective.snapshots(str(tmp_path))[-1][1]
  assert grid.shape == (4, 28, 28, 1) and grid.dtype == np.uint8
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
  train_rows = [r for r in rows if "train/d_loss" in r]
  assert [r["step"] for r in train_rows] == [2, 4]
  assert {"train/g_loss", "train/d_real", "train/d_fake"} <= set(train_rows[-1])
  assert [r["eval/probe"] for r in rows if "eval/probe" in r] == [0.0, 3.0, 4.0]
  assert result.metrics["num_params"] > 0 and "Discriminator" in (
      tmp_path / "summary.txt").read_text()
  # The MLP generator's output bias starts at the logit of the mean pixel.
  assert float(np.abs(np.asarray(result.state.g_params["output"]["bias"])).max()) > 1


def test_adversarial_objective_metrics_and_plain_epsilon_zero(data_dir, tmp_path):
  metrics = trainer.train_and_evaluate(objective_config("adversarial", total_steps=2),
                                       str(tmp_path / "adv"))
  assert 0 <= metrics["train/adversarial_accuracy"] <= 1
  assert 0 <= metrics["test/accuracy"] <= 1
  config = objective_config("adversarial", total_steps=2)
  config.objective.epsilon = 0.0  # Plain cross-entropy: no adversarial half.
  assert "train/adversarial_accuracy" not in trainer.train_and_evaluate(
      config, str(tmp_path / "plain"))


@pytest.mark.parametrize("objective,key,value,match", [
    ("classification", "objective.name", "ranking", r"config.objective.name='ranking'"),
    ("adversarial", "objective.epsilon", 1.5, r"config.objective.epsilon=1.5"),
    ("adversarial", "augment", "flip_lr", r"config.augment='flip_lr': is not supported"),
    ("gan", "objective.gan", "vae", r"config.objective.gan='vae'"),
    ("gan", "objective.optimizer.name", "rmsprop", r"config.objective.optimizer.name"),
])
def test_bad_objective_keys_are_named_before_any_work(tmp_path, objective, key, value, match):
  config = objective_config(objective)
  parent, _, leaf = key.rpartition(".")
  (config if not parent else config[parent] if "." not in parent
   else config[parent.split(".")[0]][parent.split(".")[1]])[leaf] = value
  with pytest.raises(ValueError, match=match):
    trainer.train(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_adversarial_objective_refuses_batch_norm(data_dir, tmp_path):
  config = objective_config("adversarial", total_steps=1)
  config.data.name, config.model.name = "fashion_mnist", "resnet20"
  config.model.kwargs = ml_collections.ConfigDict()
  with pytest.raises(ValueError, match="has batch norm"):
    trainer.train(config, str(tmp_path))
