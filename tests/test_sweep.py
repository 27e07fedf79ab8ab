"""Sweeps: declaring them, planning their directories, the local launcher, the summary."""

import csv
import json
import os
import shlex
import subprocess
import sys

import pytest

from research.launch import experiment, sweep, trial

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_experiment.py")


def launch(*args, timeout=600):
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=timeout)


# --- Declaring ------------------------------------------------------------


def test_product_zip_and_fixed():
  runs = sweep.product({"optimizer.learning_rate": [0.1, 0.01], "batch_size": [32, 64]},
                       sweep.fixed({"optimizer.name": "sgd"}, num_epochs=2.0))
  assert len(runs) == 4
  assert runs[0] == {"optimizer.learning_rate": 0.1, "batch_size": 32,
                     "optimizer.name": "sgd", "num_epochs": 2.0}
  assert {(r["optimizer.learning_rate"], r["batch_size"]) for r in runs} == {
      (0.1, 32), (0.1, 64), (0.01, 32), (0.01, 64)}
  zipped = sweep.zip_({"a": [1, 2], "b": [3, 4]}, [{"c": 5}, {"c": 6}])
  assert zipped == [{"a": 1, "b": 3, "c": 5}, {"a": 2, "b": 4, "c": 6}]
  assert len(sweep.product(zipped, {"seed": [0, 1, 2]})) == 6
  with pytest.raises(ValueError, match="one length"):
    sweep.zip_({"a": [1, 2], "b": [3]})
  with pytest.raises(TypeError, match="give a list of values"):
    sweep.product({"a": 0.1})


def test_run_names_show_only_what_varies():
  runs = sweep.product({"optimizer.learning_rate": [0.1, 0.01], "model.kwargs.dropout": [0.5]},
                       sweep.fixed(num_epochs=1.0))
  varying = sweep._varying_keys(runs)
  assert varying == ["optimizer.learning_rate"]
  assert [sweep.run_name(r, varying) for r in runs] == ["learning_rate=0.1",
                                                        "learning_rate=0.01"]
  assert sweep.run_name({"a.x": 1, "b.x": 2}, ["a.x", "b.x"]) == "a.x=1,b.x=2"


def test_every_run_is_validated_before_anything_is_written(tmp_path):
  module = experiment.load_module(TINY)
  module.sweep = lambda arg: [{"optimizer.learning_rate": 0.1}, {"optimizer.lr": 0.1}]
  with pytest.raises(ValueError, match="no key 'optimizer.lr'"):
    sweep.plan(module, TINY, "", str(tmp_path / "s"))
  module.sweep = lambda arg: [{"batch_size": 32}, {"batch_size": "big"}]
  with pytest.raises(ValueError, match="batch_size='big'"):
    sweep.plan(module, TINY, "", str(tmp_path / "s"))
  module.sweep = lambda arg: [{"batch_size": 32}, {"batch_size": -32}]
  with pytest.raises(ValueError, match="config.batch_size=-32: must be > 0"):
    sweep.plan(module, TINY, "", str(tmp_path / "s"))
  assert not (tmp_path / "s").exists()


def test_plan_records_overrides_and_refuses_a_changed_sweep(tmp_path):
  module = experiment.load_module(TINY)
  workdirs = sweep.plan(module, TINY, "", str(tmp_path), extra={"seed": 3})
  assert [os.path.basename(w) for w in workdirs] == ["learning_rate=0.02", "learning_rate=0.05"]
  spec = trial.read_spec(workdirs[0])
  assert spec["overrides"] == {"optimizer.learning_rate": 0.02, "log_every_steps": 6, "seed": 3}
  assert "--config.seed=3" in trial.launch_command(spec, workdirs[0])
  with pytest.raises(ValueError, match="holds a run with other settings"):
    sweep.plan(module, TINY, "", str(tmp_path), extra={"seed": 4})
  with pytest.raises(ValueError, match="is swept by the experiment"):
    sweep.plan(module, TINY, "", str(tmp_path), extra={"optimizer.learning_rate": 1.0})


