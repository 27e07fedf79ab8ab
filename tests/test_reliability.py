"""Reliability (issue 13 §1-§4): a run's record, checkpoint integrity, the
non-finite stop, and runs that would do nothing.

Each test is one case of the issue; all use the tiny LeNet-5 config of
test_train.py (1,024 Fashion-MNIST images, batch 32), so a run is seconds.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from research.launch import experiment
from research.train import checkpoint, config as config_lib, trainer, workdir as workdir_lib
from tests.conftest import ROOT, final_params, make_tiny_config

TINY = os.path.join(ROOT, "tests", "tiny_experiment.py")


def short_config(**overrides):
  """12 steps, a checkpoint every 4 (4, 8, 12 all kept), constant learning rate."""
  config = make_tiny_config(**{"total_steps": 12, "checkpoint_every_steps": 4,
                          "log_every_steps": 4, "eval_every_steps": 0, **overrides})
  config.optimizer.schedule = "constant"
  return config


def snapshot(workdir) -> dict:
  """Every file of a workdir outside checkpoints/ and tensorboard/: name -> bytes."""
  files = {}
  for name in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, name)
    if os.path.isfile(path):
      with open(path, "rb") as f:
        files[name] = f.read()
  return files


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory) -> str:
  """A finished 12-step run (checkpoints 4, 8, 12); tests copy it, never change it."""
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  trainer.train_and_evaluate(short_config(), workdir)
  return workdir


def copy_of(run: str, tmp_path) -> str:
  workdir = str(tmp_path / "copy")
  shutil.copytree(run, workdir)
  return workdir


# --- §1: a work directory's record is never overwritten or mixed -----------


def test_a_rerun_that_fails_leaves_the_record_as_it_was(finished_run, tmp_path):
  workdir = copy_of(finished_run, tmp_path)
  before = snapshot(workdir)
  config = short_config()
  config.data.eval_split = "validation"  # Fashion-MNIST has none.
  with pytest.raises(Exception, match="validation"):
    trainer.train_and_evaluate(config, workdir)
  assert snapshot(workdir) == before


@pytest.mark.parametrize("change,keys", [
    ({"data.name": "mnist_5k", "data.train_split": "train[:1024]"}, ["data.name"]),
    ({"model.kwargs.activation": "tanh"}, ["model.kwargs.activation"]),
    ({"model.name": "flax_example_cnn", "model.kwargs.dropout": 0.5},
     ["model.kwargs.dropout", "model.name"]),
    ({"data.classes": (0, 1, 2)}, ["data.classes"]),
])
def test_a_rerun_with_another_config_stops_naming_the_keys(finished_run, tmp_path, change,
                                                            keys):
  workdir = copy_of(finished_run, tmp_path)
  before = snapshot(workdir)
  config = short_config(total_steps=16)  # total_steps may change; the others may not.
  for key, value in change.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  with pytest.raises(ValueError, match="holds a run with another config") as error:
    trainer.train_and_evaluate(config, workdir)
  message = str(error.value)
  for key in keys:
    assert key in message
  assert "total_steps (" not in message  # Listed only among the keys that may change.
  assert "new --workdir" in message
  assert snapshot(workdir) == before


def test_a_workdir_with_the_dataset_statistics_spelled_out_resumes_under_the_default():
  # Workdirs written before configs took a dataset's own statistics by default
  # (data.mean = ()) store the numbers; they are the same run.
  config = config_lib.base_config()
  stored = json.loads(config.to_json_best_effort())
  stored["data"]["mean"], stored["data"]["std"] = [0.2860], [0.3530]
  assert workdir_lib.differences(stored, config) == {}
  stored["data"]["mean"] = [0.5]
  assert list(workdir_lib.differences(stored, config)) == ["data.mean"]


def test_keys_that_may_change_on_resume_do(finished_run, tmp_path):
  workdir = copy_of(finished_run, tmp_path)
  metrics = trainer.train_and_evaluate(
      short_config(total_steps=16, log_every_steps=2, eval_batch_size=64, keep_checkpoints=2),
      workdir)
  assert metrics["steps"] == 16
  stored = json.load(open(os.path.join(workdir, "config.json")))
  assert stored["total_steps"] == 16 and stored["log_every_steps"] == 2
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  steps = [r["step"] for r in rows if "train/loss" in r]
  assert steps == [4, 8, 12, 14, 16]  # Nothing twice, nothing lost.
  info = json.load(open(os.path.join(workdir, "run_info.json")))
  assert len(info["earlier"]) == 1  # The first invocation's record is kept.


_SLOW_RUN = """
import sys
sys.path.insert(0, {root!r})
from tests import tiny_experiment
config = tiny_experiment.get_config("slow")
tiny_experiment.run(config, {workdir!r})
"""


def test_one_run_per_workdir_and_a_killed_run_leaves_no_stale_lock(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  first = subprocess.Popen([sys.executable, "-c", _SLOW_RUN.format(root=ROOT, workdir=workdir)],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  try:
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(workdir, "metrics.jsonl")):  # Training has begun.
      assert first.poll() is None and time.time() < deadline, first.stderr.read()[-2000:]
      time.sleep(0.2)
    from tests import tiny_experiment
    with pytest.raises(RuntimeError, match="another run is using"):
      trainer.train_and_evaluate(tiny_experiment.get_config("slow"), workdir)
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  # The kernel released the killed run's lock: the same command resumes and finishes.
  from tests import tiny_experiment
  metrics = trainer.train_and_evaluate(tiny_experiment.get_config("slow"), workdir)
  assert metrics["steps"] == 60


# --- §2: a damaged checkpoint is never restored as if it were good --------


def _largest_file(directory: str) -> str:
  files = [os.path.join(d, f) for d, _, names in os.walk(directory) for f in names]
  return max(files, key=os.path.getsize)


def _flip_bytes(step_dir):
  path = _largest_file(step_dir)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    data = f.read(64)
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(b ^ 0xFF for b in data))


def _truncate(step_dir):
  path = _largest_file(step_dir)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _remove_metadata(step_dir):
  os.remove(os.path.join(step_dir, "default", "_METADATA"))


DAMAGE = {"flipped bytes": _flip_bytes, "truncated file": _truncate,
          "missing _METADATA": _remove_metadata}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_falls_back_to_the_newest_intact_one(finished_run, tmp_path,
                                                                  caplog, damage):
  workdir = copy_of(finished_run, tmp_path)
  _, good = final_params(finished_run)
  DAMAGE[damage](os.path.join(workdir, "checkpoints", "12"))
  with caplog.at_level(logging.WARNING):
    trainer.train_and_evaluate(short_config(), workdir)  # Resumes from 8, trains 9-12 again.
  assert any("step 12" in r.getMessage() and "damaged" in r.getMessage()
             for r in caplog.records), [r.getMessage() for r in caplog.records]
  step, params = final_params(workdir)
  assert step == 12
  jax.tree.map(np.testing.assert_array_equal, good, params)  # The retrained 12 is the 12.


def test_a_stray_file_named_like_a_step_is_set_aside(finished_run, tmp_path, caplog):
  workdir = copy_of(finished_run, tmp_path)
  with open(os.path.join(workdir, "checkpoints", "20"), "w") as f:
    f.write("not a checkpoint")
  os.makedirs(os.path.join(workdir, "checkpoints", "30"))
  with caplog.at_level(logging.WARNING):
    metrics = trainer.train_and_evaluate(short_config(total_steps=16), workdir)
  assert metrics["steps"] == 16
  messages = " ".join(r.getMessage() for r in caplog.records)
  assert "step 20" in messages and "step 30" in messages
  assert final_params(workdir)[0] == 16


def test_no_intact_checkpoint_is_a_clear_error(finished_run, tmp_path):
  workdir = copy_of(finished_run, tmp_path)
  for step in (4, 8, 12):
    _flip_bytes(os.path.join(workdir, "checkpoints", str(step)))
  with pytest.raises(checkpoint.CheckpointError, match=r"No intact checkpoint.*step 12.*"
                     r"step 8.*step 4"):
    trainer.train_and_evaluate(short_config(), workdir)


def test_load_arrays_skips_a_damaged_checkpoint(finished_run, tmp_path):
  workdir = copy_of(finished_run, tmp_path)
  _flip_bytes(os.path.join(workdir, "checkpoints", "12"))
  step, _ = checkpoint.load_arrays(workdir)
  assert step == 8
  with pytest.raises(checkpoint.CheckpointError, match="step 12"):
    checkpoint.load_arrays(workdir, 12)


def test_a_checkpoint_holding_nan_is_passed_over(finished_run, tmp_path, caplog):
  """As older code could write: step 16 with a NaN parameter, saved past the check."""
  import orbax.checkpoint as ocp
  from research import models
  from research.train import optim, steps
  workdir = copy_of(finished_run, tmp_path)
  config = short_config(total_steps=16)
  tx, _ = optim.make_optimizer(config.optimizer, 16)
  model = models.get_model("lenet5", num_classes=10, dropout=0.3)
  ckpt = checkpoint.Checkpointer(workdir)
  state = ckpt.restore(steps.create_train_state(model, tx, (1, 28, 28, 1), 0))
  params = jax.tree.map(lambda x: x, state.params)
  params["C1"]["kernel"] = params["C1"]["kernel"].at[0, 0, 0, 0].set(np.nan)
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  manager.save(16, args=ocp.args.StandardSave(state.replace(step=16, params=params)))
  manager.close()
  with caplog.at_level(logging.WARNING):
    trainer.train_and_evaluate(config, workdir)  # Resumes from 12, trains 13-16 again.
  assert any("step 16" in r.getMessage() and "NaN or inf" in r.getMessage()
             for r in caplog.records)
  step, arrays = checkpoint.load_arrays(workdir)
  assert step == 16 and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(arrays["params"]))


# --- §3: a diverging run stops before checkpointing, naming the step ------


def _diverging(**overrides):
  """Adam at learning rate 1e5: the loss stays finite (about 1e32) from step 2 on,
  while the gradient norm and Adam's second moments are infinite."""
  config = short_config(**overrides)
  config.optimizer.name, config.optimizer.learning_rate = "adam", 1e5
  config.optimizer.weight_decay = 0.0
  return config


