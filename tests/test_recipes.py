"""The papers' own recipes (`:imagenet`, `:cifar10` arguments): their schedules at
the paper's boundary steps, the batch/learning-rate rule, and short end-to-end
runs through launch.py on TFDS's mock data, one of them killed and resumed."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from research.data import datasets
from research.errors import ConfigError
from research.launch import experiment, recipes
from research.train import checkpoint, config as config_lib, optim, preflight, trainer
from tests.conftest import ROOT, final_params

RECIPES = [("resnet", "cifar10"), ("resnet", "imagenet"), ("nin", "cifar10"),
           ("alexnet", "imagenet"), ("vgg", "imagenet"), ("googlenet", "imagenet")]


def load(name: str):
  return experiment.load_module(os.path.join(ROOT, "experiments", f"{name}.py"))


def schedule_of(config):
  """(learning-rate schedule, steps per epoch, total steps) of a recipe at full scale."""
  num_train = datasets.get(config.data.name).splits["train"]
  if config.data.train_split != "train":   # "train[:45000]"
    num_train = int(config.data.train_split.split(":")[1].rstrip("]"))
  per_epoch, total = preflight.run_length(config, num_train, 1)
  return optim.make_schedule(config.optimizer, total), per_epoch, total


def lrs(schedule, steps):
  return [float(schedule(s)) for s in steps]


# --- Schedules -----------------------------------------------------------------

def test_exponential_schedule_decays_every_interval():
  c = config_lib.base_config().optimizer
  c.schedule, c.learning_rate, c.decay_factor, c.decay_every = "exponential", 1.0, 0.5, 0.25
  assert lrs(optim.make_schedule(c, 100), (0, 24, 25, 49, 50, 99)) == pytest.approx(
      [1, 1, 0.5, 0.5, 0.25, 0.125])


def test_constant_and_linear_warmups():
  c = config_lib.base_config().optimizer
  c.schedule, c.learning_rate, c.warmup_steps = "step", 0.1, 10
  c.warmup, c.warmup_factor = "constant", 0.1
  assert lrs(optim.make_schedule(c, 100), (0, 9, 10, 49, 50, 75)) == pytest.approx(
      [0.01, 0.01, 0.1, 0.1, 0.01, 0.001])   # The boundaries stay at 50 and 75.
  c.warmup = "linear"
  assert lrs(optim.make_schedule(c, 100), (0, 5, 10)) == pytest.approx([0.01, 0.055, 0.1])
  c.warmup_factor = 0.0   # The default: from zero, as before these keys existed.
  assert lrs(optim.make_schedule(c, 100), (0, 5)) == pytest.approx([0.0, 0.05])


@pytest.mark.parametrize("key,value", [
    ("warmup", "cosine"), ("warmup_factor", 1.5), ("warmup_steps", -1),
    ("decay_every", 0.0), ("schedule", "poly")])
def test_bad_schedule_values_name_the_key(key, value):
  c = config_lib.base_config()
  c.optimizer.schedule = "exponential"
  c.optimizer.decay_every = 0.1
  c.optimizer[key] = value
  with pytest.raises(ConfigError, match=f"^config.optimizer.{key}="):
    trainer.validate_config(c)


# --- Each recipe's config at the paper's scale ---------------------------------

@pytest.mark.parametrize("name,arg", RECIPES)
def test_recipe_configs_validate_and_compare_with_the_paper(name, arg):
  module = load(name)
  config = module.get_config(arg)
  experiment.validate(module, config)
  claims = module.claims(config)
  assert any("reaches the paper's" in c.statement for c in claims)
  doc = module.__doc__
  assert f"python launch.py --config=experiments/{name}.py:{arg}" in doc
  assert "estimate" in doc   # The runtime is marked as one.


def test_an_unknown_argument_lists_the_valid_ones():
  with pytest.raises(ValueError, match=r"use one of \('', 'full', 'cifar10', 'imagenet'\)"):
    load("resnet").get_config("imagenet2012")


def test_resnet_cifar10_schedule_and_warmup():
  module = load("resnet")
  config = module.get_config("cifar10")
  assert config.total_steps == 64_000 and config.batch_size == 128
  assert config.augment == "crop_pad4,flip_lr" and config.data.train_split == "train[:45000]"
  variants = module.variants(config)
  assert set(variants) == set(module.CIFAR10_NETS)
  plain = config_lib.override(config, variants["resnet56"])
  schedule, _, _ = schedule_of(plain)
  # §4.2: 0.1, divided by 10 at 32k and 48k.
  assert lrs(schedule, (0, 31_999, 32_000, 47_999, 48_000, 63_999)) == pytest.approx(
      [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
  deep = config_lib.override(config, variants["resnet110"])
  schedule, _, _ = schedule_of(deep)
  # ResNet-110: 0.01 for the first 400 iterations, then the same schedule.
  assert lrs(schedule, (0, 399, 400, 31_999, 32_000, 48_000)) == pytest.approx(
      [0.01, 0.01, 0.1, 0.1, 0.01, 0.001])


def test_resnet_imagenet_schedule_and_the_linear_scaling_rule():
  config = load("resnet").get_config("imagenet")
  schedule, per_epoch, total = schedule_of(config)
  assert per_epoch == 1_281_167 // 256 and total == 90 * per_epoch
  # 0.1, divided by 10 at epochs 30, 60 and 80.
  steps = [e * per_epoch + d for e in (30, 60, 80) for d in (-1, 0)]
  assert lrs(schedule, [0, *steps]) == pytest.approx(
      [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001])
  assert config.optimizer.weight_decay == 1e-4 and config.optimizer.momentum == 0.9
  config.batch_size = 1024   # As --config.batch_size=1024 does.
  assert config.optimizer.learning_rate == pytest.approx(0.4)
  config.optimizer.learning_rate = 0.2   # An explicit rate wins.
  assert config.optimizer.learning_rate == 0.2


def test_alexnet_vgg_nin_schedules():
  config = load("alexnet").get_config("imagenet")
  schedule, per_epoch, _ = schedule_of(config)
  assert config.batch_size == 128 and config.optimizer.weight_decay == 5e-4
  assert lrs(schedule, (0, 30 * per_epoch - 1, 30 * per_epoch, 60 * per_epoch,
                        80 * per_epoch)) == pytest.approx([0.01, 0.01, 1e-3, 1e-4, 1e-5])
  config = load("vgg").get_config("imagenet")
  schedule, per_epoch, total = schedule_of(config)
  assert total == 74 * per_epoch and config.batch_size == 256
  assert lrs(schedule, (0, 30 * per_epoch, 50 * per_epoch, 65 * per_epoch)) == pytest.approx(
      [0.01, 1e-3, 1e-4, 1e-5])
  config = load("nin").get_config("cifar10")
  schedule, per_epoch, total = schedule_of(config)
  assert total == 300 * per_epoch
  assert lrs(schedule, (0, 150 * per_epoch, 225 * per_epoch)) == pytest.approx(
      [0.07, 0.007, 0.0007])


def test_googlenet_decays_four_percent_every_eight_epochs():
  config = load("googlenet").get_config("imagenet")
  schedule, per_epoch, total = schedule_of(config)
  assert total == 250 * per_epoch and config.aux_loss_weight == 0.3
  assert lrs(schedule, (0, 8 * per_epoch - 1, 8 * per_epoch, 16 * per_epoch,
                        240 * per_epoch)) == pytest.approx(
      [0.08, 0.08, 0.08 * 0.96, 0.08 * 0.96 ** 2, 0.08 * 0.96 ** 30])
  config.batch_size = 32   # The Caffe solver's batch gives its rate.
  assert config.optimizer.learning_rate == pytest.approx(0.01)


def test_claims_read_the_views_metrics():
  config = load("resnet").get_config("imagenet")
  claims = {(c.statement.split()[0], c.paper): c for c in load("resnet").claims(config)}
  top5 = claims[("resnet50", "6.71%")]
  metrics = {"resnet50/test/top5_accuracy": 0.94}   # ten_crop(224) is the first view.
  assert top5.evaluate(metrics).ours == pytest.approx(0.06) and top5.evaluate(metrics).holds
  assert not top5.evaluate({"resnet50/test/top5_accuracy": 0.9}).holds
  table = recipes.error_table(config, {"resnet50/test/accuracy": 0.75},
                              load("resnet").PAPER_IMAGENET)
  assert "| resnet50 | ten_crop(224) | 25.00% | not measured | 22.85% / 6.71%" in table


# --- End to end through launch.py on mock data ---------------------------------

def launch_mock(config, workdir, flags, env_extra=None, examples=64):
  """launch.py on mock data in a subprocess (sharing the session's compilation cache:
  the killed and resumed runs read the steps that the first run compiled)."""
  env = {**os.environ, "MOCK_EXAMPLES": str(examples), **(env_extra or {})}
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "tests", "mock_launch.py"), f"--config={config}",
       f"--workdir={workdir}", f"--config.data.data_dir={os.path.dirname(workdir)}", *flags],
      env=env, capture_output=True, text=True, cwd=ROOT)


# A few steps with tiny batches; the recipe's optimizer, schedule, augmentation
# and evaluation stay as they are.
TINY = ["--config.batch_size=8", "--config.eval_batch_size=8", "--config.total_steps=6",
        "--config.num_epochs=0", "--config.eval_every_steps=3", "--config.eval_every_epochs=0",
        "--config.checkpoint_every_steps=2", "--config.log_every_steps=2"]
RESNET_CIFAR10 = [*TINY, '--config.variants=("resnet20",)', "--config.eval_train_examples=16"]


@pytest.fixture(scope="module")
def resnet_cifar10_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("recipes") / "resnet_cifar10")
  result = launch_mock("experiments/resnet.py:cifar10", workdir, RESNET_CIFAR10)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_resnet_cifar10_recipe_end_to_end(resnet_cifar10_run):
  run = os.path.join(resnet_cifar10_run, "resnet20")
  with open(os.path.join(run, "config.json")) as f:
    saved = json.load(f)
  assert saved["data"]["name"] == "cifar10" and saved["augment"] == "crop_pad4,flip_lr"
  assert saved["optimizer"]["schedule"] == "step" and saved["optimizer"]["momentum"] == 0.9
  rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
  evals = [r for r in rows if "test/accuracy" in r]
  assert [r["step"] for r in evals] == [3, 6]
  assert 0 <= evals[-1]["test/top5_accuracy"] <= 1 and "train_eval/error" in evals[-1]
  assert checkpoint.Checkpointer(run).latest_step() == 6
  with open(os.path.join(resnet_cifar10_run, "claims.json")) as f:
    claims = {c["statement"]: c for c in json.load(f)}
  table6 = [c for s, c in claims.items() if s.startswith("resnet20 reaches")]
  assert len(table6) == 1 and table6[0]["paper"] == "8.75%" and table6[0]["ours"] is not None


def assert_kill_and_resume_is_exact(config, flags, straight, killed, examples=64):
  """Runs `config` killed by SIGKILL after step 3 into `killed`, reruns it
  there, and checks its final parameters against the uninterrupted run in
  `straight`, bit for bit (each workdir holds one net's subfolder)."""
  result = launch_mock(config, killed, flags, {trainer._KILL_AT_STEP_ENV: "3"},
                       examples=examples)
  assert result.returncode == -9, result.stderr[-3000:]
  (run,) = os.listdir(killed)
  assert checkpoint.Checkpointer(os.path.join(killed, run)).latest_step() == 2
  result = launch_mock(config, killed, flags, examples=examples)
  assert result.returncode == 0, result.stderr[-3000:]
  step_a, params_a = final_params(os.path.join(straight, run))
  step_b, params_b = final_params(os.path.join(killed, run))
  assert step_a == step_b == 6
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)  # Bit for bit.


