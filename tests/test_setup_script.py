"""scripts/setup.sh's options, through --dry-run (prints the install commands, runs none)."""

import os
import re
import stat
import subprocess

import pytest

from tests.conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "setup.sh")


def _pinned_jax() -> str:
  with open(os.path.join(ROOT, "requirements.txt")) as f:
    return re.search(r"^jax\[cpu\]==([\d.]+)", f.read(), re.M).group(1)


def _setup(*args, path_prefix: str | None = None) -> subprocess.CompletedProcess:
  env = dict(os.environ)
  if path_prefix:
    env["PATH"] = f"{path_prefix}:{env['PATH']}"
  return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=env,
                        timeout=60)


def _pip_lines(out: str) -> list[str]:
  return [line for line in out.splitlines() if line.startswith("+ python -m pip install")]


def test_the_default_installs_the_cpu_requirements_only():
  result = _setup("--dry-run")
  assert result.returncode == 0, result.stderr
  pip = _pip_lines(result.stdout)
  assert len(pip) == 1 and pip[0].endswith("-r requirements.txt")
  assert "cuda" not in result.stdout


@pytest.mark.parametrize("flag, build", [("--gpu", "cuda12"), ("--gpu=cuda12", "cuda12"),
                                         ("--gpu=cuda13", "cuda13")])
def test_gpu_adds_the_cuda_build_of_the_pinned_jax(flag, build):
  result = _setup(flag, "--dry-run")
  assert result.returncode == 0, result.stderr
  pip = _pip_lines(result.stdout)
  assert len(pip) == 2 and pip[0].endswith("-r requirements.txt")
  assert pip[1].endswith(f" jax[{build}]=={_pinned_jax()}")


@pytest.mark.parametrize("args, message", [
    (("--gpu=cuda11",), "Unknown CUDA build cuda11; use --gpu=cuda12 or --gpu=cuda13."),
    (("--cuda",), "Unknown option --cuda; options: --with-slurm, --gpu"),
])
def test_a_bad_option_is_one_line_and_status_2_before_any_work(args, message):
  result = _setup(*args, "--dry-run")
  assert result.returncode == 2
  assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
  assert result.stdout == ""


def test_missing_debian_packages_are_installed_with_apt(tmp_path):
  fake_dpkg = tmp_path / "dpkg"  # Every package reads as not installed.
  fake_dpkg.write_text("#!/bin/sh\nexit 1\n")
  fake_dpkg.chmod(fake_dpkg.stat().st_mode | stat.S_IEXEC)
  result = _setup("--with-slurm", "--dry-run", path_prefix=str(tmp_path))
  assert result.returncode == 0, result.stderr
  install = [line for line in result.stdout.splitlines() if "apt-get install" in line]
  assert len(install) == 1
  for package in ("dataset-fashion-mnist", "slurmctld", "slurmd", "munge"):
    assert f" {package}" in install[0]
