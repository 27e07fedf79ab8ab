"""launch.py: bad flags stop before any work with an error naming the key."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args, cwd=ROOT):
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args],
                        capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("flag,match", [
    ("--config.no_such_key=1", "no_such_key"),
    ("--config.optimizer.no_such_key=1", "no_such_key"),
    ("--config.batch_size=abc", "batch_size"),
    ("--config.batch_size=0", "config.batch_size=0: must be > 0"),
    ("--config.model.name=resnet9000", "config.model.name='resnet9000': unknown model"),
    ("--config.optimizer.learning_rate=-0.1", "config.optimizer.learning_rate=-0.1"),
])
def test_bad_flags_stop_before_any_work(flag, match, tmp_path):
  workdir = tmp_path / "run"
  result = launch("--config=experiments/lenet.py", f"--workdir={workdir}", flag)
  assert result.returncode != 0
  assert match in result.stderr + result.stdout
  assert not workdir.exists()


def test_unknown_experiment_argument_and_file(tmp_path):
  result = launch("--config=experiments/lenet.py:nope", f"--workdir={tmp_path}/w")
  assert result.returncode != 0 and "Unknown argument 'nope'" in result.stderr
  result = launch("--config=experiments/missing.py")
  assert result.returncode != 0 and "missing.py" in result.stderr


def test_list_and_summary():
  result = launch("--list")
  assert result.returncode == 0 and "experiments/lenet.py" in result.stdout
  result = launch("--summary=lenet5", "--input_shape=28,28,1")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "61,706" in result.stdout and "C3" in result.stdout
