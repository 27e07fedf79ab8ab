"""What the detection tests share: the tiny scenes (built once per session: conftest's
`tiny_scenes` and `scenes` fixtures), loading an experiment module, its tiny config on
the tiny scenes, and a run in a subprocess (to kill it, and to resume)."""

import importlib.util
import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCENES_MEAN, SCENES_STD = (0.4667, 0.3944, 0.3717), (0.2479, 0.2129, 0.2174)
TINY_SPLITS = {"train": 24, "validation": 8, "test": 8}


def build_scenes(root, name="scenes_tiny", seed=0, splits=TINY_SPLITS) -> str:
  """Prepares a tiny scenes dataset (128 x 128 px) into `root`, which holds links to
  the sources (`scenes_root`); returns the prepared folder."""
  from research.data import scene_builders
  from tests import coco_layouts  # Its offline prepare serves any builder.
  return coco_layouts.prepare(
      scene_builders.make_scene_builder(name, splits=splits, seed=seed), root)


def scenes_root(tmp_path_factory, data_dir: str, name: str, link=()):
  """A new data_dir holding links to the scenes' sources (prepared once for all tests
  in `data_dir`) and to the folders `link` (other prepared datasets)."""
  from research.data import scenes
  root = tmp_path_factory.mktemp(name)
  for source in scenes.SOURCES:
    os.symlink(os.path.join(data_dir, source), root / source)
  for folder in link:
    os.symlink(folder, root / os.path.basename(folder))
  return root


def load(name: str):
  """experiments/<name>.py as a module."""
  spec = importlib.util.spec_from_file_location(
      f"{name}_experiment", os.path.join(ROOT, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def scenes_config(name: str, data_root: str, tiny: dict, **overrides):
  """experiments/<name>.py's default config on the tiny scenes in data_root, with the
  budget `tiny` and `overrides` (dotted keys)."""
  from research.train import config as config_lib
  config = load(name).get_config()
  config.data.name, config.data.data_dir = "scenes_tiny", data_root
  config.data.mean, config.data.std = SCENES_MEAN, SCENES_STD
  return config_lib.override(config, {**tiny, **overrides})


_RUN_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from research.launch import experiment
    from research.train import trainer
    from {test_module} import load, tiny_config
    if {report!r}:
      experiment.run_experiment(load(), tiny_config({data!r}), {workdir!r}, command="test")
    else:
      trainer.train(tiny_config({data!r}), {workdir!r})
""")


def run(test_module: str, workdir, data, *, report=True, kill_at=None):
  """The tiny run of `test_module`'s load() and tiny_config(data) in a subprocess:
  experiment.run_experiment (report=True) or the loop alone; killed by SIGKILL after
  step kill_at. The runs share the test session's persistent compilation cache
  (tests/conftest.py): compiling the detector's steps is most of their time."""
  from research.train import trainer
  env = dict(os.environ)
  if kill_at is not None:
    env[trainer._KILL_AT_STEP_ENV] = str(kill_at)
  script = _RUN_SCRIPT.format(root=ROOT, test_module=test_module, data=data, workdir=workdir,
                              report=report)
  return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                        cwd=ROOT)


def assert_stops_before_work(module, config, workdir, match: str) -> None:
  """run_experiment(module, config) raises a one-line ConfigError matching `match`
  and leaves `workdir` absent or empty."""
  import pytest
  from research.errors import ConfigError
  from research.launch import experiment
  with pytest.raises(ConfigError, match=match) as e:
    experiment.run_experiment(module, config, str(workdir), command="test")
  assert "\n" not in str(e.value)
  assert not os.path.exists(workdir) or not os.listdir(workdir)


def kill_then_resume(test_module: str, workdir, data) -> None:
  """The tiny 4-step run killed by SIGKILL after step 3 (its newest checkpoint is
  step 2's), then run again into the same workdir: resumed, evaluated, reported."""
  from research.train import checkpoint
  result = run(test_module, workdir, data, kill_at=3)
  assert result.returncode == -9, result.stderr[-3000:]
  assert checkpoint.load_arrays(workdir)[0] == 2  # Killed after step 3: 4 never reached.
  result = run(test_module, workdir, data)
  assert result.returncode == 0, result.stderr[-3000:]


def assert_same_as_straight(test_module: str, resumed, straight, data) -> None:
  """An uninterrupted run into `straight` ends with the parameters of `resumed`, bit for bit."""
  import jax
  import numpy as np
  from tests.conftest import final_params
  result = run(test_module, straight, data, report=False)
  assert result.returncode == 0, result.stderr[-3000:]
  step_a, params_a = final_params(straight)
  step_b, params_b = final_params(resumed)
  assert step_a == step_b == 4
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
