"""Sweeps and runs on a real Slurm: the single-node cluster of scripts/slurm_cluster.sh.

The cluster starts once per test session (and stops at its end, unless it was
already running). Needs `bash scripts/setup.sh --with-slurm` and root; without
the packages these tests are skipped, except under CI, where they fail.
Requeued jobs wait Slurm's `cred_expire` before they start again, so the
preemption test (and the two-task job) are marked slow: `pytest -m slow`.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from research.launch import experiment, trial
from research.train import checkpoint, trainer
from tests.conftest import make_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_experiment.py")
SCRIPT = os.path.join(ROOT, "scripts", "slurm_cluster.sh")


def _cluster_is_up() -> bool:
  return subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def slurm():
  """The local Slurm cluster, up for the whole session."""
  if not shutil.which("slurmctld"):
    if os.environ.get("CI"):
      pytest.fail("Slurm is not installed; CI runs `bash scripts/setup.sh --with-slurm`.")
    pytest.skip("Slurm is not installed: bash scripts/setup.sh --with-slurm")
  if os.geteuid() != 0:
    pytest.skip("The local Slurm cluster needs root (it starts munge, MariaDB, Slurm).")
  was_up = _cluster_is_up()
  # A short requeue delay keeps the (slow) preemption test near a minute.
  env = {**os.environ, "RESEARCH_SLURM_CRED_EXPIRE": "30"}
  subprocess.run(["bash", SCRIPT, "start"], check=True, env=env, timeout=180)
  yield
  if not was_up:
    subprocess.run(["bash", SCRIPT, "stop"], check=True, timeout=120)


def launch(*args, timeout=600):
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def wait_until(predicate, seconds: float, what: str):
  deadline = time.time() + seconds
  while time.time() < deadline:
    if predicate():
      return
    time.sleep(0.5)
  raise AssertionError(f"Timed out after {seconds} s waiting for {what}.")


def straight_params(tmp_path, arg: str, **overrides):
  """Final params of the same run, uninterrupted, in this process."""
  module = experiment.load_module(TINY)
  config = trial.make_config(module, arg, overrides)
  workdir = str(tmp_path / f"straight_{arg}")
  trainer.train_and_evaluate(config, workdir)  # The plain trainer: no sleeping steps.
  return checkpoint.load_arrays(workdir)


def assert_same_params(a, b, exact=True):
  check = (np.testing.assert_array_equal if exact else
           lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5))
  jax.tree.map(check, a["params"], b["params"])


# --- Default tests ---------------------------------------------------------


def test_preemption_checkpoints_the_current_step_and_resumes_exactly(data_dir, tmp_path,
                                                                     monkeypatch):
  """The loop's side of a warning signal, without Slurm: stop at step 7, resume."""
  batches = trainer.pipeline.train_batches

  def warn_at_step_7(*args, **kwargs):
    for i, batch in enumerate(batches(*args, **kwargs), start=args[3] + 1):
      if i == 7:
        trainer.request_preemption()  # What SlurmTrial's signal handler calls.
      yield batch
  config = make_tiny_config(total_steps=12)
  monkeypatch.setattr(trainer, "_preemption_requested", False)  # And False again afterwards.
  monkeypatch.setattr(trainer.pipeline, "train_batches", warn_at_step_7)
  with pytest.raises(trainer.Preempted, match="Preempted at step 7 of 12"):
    trainer.train_and_evaluate(config, str(tmp_path / "preempted"))
  assert checkpoint.load_arrays(str(tmp_path / "preempted"))[0] == 7  # Not 5, the last periodic.
  trainer._preemption_requested = False  # A requeued job is a new process: no request yet.
  monkeypatch.setattr(trainer.pipeline, "train_batches", batches)
  trainer.train_and_evaluate(config, str(tmp_path / "preempted"))
  trainer.train_and_evaluate(config, str(tmp_path / "straight"))
  assert_same_params(checkpoint.load_arrays(str(tmp_path / "preempted"))[1],
                     checkpoint.load_arrays(str(tmp_path / "straight"))[1])



def test_job_array_with_a_failing_run(slurm, data_dir, tmp_path):
  workdir = str(tmp_path / "sweep")
  result = launch(f"--config={TINY}:fail", "--sweep", "--launcher=slurm",
                  f"--workdir={workdir}", "--config.total_steps=12")
  assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]  # One failed.
  assert "Submitted 2 Slurm job(s)" in result.stdout
  good, bad = (os.path.join(workdir, n) for n in json.load(open(f"{workdir}/sweep.json"))["runs"])
  assert trial.read_status(good)["status"] == "done"
  assert "_" in trial.read_status(good)["job"]  # An array task: <array id>_<index>.
  failed = trial.read_status(bad)
  assert failed["status"] == "failed" and "FloatingPointError" in failed["reason"]
  assert "| failed | — | — | — | FloatingPointError" in result.stdout
  assert os.path.exists(os.path.join(workdir, "summary.png"))


