"""config.conv_impl (research/models/conv_impl.py): the models' convolutions through oneDNN.

One training step of LeNet-5 (with its masked C3), ResNet-20 and AlexNet-small
with conv_impl="onednn" against the XLA path, float32 and bfloat16; a short
bfloat16 run against float32; the data-parallel mesh; the fallbacks (no
library, a non-CPU backend) and the config check. The tests that run oneDNN
need the library (`bash scripts/build_onednn_conv.sh`) and skip without it,
saying so.
"""

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
from research.errors import ConfigError
from research.models import conv_impl
from research.ops import onednn_conv
from research.train import steps, trainer
from tests.conftest import ROOT, final_params

needs_library = pytest.mark.skipif(
    not onednn_conv.available(),
    reason=f"oneDNN conv not built: {onednn_conv.unavailable_reason()}")

_NETWORKS = ("lenet5", "resnet20", "alexnet_small")
_BATCH = 8


def _one_step(network: str, impl: str, compute_dtype: str = "float32"):
  """(params after one SGD step from seed 0, the step's StableHLO text)."""
  model = models.get_model(network, num_classes=10)
  tx = optax.sgd(0.05, momentum=0.9)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (_BATCH, 28, 28, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, _BATCH).astype(np.int32)}
  with conv_impl.use(impl):
    state = steps.create_train_state(model, tx, (1, 28, 28, 1), 0)
    step = jax.jit(steps.make_train_step(model, tx, mean=(0.5,), std=(0.25,),
                                         compute_dtype=compute_dtype))
    hlo = step.lower(state, batch).as_text()
    new_state, metrics = step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  return new_state.params, hlo


def _norm(tree) -> float:
  return float(jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))))


def _distance(params, ref, before) -> float:
  """|params - ref| / |ref - before| over the whole tree: an error as a fraction of the step."""
  return (_norm(jax.tree.map(jnp.subtract, params, ref))
          / _norm(jax.tree.map(jnp.subtract, ref, before)))


@pytest.fixture(scope="module")
def xla_steps():
  """{network: (params before, after the XLA float32 step, after the XLA bfloat16 step)}."""
  out = {}
  for network in _NETWORKS:
    model = models.get_model(network, num_classes=10)
    before = steps.create_train_state(model, optax.sgd(0.05), (1, 28, 28, 1), 0).params
    out[network] = (before, _one_step(network, "xla")[0], _one_step(network, "xla", "bfloat16")[0])
  return out


@needs_library
@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("network", _NETWORKS)
def test_a_training_step_through_onednn_matches_xla(network, compute_dtype, xla_steps):
  """The step's parameters against XLA's float32 step, as a fraction of the step's size.

  float32: within 1e-4 (measured 2026-11-29: 0.7-2.1e-6). bfloat16: no farther
  from float32 than 1.5x XLA's own bfloat16 step is (measured: oneDNN 0.042,
  0.201, 0.090 for LeNet-5, ResNet-20, AlexNet-small; XLA 0.042, 0.183, 0.090;
  ResNet-20's batch norm over 8 images amplifies the rounding).
  """
  params, hlo = _one_step(network, "onednn", compute_dtype)
  # Every convolution, forward and backward, is oneDNN's: none is left to XLA.
  assert "onednn_conv_fwd" in hlo and "onednn_conv_bwd_weights" in hlo
  assert "stablehlo.convolution" not in hlo
  before, ref32, xla16 = xla_steps[network]
  error = _distance(params, ref32, before)
  if compute_dtype == "float32":
    assert error < 1e-4, error
  else:
    xla_error = _distance(xla16, ref32, before)
    assert 0 < error < 1.5 * xla_error + 1e-3, (error, xla_error)


def test_xla_leaves_the_step_as_it_was():
  _, hlo = _one_step("lenet5", "xla")
  assert "onednn_conv" not in hlo and "stablehlo.convolution" in hlo


@needs_library
def test_other_backends_keep_lax(monkeypatch):
  monkeypatch.setattr(onednn_conv.jax, "default_backend", lambda: "gpu")
  _, hlo = _one_step("lenet5", "onednn")
  assert "onednn_conv" not in hlo and "stablehlo.convolution" in hlo


