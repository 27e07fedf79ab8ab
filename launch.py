"""The one entry point: run an experiment, list experiments, or summarise a model.

  python launch.py --config=experiments/lenet.py --workdir=runs/lenet
  python launch.py --config=experiments/lenet.py:mnist --config.num_epochs=5
  python launch.py --list
  python launch.py --summary=vgg16 --input_shape=224,224,3
  python launch.py --config=experiments/lenet.py --summary=config
  python launch.py --config=experiments/lenet.py --print_config

`--config.key=value` overrides any config key; unknown keys, wrong types and
impossible values stop before any work, with an error naming the key.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with an argument: "
    "experiments/lenet.py[:arg].", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics and report.md go (default: "
    "runs/<experiment>[_<arg>]). An existing workdir resumes.")
_LIST = flags.DEFINE_bool("list", False, "List the experiments and exit.")
_SUMMARY = flags.DEFINE_string(
    "summary", None, "Print a model summary (shapes, parameters, activations, MACs) and "
    "exit: a model name, or 'config' for --config's model.", )
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False,
                                  "Print the config (after overrides) and exit.")
_INPUT_SHAPE = flags.DEFINE_list(
    "input_shape", None, "H,W,C for --summary (default: the config's dataset, else "
    "224,224,3).")


def _default_workdir(config_arg: str) -> str:
  path, _, arg = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", name + (f"_{arg}" if arg else ""))


def _print_summary(name: str) -> None:
  from research import models
  from research.models import summary
  kwargs = {}
  shape = [int(d) for d in _INPUT_SHAPE.value] if _INPUT_SHAPE.value else None
  if name == "config":
    if _CONFIG.value is None:
      raise app.UsageError("--summary=config needs --config.")
    config = _CONFIG.value
    name, kwargs = config.model.name, config.model.kwargs.to_dict()
    if shape is None:
      from research.data import tfds_source
      _, info = tfds_source.open_source(config.data.name, config.data.train_split,
                                        config.data.data_dir)
      shape = list(info.features["image"].shape)
      kwargs.setdefault("num_classes", info.features["label"].num_classes)
  model = models.get_model(name, **kwargs)
  print(summary.summarize(model, shape or (224, 224, 3), train=False).table())


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with an unknown config key reported as such, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help on flags.")
  except (AttributeError, KeyError) as e:
    overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    sys.exit(f"FATAL Flags parsing error: unknown config key {e} in {overrides}. "
             "See the keys with --print_config.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from research.launch import experiment, logs  # After flag parsing: imports JAX.
  logs.quiet_library_logs()
  if _LIST.value:
    for path, title in experiment.list_experiments():
      print(f"{path:<36} {title}")
    return
  if _SUMMARY.value:
    _print_summary(_SUMMARY.value)
    return
  if _CONFIG.value is None:
    raise app.UsageError("Pass --config=experiments/<paper>.py (see --list).")
  if _PRINT_CONFIG.value:
    print(_CONFIG.value)
    return
  config_arg = config_flags.get_config_filename(flags.FLAGS["config"])  # path[:arg]
  config_file = config_arg.partition(":")[0]
  module = experiment.load_module(config_file)
  try:
    experiment.validate(module, _CONFIG.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  workdir = _WORKDIR.value or _default_workdir(config_arg)
  logging.info("Experiment %s -> %s", config_arg, workdir)
  experiment.run_experiment(module, _CONFIG.value, workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
