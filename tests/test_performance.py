"""The project's speed settings change the speed of a training step, not its numbers."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Three SGD steps of the flax-example CNN (convolutions, pooling, dense layers);
# prints the XLA flags the process ran with, the losses and a parameter sample.
_STEPS = """
import json, os
import numpy as np, optax, jax
from research import models
from research.train import steps
model = models.get_model("flax_example_cnn", num_classes=10)
tx = optax.sgd(0.05, momentum=0.9)
state = steps.create_train_state(model, tx, (1, 28, 28, 1), seed=0)
step = jax.jit(steps.make_train_step(model, tx, mean=(0.5,), std=(0.25,)))
rng = np.random.default_rng(0)
losses = []
for _ in range(3):
  batch = {"image": rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, 16).astype(np.int32)}
  state, metrics = step(state, batch)
  losses.append(float(metrics["loss"]))
params = [np.asarray(p).ravel()[:50].tolist() for p in jax.tree.leaves(state.params)]
print(json.dumps({"xla_flags": os.environ.get("XLA_FLAGS", ""), "losses": losses,
                  "params": params}))
"""


def _run(env_overrides: dict) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "RESEARCH_XLA_DEFAULTS")}
  result = subprocess.run([sys.executable, "-c", _STEPS], cwd=ROOT, capture_output=True,
                          text=True, env={**env, **env_overrides}, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_project_xla_flags_leave_the_training_step_unchanged():
  ours = _run({})
  plain = _run({"RESEARCH_XLA_DEFAULTS": "0"})
  assert "ynn_fusion_type" in ours["xla_flags"] and "ynn" not in plain["xla_flags"]
  np.testing.assert_allclose(ours["losses"], plain["losses"], rtol=1e-5)
  for a, b in zip(ours["params"], plain["params"]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
