"""benchmarks/gpu_train_step.py: its one line without a GPU, and its whole code path on
the CPU with tiny shapes (LeNet-5, batch 8: a test of the code, not GPU numbers)."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _benchmark(*args, **env) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "benchmarks.gpu_train_step", *args], cwd=ROOT,
                        capture_output=True, text=True, env={**os.environ, **env}, timeout=600)


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
  result = _benchmark("--frameworks=jax", JAX_PLATFORMS="cpu")
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.startswith("No GPU: JAX ") and result.stdout.count("\n") == 1
  assert "bash scripts/setup.sh --gpu" in result.stdout


def test_unknown_dtypes_stop_before_any_work():
  result = _benchmark("--dtypes=float16")
  assert result.returncode == 1 and "Unknown --frameworks/--dtypes values ['float16']" in (
      result.stderr)


def _cpu_rows(frameworks: str) -> tuple[str, list]:
  result = _benchmark("--device=cpu", "--network=lenet5", "--batch_size=8", "--steps=1",
                      "--timings=1", "--repeats=1", f"--frameworks={frameworks}")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = re.findall(r"^\| lenet5 \| 8 \| (\w+) \| (\w+) \| ([\d,]+) \| ([\d.]+) \| ", result.stdout,
                    re.M)
  assert all(float(ms) > 0 for *_, ms in rows)
  assert "these are not GPU numbers" in result.stdout
  return result.stdout, sorted((d, f) for d, f, *_ in rows)


def test_its_jax_code_path_runs_end_to_end_on_the_cpu():
  _, rows = _cpu_rows("jax")
  assert rows == [("bfloat16", "jax"), ("float32", "jax")]


def test_its_pytorch_peer_runs_beside_jax_on_the_cpu():
  # PyTorch is the benchmarks' optional peer (requirements-bench.txt), not set up by
  # scripts/setup.sh: without it this one test has nothing to run.
  pytest.importorskip("torch", reason="pip install -r requirements-bench.txt")
  stdout, rows = _cpu_rows("jax,torch")
  assert rows == [("bfloat16", "jax"), ("bfloat16", "torch"),
                  ("float32", "jax"), ("float32", "torch")]
  assert "bfloat16: JAX/PyTorch" in stdout