def test_killed_job_resumes_from_its_checkpoint(slurm, data_dir, tmp_path):
  """A single run (no sweep) on Slurm, cancelled mid-way, then submitted again."""
  workdir = str(tmp_path / "run")
  args = [f"--config={TINY}:slow", f"--workdir={workdir}", "--launcher=slurm"]
  first = subprocess.Popen([sys.executable, "launch.py", *args], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  wait_until(lambda: os.path.isdir(os.path.join(workdir, "checkpoints", "20")), 240,
             "the first checkpoint")
  job = trial.read_status(workdir)["job"]
  # SIGKILL, as a crash or the out-of-memory killer would: no handler runs.
  subprocess.run(["scancel", "--signal=KILL", job], check=True)
  out = first.communicate(timeout=120)[0]
  status = trial.read_status(workdir)
  assert status["status"] == "failed" and "without a result" in status["reason"], (status, out)
  assert first.returncode != 0 and "The run failed: Slurm job" in out, (first.returncode, out)
  killed_at, _ = checkpoint.load_arrays(workdir)
  assert 20 <= killed_at < 60

  result = launch(*args)  # Same workdir: resumes.
  status = trial.read_status(workdir)
  assert result.returncode == 0, (status, result.stdout, result.stderr[-3000:])
  assert status["status"] == "done" and status["job"] != job, status
  log = open(os.path.join(workdir, "slurm", status["job"], f"{status['job']}_0_log.err")).read()
  assert f"Restoring checkpoint of step {killed_at}" in log, (killed_at, log[-3000:])
  step, resumed = checkpoint.load_arrays(workdir)
  assert step == 60
  assert_same_params(resumed, straight_params(tmp_path, "slow")[1])


# --- Slow: requeue after Slurm's warning signal; several tasks ------------


@pytest.mark.slow
def test_warning_signal_checkpoints_requeues_and_resumes(slurm, data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  args = [f"--config={TINY}:slow", f"--workdir={workdir}", "--launcher=slurm"]
  run = subprocess.Popen([sys.executable, "launch.py", *args], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  wait_until(lambda: os.path.isdir(os.path.join(workdir, "checkpoints", "20")), 240,
             "the first checkpoint")
  job = trial.read_status(workdir)["job"]
  # What Slurm sends `slurm_signal_delay_s` before the time limit.
  subprocess.run(["scancel", "--signal=USR2", job], check=True)
  wait_until(lambda: trial.read_status(workdir)["status"] == "preempted", 60, "preemption")
  preempted_at = int(trial.read_status(workdir)["reason"].split("step ")[1].split()[0])
  assert 20 < preempted_at < 60  # Checkpointed where it was, not at the last periodic save.
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(preempted_at)))
  out = run.communicate(timeout=400)[0]  # The requeued job runs to the end.
  assert run.returncode == 0, out[-3000:]
  status = trial.read_status(workdir)
  assert status["status"] == "done" and status["job"] == job  # The same job, requeued.
  log = open(os.path.join(workdir, "slurm", job, f"{job}_0_log.err")).read()
  assert f"Restoring checkpoint of step {preempted_at}" in log
  # No step repeated or skipped: the params are the uninterrupted run's, bit for bit,
  # and each logged step appears once.
  assert_same_params(checkpoint.load_arrays(workdir)[1], straight_params(tmp_path, "slow")[1])
  steps = [json.loads(l)["step"] for l in open(os.path.join(workdir, "metrics.jsonl"))
           if "train/loss" in l]
  assert len(steps) == len(set(steps))


@pytest.mark.slow
def test_two_task_job_trains_what_one_process_does(slurm, data_dir, tmp_path):
  workdir = str(tmp_path / "two")
  result = launch(f"--config={TINY}", f"--workdir={workdir}", "--launcher=slurm",
                  "--slurm_tasks_per_node=2", "--distributed", "--config.total_steps=6")
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert trial.read_status(workdir)["status"] == "done"
  assert '"process_count": 2' in open(os.path.join(workdir, "run_info.json")).read()
  assert_same_params(checkpoint.load_arrays(workdir)[1],
                     straight_params(tmp_path, "", total_steps=6)[1], exact=False)


def test_several_tasks_need_distributed(tmp_path):
  result = launch(f"--config={TINY}", f"--workdir={tmp_path}/w", "--launcher=slurm",
                  "--slurm_tasks_per_node=2")
  assert result.returncode != 0 and "need --distributed" in result.stderr