def test_the_rerun_command_is_shell_quoted(tmp_path):
  # Before: pasted into a shell, this workdir ran `touch X` after the command.
  workdir = str(tmp_path / "run; touch X")
  spec = {"config_file": os.path.join(trial.ROOT, "experiments", "lenet.py"), "arg": "",
          "overrides": {"model.kwargs.activation": "scaled tanh", "seed": 3}}
  command = trial.launch_command(spec, workdir)
  assert shlex.split(command) == [
      "python", "launch.py", "--config=experiments/lenet.py", f"--workdir={workdir}",
      "--config.model.kwargs.activation=scaled tanh", "--config.seed=3"]
  printf = command.replace("python launch.py", "printf '%s\\n'", 1)  # Each argument on a line.
  echoed = subprocess.run(["bash", "-c", printf], cwd=tmp_path, capture_output=True, text=True,
                          check=True)
  assert echoed.stdout.splitlines()[1] == f"--workdir={workdir}"
  assert not (tmp_path / "X").exists()


def test_command_line_overrides_are_the_differences_from_get_config():
  module = experiment.load_module(TINY)
  config = module.get_config(None)
  config.optimizer.momentum, config.seed = 0.5, 7
  assert sweep.command_line_overrides(module, "", config) == {"optimizer.momentum": 0.5,
                                                              "seed": 7}


def test_lenet_declares_a_sweep():
  module = experiment.load_module(os.path.join(ROOT, "experiments", "lenet.py"))
  runs = module.sweep(None)
  assert len(runs) == 6 and all(r["num_epochs"] == 2.0 for r in runs)
  for run in runs:
    experiment.validate(module, trial.make_config(module, "", run))


# --- The local launcher, end to end ---------------------------------------


def test_local_sweep_survives_a_failed_run_and_a_rerun_skips_finished_ones(data_dir, tmp_path):
  workdir = str(tmp_path / "sweep")
  result = launch(f"--config={TINY}:fail", "--sweep", f"--workdir={workdir}",
                  "--config.total_steps=12")
  assert result.returncode == 1, result.stderr[-3000:]  # A failed run fails the sweep.
  assert "1 of 2 runs did not finish (learning_rate=1e+30)" in result.stderr
  out = result.stdout
  assert "2 to run" in out and "1 of 2 runs done" in out, out
  good, bad = (os.path.join(workdir, n) for n in json.load(open(f"{workdir}/sweep.json"))["runs"])
  assert trial.read_status(good)["status"] == "done"
  assert os.path.exists(os.path.join(good, "report.md"))
  assert "--config.total_steps=12" in open(os.path.join(good, "report.md")).read()
  failed = trial.read_status(bad)
  assert failed["status"] == "failed" and "FloatingPointError" in failed["reason"]
  assert "FloatingPointError" in open(os.path.join(bad, "error.txt")).read()
  # The table: one row per run, the failure with its reason; the plot and CSV beside it.
  assert "| done | " in out and "| failed | — | — | — | FloatingPointError" in out
  for name in ("summary.md", "summary.csv", "summary.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  rows = list(csv.DictReader(open(os.path.join(workdir, "summary.csv"))))
  assert [r["status"] for r in rows] == ["done", "failed"]

  # Rerun: the finished run is skipped (its report is kept), the failed one runs again.
  mtime = os.path.getmtime(os.path.join(good, "report.md"))
  result = launch(f"--config={TINY}:fail", "--sweep", f"--workdir={workdir}",
                  "--config.total_steps=12")
  assert result.returncode == 1, result.stderr[-3000:]
  assert "1 already finished, 1 to run" in result.stdout
  assert os.path.getmtime(os.path.join(good, "report.md")) == mtime

  # The summary alone, from the directories: the same table.
  os.remove(os.path.join(workdir, "summary.md"))
  result = launch("--sweep_summary", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert out[out.index("| run |"):].split("\n\n")[0].strip() in result.stdout
  assert os.path.exists(os.path.join(workdir, "summary.md"))


def test_summary_of_a_directory_that_is_no_sweep(tmp_path):
  result = launch("--sweep_summary", f"--workdir={tmp_path}")
  assert result.returncode != 0 and "sweep.json is missing" in result.stderr