def test_a_killed_recipe_run_resumes_bit_exactly(resnet_cifar10_run, tmp_path):
  assert_kill_and_resume_is_exact("experiments/resnet.py:cifar10", RESNET_CIFAR10,
                                  resnet_cifar10_run, str(tmp_path / "killed"))


# Each ImageNet recipe (and NiN's) end to end on mock data: variable-size
# images streamed through the recipe's own CPU ops at tiny sizes, a tiny net
# where the model has width knobs, evaluated (top-1, top-5) for each of the
# recipe's views and checkpointed. Minutes each here (compiling full-depth
# nets), so marked slow: `python -m pytest -q -m slow tests/test_recipes.py`.
ONCE = [*TINY, "--config.total_steps=2", "--config.eval_every_steps=0",
        "--config.checkpoint_every_steps=0", "--config.data.num_workers=0"]
IMAGENET_TINY = {
    "resnet": ["--config.model.kwargs.widths=(4,8,16,32)",
               "--config.data.train_pp=scale_jitter(32,48)|random_crop(32)|flip_lr|"
               "pca_lighting(0.1)",
               "--config.data.eval_pp=resize_small(32)|central_crop(32)",
               '--config.eval_views=("ten_crop(24)","central_crop(24)")'],
    "alexnet": ["--config.model.kwargs.widths=(8,8,8,8,8)", "--config.model.kwargs.fc_width=16"],
    "vgg": ["--config.model.kwargs.widths=(4,4,8,8,8)", "--config.model.kwargs.fc_width=16",
            "--config.data.train_pp=scale_jitter(32,64)|random_crop(32)|flip_lr|"
            "pca_lighting(0.1)",
            "--config.data.eval_pp=resize_small(64)|central_crop(64)",
            '--config.eval_views=("dense(32,48,64)","dense(48)")'],
    "googlenet": ["--config.model.kwargs.width=0.125",
                  "--config.data.train_pp=inception_crop(96)|flip_lr|pca_lighting(0.1)",
                  "--config.data.eval_pp=resize_small(110)|central_crop(96)"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", [r for r in RECIPES if r != ("resnet", "cifar10")])
def test_each_recipe_end_to_end(name, arg, tmp_path):
  workdir = str(tmp_path / name)
  flags = ONCE + IMAGENET_TINY.get(name, ["--config.eval_train_examples=16"])
  result = launch_mock(f"experiments/{name}.py:{arg}", workdir, flags,
                       examples=16)
  assert result.returncode == 0, result.stderr[-3000:]
  (run,) = [d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d))
            ] if name != "nin" else ["gap"]
  rows = [json.loads(l) for l in open(os.path.join(workdir, run, "metrics.jsonl"))]
  final = {k: v for r in rows for k, v in r.items()}
  assert final["step"] == 2 and 0 <= final["test/accuracy"] <= 1
  if arg == "imagenet":   # 1000 classes: top-5 beside top-1, for every view.
    with open(os.path.join(workdir, run, "config.json")) as f:
      views = json.load(f)["eval_views"]
    assert "test/top5_accuracy" in final
    assert all(f"test/{v}/top5_accuracy" in final for v in views[1:])
  assert checkpoint.Checkpointer(os.path.join(workdir, run)).latest_step() == 2
  with open(os.path.join(workdir, "claims.json")) as f:
    recipe_claims = [c for c in json.load(f) if "reaches the paper's" in c["statement"]]
  assert recipe_claims and recipe_claims[0]["ours"] is not None


ALEXNET_TINY = [*TINY, "--config.data.num_workers=0", *IMAGENET_TINY["alexnet"]]


@pytest.mark.slow
def test_a_killed_streaming_recipe_resumes_bit_exactly(tmp_path):
  # imagenet2012's variable-size images, streamed, with random crops, flips and
  # PCA lighting drawn per (seed, step, row): the resumed run draws the same.
  config, straight = "experiments/alexnet.py:imagenet", str(tmp_path / "straight")
  result = launch_mock(config, straight, ALEXNET_TINY, examples=32)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_kill_and_resume_is_exact(config, ALEXNET_TINY, straight, str(tmp_path / "killed"),
                                  examples=32)