def test_a_finite_loss_with_an_infinite_gradient_stops_before_the_checkpoint(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = _diverging(checkpoint_every_steps=1, keep_checkpoints=1)
  with pytest.raises(FloatingPointError, match=r"gradient norm became inf at step 2; stopping"
                     r".*newest finite checkpoint, step 1,"):
    trainer.train_and_evaluate(config, workdir)
  step, state = checkpoint.load_arrays(workdir)
  assert step == 1  # Rotation kept it: nothing non-finite was ever saved.
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state)
             if np.issubdtype(x.dtype, np.floating))


def test_a_non_finite_state_is_never_evaluated(data_dir, tmp_path):
  # Evaluations between log steps: the stop comes before the eval of a bad state.
  workdir = str(tmp_path / "run")
  with pytest.raises(FloatingPointError, match="at step 2; stopping"):
    trainer.train_and_evaluate(_diverging(eval_every_steps=1, log_every_steps=100), workdir)
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in rows if "test/loss" in r] == [1]


def test_divergence_before_the_first_checkpoint_says_so(data_dir, tmp_path):
  with pytest.raises(FloatingPointError, match="at step 2; stopping.*No checkpoint was "
                     "written yet"):
    trainer.train_and_evaluate(_diverging(), str(tmp_path / "run"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_sees_one_bad_value_under_jit(bad):
  from research.train import finite
  tree = {"w": np.ones((3, 4), np.float32), "step": np.int32(7), "b": np.zeros(2, np.float16)}
  check = jax.jit(finite.all_finite)
  assert bool(check(tree))
  tree["w"][2, 1] = bad
  assert not bool(check(tree))
  assert bool(check({"big": np.full(4, 3e38, np.float32)}))  # Large but finite.


def test_a_non_finite_state_is_never_saved(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=1)
  ckpt.save(1, {"w": np.ones(3, np.float32)})
  with pytest.raises(FloatingPointError, match="step 2"):
    ckpt.save(2, {"w": np.array([1.0, np.inf, 0.0], np.float32)})
  ckpt.close()
  assert checkpoint.load_arrays(str(tmp_path))[0] == 1


# --- §4: runs that would do nothing, or something else, stop before work ----


def test_zero_training_steps_is_an_error_before_any_work(data_dir, tmp_path):
  config = make_tiny_config(num_epochs=1.0, total_steps=0, batch_size=2048)
  with pytest.raises(ValueError, match=r"config.batch_size=2048.*1024 training examples"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  config = short_config()
  config.data.eval_split, config.data.classes = "test[:4]", (0, 1)  # Its labels: 4, 4, 9, 7.
  with pytest.raises(ValueError, match=r"config.data.eval_split='test\[:4\]': has no examples"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_data_dir_that_does_not_exist_is_not_created(tmp_path):
  config = short_config()
  config.data.data_dir = str(tmp_path / "typo" / "datasets")
  with pytest.raises(FileNotFoundError, match=r"config.data.data_dir=.*does not exist"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "typo").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("paper", ["resnet", "nin", "alexnet", "augmentation", "googlenet",
                                   "vgg"])
def test_a_report_that_reads_training_set_metrics_needs_them(paper):
  module = experiment.load_module(os.path.join(ROOT, "experiments", f"{paper}.py"))
  config = module.get_config(None)
  for sub in ("", "fig1", "ablation"):  # AlexNet's two studies have configs of their own.
    node = config if not sub else config.get(sub)
    if node is not None and "eval_train_examples" in node:
      node.eval_train_examples = 0
  with pytest.raises(ValueError, match="eval_train_examples=0"):
    experiment.validate(module, config)
