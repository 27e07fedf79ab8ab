"""Multi-host without Slurm: two local processes joined by jax.distributed train as one.

Each process reads half of every batch and owns one CPU device of a two-device
mesh; the gradients meet in a cross-process all-reduce (gloo). The result must
be the single-process one, and the work directory must be written once.
"""

import os
import subprocess
import sys

import jax
import numpy as np

from research.train import checkpoint, trainer
from tests.conftest import free_port, make_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_experiment.py")


def test_two_processes_train_what_one_does(data_dir, tmp_path):
  two = str(tmp_path / "two")
  address = f"127.0.0.1:{free_port()}"
  processes = [subprocess.Popen(
      [sys.executable, "launch.py", f"--config={TINY}", f"--workdir={two}",
       "--config.total_steps=6", "--distributed", f"--coordinator_address={address}",
       "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  for p, out in zip(processes, outputs):
    assert p.returncode == 0, out[-3000:]
  assert "Report:" in outputs[0] and "Report:" not in outputs[1]  # Process 0 reports.
  assert "1024 training examples" in outputs[1]  # Both read the split; each feeds its half.

  one = str(tmp_path / "one")
  trainer.train_and_evaluate(make_tiny_config(total_steps=6), one)
  step_one, state_one = checkpoint.load_arrays(one)
  step_two, state_two = checkpoint.load_arrays(two)
  assert step_one == step_two == 6
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               state_one["params"], state_two["params"])
  assert '"process_count": 2' in open(os.path.join(two, "run_info.json")).read()
  lines = open(os.path.join(two, "metrics.jsonl")).read().splitlines()
  assert len(lines) == len(set(lines)) and len(lines) > 0  # Written by one process only.


def test_distributed_flags_must_come_together(tmp_path):
  result = subprocess.run(
      [sys.executable, "launch.py", f"--config={TINY}", f"--workdir={tmp_path}/w",
       "--distributed", "--num_processes=2"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})
  assert result.returncode != 0
  assert "pass all of --coordinator_address" in result.stderr
  assert not os.path.exists(tmp_path / "w")
