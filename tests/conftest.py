"""Shared test setup: small, fast, offline."""

import os
import shutil
import socket
import sys
import tempfile

import ml_collections
import pytest

# Tests never touch the network or a user's TFDS folder: datasets are prepared
# from local files into a folder of the checkout (once; later runs reuse it).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DATA_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".tfds_test"))
os.environ["TFDS_DATA_DIR"] = TEST_DATA_DIR
_XLA_CACHE = None


def pytest_configure(config):  # pylint: disable=unused-argument
  """One persistent XLA compilation cache for the whole test session, in a temporary
  folder removed at its end (pytest_unconfigure).

  The in-process tests and every subprocess they start (launch.py runs, killed and
  resumed runs, Slurm jobs) inherit it through the environment, so a program compiled
  once (the tiny LeNet's steps, a detector's steps before and after a SIGKILL) is read
  back instead of compiled again. Set here, before any test module imports jax, and
  only in the pytest process and its children: a user's runs never see it. Every
  program is written, however fast it compiles: measured here, writing adds about 5%
  to a cold compile, and a read is several times faster than compiling even the small
  programs (an eager op's, a parameter initialiser's).
  """
  global _XLA_CACHE
  _XLA_CACHE = tempfile.mkdtemp(prefix="research_tests_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  if "jax" in sys.modules:  # Imported before the tests (by a plugin): tell it too.
    import jax
    jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):  # pylint: disable=unused-argument
  if _XLA_CACHE:
    shutil.rmtree(_XLA_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> str:
  """A TFDS data_dir holding the real, prepared Fashion-MNIST and mnist_5k."""
  from research.data import builders, reader
  for name in ("fashion_mnist", "mnist_5k"):
    if reader.prepared_dir(name, TEST_DATA_DIR) is None:
      builders.prepare(name, TEST_DATA_DIR)
  return TEST_DATA_DIR


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory, data_dir):
  """(data_dir, prepared folder) of the tiny detection scenes ("scenes_tiny", seed 0:
  24 train, 8 validation, 8 test scenes of 128 x 128 px), built once per session.
  Read only: a test that writes beside the data takes `scenes`."""
  from tests import detection_runs
  root = detection_runs.scenes_root(tmp_path_factory, data_dir, "scenes")
  return str(root), detection_runs.build_scenes(root)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, data_dir, tiny_scenes):
  """A data_dir of the module's own holding the session's tiny scenes (linked, not
  rebuilt): what a module's runs write beside the data (selective search's cache,
  <data_dir>/proposals) starts empty and stays the module's."""
  from tests import detection_runs
  prepared = os.path.join(tiny_scenes[0], "scenes_tiny")
  return str(detection_runs.scenes_root(tmp_path_factory, data_dir, "scenes", link=[prepared]))


# A run of seconds: 24 steps of 32 on 1,024 Fashion-MNIST images, evaluating on 256
# at steps 12 and 24, checkpointing every 5 steps.
TINY_BUDGET = {
    "data.train_split": "train[:1024]", "data.eval_split": "test[:256]",
    "batch_size": 32, "eval_batch_size": 128, "num_epochs": 0.0, "total_steps": 24,
    "log_every_steps": 4, "eval_every_steps": 12, "eval_every_epochs": 0.0,
    "checkpoint_every_steps": 5, "checkpoint_every_epochs": 0.0, "eval_train_examples": 0,
}


def make_tiny_config(base: ml_collections.ConfigDict | None = None,
                     **overrides) -> ml_collections.ConfigDict:
  """A config that trains in seconds: `base` (an experiment's config; default the
  trainer's, with LeNet-5, dropout 0.3 and SGD at 0.05) with TINY_BUDGET's keys set.

  `overrides` set keys after the budget (total_steps=6; nested ones dotted, as
  **{"optimizer.learning_rate": 0.1}); a key the config lacks is a ValueError. The
  base is not changed. For modules that cannot take fixtures (an experiment file that
  a test loads by path), import this function.
  """
  from research.train import config as config_lib
  if base is None:
    base = config_lib.base_config()
    base.model.kwargs = ml_collections.ConfigDict({"dropout": 0.3})
    base.optimizer.name, base.optimizer.learning_rate = "sgd", 0.05
    base.optimizer.weight_decay, base.optimizer.schedule = 5e-4, "step"
  return config_lib.override(base, {**TINY_BUDGET, **overrides})


def final_params(workdir: str):
  """(step, params) of the newest checkpoint in `workdir`."""
  from research.train import checkpoint
  step, state = checkpoint.load_arrays(workdir)
  return step, state["params"]


@pytest.fixture
def tiny_config():
  """The factory `make_tiny_config(base=None, **overrides)`: a fresh tiny config per call."""
  return make_tiny_config


def objective_config(objective: str = "classification", **overrides):
  """A run of the training loop that takes seconds, for each objective.

  classification: LeNet-5 with dropout on Fashion-MNIST; adversarial: a small
  maxout net (dropout) on eq. 6 on MNIST-5k; gan: a small MLP GAN (maxout D
  with dropout) with its output bias from the pixel marginals. 6 steps,
  checkpoints every 2, evaluations at 3 and 6. Also importable by test
  subprocesses: `from tests.conftest import objective_config`.
  """
  from research.train import config as config_lib
  c = config_lib.base_config()
  c.batch_size, c.eval_batch_size = 32, 128
  c.num_epochs, c.total_steps = 0.0, 6
  c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 2, 3, 2
  c.data.train_split, c.data.eval_split = "train[:256]", "test[:128]"
  c.optimizer.learning_rate = 1e-3
  if objective == "classification":
    c.model.kwargs = ml_collections.ConfigDict({"dropout": 0.3})
  elif objective == "adversarial":
    c.data.name, c.data.mean, c.data.std = "mnist_5k", (0.1307,), (0.3081,)
    c.model.name = "maxout_mlp"
    c.model.kwargs = ml_collections.ConfigDict({"units": (16, 16), "pieces": 2})
    c.objective = ml_collections.ConfigDict(dict(name="adversarial", epsilon=0.25, alpha=0.5))
  elif objective == "gan":
    c.batch_size = 16
    c.objective = ml_collections.ConfigDict(dict(
        name="gan", gan="gan_mlp", generator={"latent_dim": 8, "hidden": (16,)},
        discriminator={"units": (8,), "pieces": 2},
        optimizer={"name": "adam", "g_learning_rate": 1e-3, "d_learning_rate": 1e-3,
                   "b1": 0.5},
        generator_loss="non_saturating", init_output_bias=True,
        sample_with_batch_stats=False, grid_size=4))
  else:
    raise ValueError(f"objective={objective!r}")
  for key, value in overrides.items():
    c[key] = value
  return c


@pytest.fixture
def tiny_objective_config():
  """`objective_config` as a fixture: tiny_objective_config("gan", total_steps=4)."""
  return objective_config


def free_port() -> int:
  """A TCP port free on this machine now (for jax.distributed's coordinator)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]
