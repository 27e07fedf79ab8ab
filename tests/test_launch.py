"""launch.py: bad flags stop before any work with an error naming the key."""

import json
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


def test_experiment_runs_end_to_end_and_writes_its_report(data_dir, tmp_path):
  workdir = tmp_path / "lenet"
  result = launch("--config=experiments/lenet.py", f"--workdir={workdir}",
                  "--config.data.train_split=train[:2048]", "--config.data.eval_split=test[:512]",
                  "--config.num_epochs=2", "--config.eval_train_examples=512",
                  "--config.model.kwargs.dropout=0.1")
  assert result.returncode == 0, result.stderr[-3000:]
  report = (workdir / "report.md").read_text()
  assert "python launch.py --config=experiments/lenet.py" in report
  assert "| LeCun et al. 1998, §II.B |" in report and "60,806" in report  # Free parameters.
  assert "test/accuracy" in report and "train_eval/accuracy" in report
  assert "[holds] LeCun et al. 1998" in result.stdout
  claims = json.loads((workdir / "claims.json").read_text())
  assert {c["source"] for c in claims} >= {"LeCun et al. 1998, §II.B"}
  final = json.loads((workdir / "metrics.json").read_text())  # What other reports compare with.
  assert f"| num_params | {final['num_params']:,} |" in report and 0 < final["test/accuracy"] <= 1
  # --report_only writes the report again from metrics.json, keeping the run's command.
  rewritten = launch("--config=experiments/lenet.py", f"--workdir={workdir}", "--report_only")
  assert rewritten.returncode == 0, rewritten.stderr[-3000:]
  report = (workdir / "report.md").read_text()
  assert "\n# report rewritten by: " in report and "--config.num_epochs=2" in report
  assert json.loads((workdir / "metrics.json").read_text()) == final
  # Running it again resumes the finished run instead of training again.
  again = launch("--config=experiments/lenet.py", f"--workdir={workdir}",
                 "--config.data.train_split=train[:2048]", "--config.data.eval_split=test[:512]",
                 "--config.num_epochs=2", "--config.eval_train_examples=512",
                 "--config.model.kwargs.dropout=0.1")
  assert again.returncode == 0 and "Restoring checkpoint of step 32" in again.stderr


def test_every_model_field_is_a_flag_whatever_its_registration():
  # nin_small is a functools.partial of NiN: its fields used to be missing
  # from config.model.kwargs, so this was "unknown config key".
  result = launch("--config=experiments/nin.py", "--config.model.kwargs.dropout=0.3",
                  "--print_config")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "dropout: 0.3" in result.stdout and "widths:" in result.stdout


@pytest.mark.parametrize("args,line", [
    (["--config=experiments/lenet.py", "--config.batch_size=0"],
     "FATAL usage error: config.batch_size=0: must be > 0."),
    (["--config=experiments/lenet.py", "stray"], "FATAL usage error: Unexpected arguments"),
    (["--summary=config"], "FATAL usage error: --summary=config needs --config."),
])
def test_usage_errors_print_their_line_not_the_flag_help(args, line, tmp_path):
  # Before: absl printed the docstring and the help of every flag (~90 lines) first.
  result = launch(*args, f"--workdir={tmp_path}/w")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert lines[0].startswith(line) and len(lines) == 2, result.stderr[-3000:]


def test_a_workdir_holding_another_run_is_one_line_without_a_traceback(tmp_path):
  from research.train import config as config_lib
  stored = config_lib.base_config()
  stored.data.name = "mnist_5k"
  (tmp_path / "config.json").write_text(stored.to_json_best_effort())
  result = launch("--config=experiments/lenet.py", f"--workdir={tmp_path}")
  assert result.returncode == 1
  assert "holds a run with another config" in result.stderr
  assert "Traceback" not in result.stderr


def test_a_workdir_that_is_a_file_is_named_as_such(tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("mine")
  result = launch("--config=experiments/lenet.py", f"--workdir={path}")
  # Before: "FileExistsError: [Errno 17] File exists", from deep inside the run.
  assert result.returncode == 1
  assert f"--workdir={path} is a file, not a directory" in result.stderr
  assert path.read_text() == "mine"


def test_a_dataset_that_is_not_here_is_one_line_saying_how_to_get_it(tmp_path):
  # Before: a FileNotFoundError traceback from deep inside the data layer.
  result = launch("--config=experiments/lenet.py", f"--workdir={tmp_path}/w",
                  "--config.data.name=cifar10", f"--config.data.data_dir={tmp_path}")
  assert result.returncode == 1
  assert "Dataset 'cifar10' is not prepared in" in result.stderr
  assert "To fix:" in result.stderr and "Traceback" not in result.stderr
  assert not os.path.exists(f"{tmp_path}/w/config.json")
