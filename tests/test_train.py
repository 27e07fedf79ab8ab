"""The trainer: steps, optimizers, exact resume after a kill, the NaN stop, devices."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import models
from research.train import checkpoint, config as config_lib, optim, steps, trainer
from tests.conftest import ROOT, final_params, make_tiny_config


def test_train_step_lowers_the_loss_on_a_batch():
  model = models.get_model("lenet5")
  tx = optax.adam(1e-3)
  state = steps.create_train_state(model, tx, (1, 28, 28, 1), seed=0)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, 16).astype(np.int32)}
  step = jax.jit(steps.make_train_step(model, tx, mean=(0.5,), std=(0.5,)), donate_argnums=0)
  state, first = step(state, batch)
  for _ in range(30):
    state, last = step(state, batch)
  assert int(state.step) == 31
  assert float(last["loss"]) < 0.5 * float(first["loss"])


def test_step_schedule_and_sgd_weight_decay():
  c = config_lib.base_config().optimizer
  c.schedule, c.learning_rate, c.boundaries, c.decay_factor = "step", 0.1, (0.5, 0.75), 0.1
  schedule = optim.make_schedule(c, 100)
  assert [float(schedule(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
      [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
  c.name, c.momentum, c.weight_decay, c.schedule = "sgd", 0.0, 0.5, "constant"
  tx, _ = optim.make_optimizer(c, 100)
  params = {"w": jnp.array([2.0])}
  updates, _ = tx.update({"w": jnp.array([1.0])}, tx.init(params), params)
  # AlexNet §5: v = -lr * (grad + wd * w) = -0.1 * (1 + 0.5 * 2).
  np.testing.assert_allclose(updates["w"], [-0.2], rtol=1e-6)


def test_training_improves_and_writes_the_workdir(data_dir, tmp_path):
  metrics = trainer.train_and_evaluate(make_tiny_config(total_steps=60), str(tmp_path))
  assert metrics["test/accuracy"] > 0.5  # Chance is 0.1.
  for name in ("config.json", "run_info.json", "summary.txt", "metrics.jsonl"):
    assert os.path.exists(tmp_path / name), name
  info = json.loads((tmp_path / "run_info.json").read_text())
  assert info["packages"]["jax"] == jax.__version__ and info["git_commit"]
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[0]["step"] == 4 and "train/loss" in rows[0]
  assert any("test/accuracy" in r for r in rows)
  assert os.listdir(tmp_path / "tensorboard")


_RUN_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.conftest import ROOT, final_params, make_tiny_config
    from research.train import trainer
    trainer.train_and_evaluate(make_tiny_config(), {workdir!r})
""")


def _run_in_subprocess(workdir, env_extra=None):
  env = {**os.environ, **(env_extra or {})}
  return subprocess.run([sys.executable, "-c", _RUN_SCRIPT.format(root=ROOT, workdir=workdir)],
                        env=env, capture_output=True, text=True, cwd=ROOT)


def test_killed_run_resumes_to_exactly_the_uninterrupted_result(data_dir, tmp_path):
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  trainer.train_and_evaluate(make_tiny_config(), straight)
  result = _run_in_subprocess(killed, {trainer._KILL_AT_STEP_ENV: "13"})
  assert result.returncode == -9, result.stderr[-2000:]
  interrupted_step, _ = checkpoint.load_arrays(killed)
  assert interrupted_step in (5, 10)  # Killed mid-run: 24 was never reached.
  trainer.train_and_evaluate(make_tiny_config(), killed)  # Same workdir: resumes.
  step_a, params_a = final_params(straight)
  step_b, params_b = final_params(killed)
  assert step_a == step_b == 24
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)  # Bit for bit.


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
  config = make_tiny_config(checkpoint_every_steps=1, log_every_steps=1)
  config.optimizer.schedule = "constant"
  config.optimizer.learning_rate = 1e30  # Diverges within a couple of steps.
  with pytest.raises(FloatingPointError, match=r"became (nan|inf) at step \d+; stopping"):
    trainer.train_and_evaluate(config, str(tmp_path))
  step, params = final_params(str(tmp_path))
  assert step < 24
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))


def test_two_devices_compute_what_one_does(data_dir, tmp_path):
  one = str(tmp_path / "one")
  trainer.train_and_evaluate(make_tiny_config(total_steps=6), one)
  script = _RUN_SCRIPT.replace("make_tiny_config()", "make_tiny_config(total_steps=6)")
  two = str(tmp_path / "two")
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  check = "import jax; assert jax.device_count() == 2\n"
  result = subprocess.run([sys.executable, "-c", check + script.format(root=ROOT, workdir=two)],
                          env=env, capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-2000:]
  _, params_one = final_params(one)
  _, params_two = final_params(two)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               params_one, params_two)


@pytest.mark.parametrize("key,value,match", [
    ("batch_size", -1, r"config.batch_size=-1: must be > 0"),
    ("eval_every_steps", -5, r"config.eval_every_steps=-5"),
    ("keep_checkpoints", 0, r"config.keep_checkpoints=0"),
])
def test_impossible_values_name_the_key(key, value, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    trainer.train_and_evaluate(make_tiny_config(**{key: value}), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")  # Stopped before any work.


def test_nested_impossible_values_name_the_key(tmp_path):
  config = make_tiny_config()
  config.optimizer.name = "adagrad"
  with pytest.raises(ValueError, match=r"config.optimizer.name='adagrad'"):
    trainer.validate_config(config)
  config = make_tiny_config(num_epochs=3.0)
  with pytest.raises(ValueError, match="exactly one of total_steps and num_epochs"):
    trainer.validate_config(config)


def test_aux_loss_reads_only_the_explicit_aux_logits_key():
  import flax.linen as nn

  class TwoHeads(nn.Module):  # A main and an auxiliary head, plus a decoy feature.
    @nn.compact
    def __call__(self, x, *, train=False):
      h = x.reshape(x.shape[0], -1)
      logits = nn.Dense(3, name="main")(h)
      aux = nn.Dense(3, name="aux")(h)
      return logits, {models.AUX_LOGITS: {"aux": aux}, "decoy_aux_logits": 10 * aux}

  model, tx = TwoHeads(), optax.sgd(0.0)
  state = steps.create_train_state(model, tx, (1, 2, 2, 1), seed=0)
  batch = {"image": np.arange(16, dtype=np.uint8).reshape(4, 2, 2, 1) * 9,
           "label": np.array([0, 1, 2, 0], np.int32)}
  _, m = steps.make_train_step(model, tx, mean=(0.5,), std=(0.5,),
                               aux_loss_weight=0.3)(state, batch)
  x = steps.standardize(steps.to_unit_range(batch["image"]), (0.5,), (0.5,))
  _, features = model.apply({"params": state.params}, x)
  aux_loss = steps.cross_entropy(features[models.AUX_LOGITS]["aux"], batch["label"])
  np.testing.assert_allclose(m["total_loss"], m["loss"] + 0.3 * aux_loss, rtol=1e-6)