def test_without_the_library_onednn_warns_once_and_runs_lax(monkeypatch, tmp_path, caplog):
  monkeypatch.setenv("RESEARCH_ONEDNN_CONV_LIB", str(tmp_path / "missing.so"))
  onednn_conv._load.cache_clear()
  conv_impl._warn_unavailable_once.cache_clear()
  try:
    with caplog.at_level("WARNING"):
      _, hlo = _one_step("lenet5", "onednn")
      _one_step("lenet5", "onednn")
    warnings = [r.getMessage() for r in caplog.records if "conv_impl" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "missing.so does not exist (build it: bash scripts/build_onednn_conv.sh)" in warnings[0]
    assert "onednn_conv" not in hlo and "stablehlo.convolution" in hlo
  finally:
    onednn_conv._load.cache_clear()   # The next caller loads the real library again.
    conv_impl._warn_unavailable_once.cache_clear()


def test_an_unknown_conv_impl_is_one_config_error(tiny_config, tmp_path):
  with pytest.raises(ConfigError, match=r"^config.conv_impl='mkl': choose 'xla' .* or 'onednn'"):
    trainer.validate_config(tiny_config(conv_impl="mkl"))
  with pytest.raises(ConfigError, match=r"^config.conv_impl='mkl'"):
    trainer.train(tiny_config(conv_impl="mkl"), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")  # Stopped before any work.


def _test_metrics(workdir) -> dict:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if "test/loss" in line][-1]


@needs_library
def test_runs_through_onednn_match_xla_and_bfloat16_stays_near_float32(data_dir, tmp_path,
                                                                       tiny_config):
  """48 steps of LeNet-5 through the trainer (test_precision.py's run and bounds).

  float32: oneDNN and XLA differ by rounding only, so the test losses agree to
  1e-3 (measured 2026-11-29: equal to 7 digits, 1.01376 and accuracy 0.6172).
  bfloat16 through oneDNN against float32 through XLA: 0.05 nats of test loss
  (test_precision.py's bound) and 0.06 of accuracy (15 of 256 images), the
  scale of this run's seed-to-seed spread in float32 (measured 2026-11-29,
  seeds 0, 1, 2: test loss 1.014, 0.979, 1.069; accuracy 0.617, 0.652, 0.617;
  oneDNN bf16, seed 0: 0.989 and 0.664). The bfloat16 run then resumes with
  conv_impl="xla" (a resumable key) for 8 steps.
  """
  runs = {}
  for impl, dtype in (("xla", "float32"), ("onednn", "float32"), ("onednn", "bfloat16")):
    workdir = tmp_path / f"{impl}_{dtype}"
    config = tiny_config(total_steps=48, eval_every_steps=48, checkpoint_every_steps=48,
                         conv_impl=impl, compute_dtype=dtype)
    trainer.train_and_evaluate(config, str(workdir))
    runs[impl, dtype] = _test_metrics(workdir)
  ref, ours, bf16 = runs["xla", "float32"], runs["onednn", "float32"], runs["onednn", "bfloat16"]
  assert abs(ours["test/loss"] - ref["test/loss"]) < 1e-3
  assert abs(ours["test/accuracy"] - ref["test/accuracy"]) <= 2 / 256
  assert abs(bf16["test/loss"] - ref["test/loss"]) < 0.05
  assert abs(bf16["test/accuracy"] - ref["test/accuracy"]) < 0.06
  assert bf16["test/loss"] != ours["test/loss"]  # bf16 did change the arithmetic.
  resumed = tiny_config(total_steps=56, eval_every_steps=56, checkpoint_every_steps=56,
                        conv_impl="xla", compute_dtype="bfloat16")
  trainer.train_and_evaluate(resumed, str(tmp_path / "onednn_bfloat16"))
  assert final_params(str(tmp_path / "onednn_bfloat16"))[0] == 56


_MESH_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import NamedSharding, PartitionSpec as P
    from research import models
    from research.models import conv_impl
    from research.train import steps
    from tests.test_conv_impl import _distance
    assert jax.device_count() == 2
    model = models.get_model("resnet20", num_classes=10)
    tx = optax.sgd(0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = {{"image": rng.integers(0, 256, (8, 28, 28, 1), dtype=np.uint8),
              "label": rng.integers(0, 10, 8).astype(np.int32)}}
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    for impl in ("xla", "onednn"):
      with conv_impl.use(impl):
        state = steps.create_train_state(model, tx, (1, 28, 28, 1), 0)
        step = steps.make_train_step(model, tx, mean=(0.5,), std=(0.25,))
        one, _ = jax.jit(step)(state, batch)
        sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
        two_step = jax.jit(step, out_shardings=NamedSharding(mesh, P()))
        hlo = two_step.lower(state, sharded).compile().as_text()
        assert ("onednn_conv_fwd" in hlo) == (impl == "onednn")
        two, _ = two_step(state, sharded)
      print(impl, _distance(two.params, one.params, state.params), hlo.count("all-gather"))
""")


@needs_library
def test_two_devices_compute_what_one_does():
  """ResNet-20's step with the batch split over 2 forced host devices against 1 device.

  Batch norm's statistics and the gradients are summed in another order across
  devices, so XLA's own step moves too (measured 2026-11-29: 0.679% of the
  step's size for XLA, 0.679% for oneDNN). Neither compiled step gathers
  anything: oneDNN's calls run per shard (research/ops/onednn_conv_rules.py;
  before that rule the activations were all-gathered and the distance was 0.36%).
  """
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  result = subprocess.run([sys.executable, "-c", _MESH_SCRIPT.format(root=ROOT)], env=env,
                          capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  runs = {impl: (float(error), int(gathers)) for impl, error, gathers in (
      line.split() for line in result.stdout.strip().splitlines()[-2:])}
  (xla, xla_gathers), (onednn, onednn_gathers) = runs["xla"], runs["onednn"]
  assert onednn < max(2 * xla, 1e-4), (onednn, xla)
  assert onednn_gathers == xla_gathers == 0, runs
