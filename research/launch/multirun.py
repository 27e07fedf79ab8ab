"""Experiments made of several training runs: one subfolder of the workdir each.

A paper's claim is often a comparison (ReLU vs tanh, plain-56 vs ResNet-56),
so its experiment trains a few variants of one run. The schema of such an
experiment module (experiments/resnet.py is one):

  STUDY_KEYS = ("variants", "arg")  # Its own top-level keys: the nets, the argument.

  def get_config(arg) -> ConfigDict:
    # The base: one complete trainer config (`train.config.base_config()`,
    # a real run, e.g. ResNet-20's, not placeholders that every variant
    # replaces), plus the STUDY_KEYS, which only the experiment reads (which
    # nets to compare, a learning-rate list, table options, `arg`).

  def variants(config) -> dict[str, dict]:
    # Named runs, each a dict of dotted overrides of the base:
    # {"plain56": {"model.name": "plain56"}, ...}; {} is the base itself.

  def run(config, workdir):
    results = multirun.run_variants(config, variants(config), workdir,
                                    study_keys=STUDY_KEYS)
    metrics = multirun.merge(results)      # {"plain56/test/error": ..., ...}

`run_variants` takes the base out of the config (`base_config`: the config
without its study keys; a top-level key that is neither the trainer's nor a
declared study key is an error naming it), trains each variant with
`trainer.train_and_evaluate` into `workdir/<name>`, so each resumes from its
own checkpoints, and skips on a rerun the variants that already finished with
the same config (their config and metrics are kept in `<name>/result.json`).
An experiment with two kinds of runs keeps two bases, each a trainer config
of its own under a study key (experiments/alexnet.py: `fig1`, `ablation`).
`research.train.metrics.series` and `steps_to_reach` read a variant's
metrics.jsonl for learning-curve claims; `research.eval.plots` draws them.
"""

import json
import os

from absl import logging
import ml_collections

from research.launch import trial
from research.train import config as config_lib, trainer, workdir as workdir_lib

RESULT_FILE = "result.json"


def base_config(config: ml_collections.ConfigDict,
                study_keys=()) -> ml_collections.ConfigDict:
  """The base run: a copy of `config` without the experiment's own `study_keys`.

  Raises ValueError naming the keys when a study key is missing from the
  config, or when a top-level key is neither the trainer's
  (`research.train.config.base_config()`) nor a declared study key.
  """
  missing = [k for k in study_keys if k not in config]
  if missing:
    raise ValueError(f"Study keys {missing} are not in the config; declare only the "
                     "experiment's own top-level keys in STUDY_KEYS.")
  base = config.copy_and_resolve_references()
  with base.unlocked():  # launch.py's config flags lock the config they parse.
    for key in study_keys:
      del base[key]
  _check_trainer_keys(base)
  return base


def _check_trainer_keys(config: ml_collections.ConfigDict) -> None:
  unknown = sorted(set(config.keys()) - set(config_lib.base_config().keys()))
  if unknown:
    raise ValueError(f"Config keys {unknown} are not the trainer's: an experiment's own "
                     "keys go in its STUDY_KEYS (see research/launch/multirun.py).")


def _config_text(config: ml_collections.ConfigDict) -> str:
  """The run's config as result.json keeps it to recognise a finished run (only
  trainer keys: run_variant rejects any other)."""
  return json.dumps(workdir_lib.trainer_config(config), sort_keys=True)


def finished_metrics(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """The metrics of a finished run of exactly `config` in `workdir`, else None."""
  result = trial.read_json(os.path.join(workdir, RESULT_FILE))
  if result.get("config") == _config_text(config):
    return result["metrics"]
  return None


def run_variant(config: ml_collections.ConfigDict, workdir: str, *,
                divergence_ok: bool = False) -> dict:
  """Trains `config` into `workdir` unless a finished result of it is there.

  With `divergence_ok`, a run whose loss becomes NaN or inf is a result (its
  metrics are {"diverged": 1.0}, its curves what it logged before), not an
  error: for comparisons over learning rates, some of which may be too high.
  """
  _check_trainer_keys(config)
  metrics = finished_metrics(config, workdir)
  if metrics is not None:
    logging.info("%s: finished before, keeping its metrics.", workdir)
    return metrics
  try:
    metrics = trainer.train_and_evaluate(config, workdir)  # Resumes from a checkpoint.
  except FloatingPointError as e:
    if not divergence_ok:
      raise
    logging.warning("%s diverged: %s", workdir, e)
    metrics = {"diverged": 1.0}
  os.makedirs(workdir, exist_ok=True)
  trial.write_json(os.path.join(workdir, RESULT_FILE),
                   {"config": _config_text(config), "metrics": metrics})
  return metrics


def run_variants(config: ml_collections.ConfigDict, variants: dict[str, dict],
                 workdir: str, *, study_keys=(), divergence_ok: bool = False
                 ) -> dict[str, dict]:
  """Runs each {name: overrides} variant of the base in workdir/name; returns name -> metrics.

  config: the base trainer config plus the experiment's `study_keys` (left
  out of every run: `base_config`).
  """
  base = base_config(config, study_keys)
  results = {}
  for name, overrides in variants.items():
    logging.info("Variant %s (%d of %d): %s", name, len(results) + 1, len(variants),
                 overrides)
    config = config_lib.override(base, overrides, what=f"Variant {name!r} override")
    results[name] = run_variant(config, os.path.join(workdir, name), divergence_ok=divergence_ok)
  return results


def budget_text(config: ml_collections.ConfigDict) -> str:
  """'train[:10000], 6 epochs' or '..., 300 steps': a run's data and length, for claims."""
  length = (f"{config.num_epochs:g} epochs" if config.num_epochs > 0
            else f"{config.total_steps} steps")
  return f"{config.data.train_split}, {length}"


def merge(results: dict[str, dict], sep: str = "/") -> dict:
  """{"a": {"test/error": 0.1}} -> {"a/test/error": 0.1} (numbers only)."""
  return {f"{name}{sep}{key}": value for name, metrics in results.items()
          for key, value in metrics.items() if isinstance(value, (int, float))}
