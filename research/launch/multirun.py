"""Experiments made of several training runs: one subfolder of the workdir each.

A paper's claim is often a comparison (ReLU vs tanh, plain-56 vs ResNet-56),
so its experiment trains a few variants of one trainer config. Here

  results = multirun.run_variants(config.study, {"relu": {...}, "tanh": {...}},
                                  workdir)
  metrics = multirun.merge(results)        # {"relu/test/error": ..., ...}

trains each variant with `trainer.train_and_evaluate` into `workdir/<name>`,
so each resumes from its own checkpoints, and a rerun skips the variants that
already finished with the same config (their metrics are kept in
`<name>/result.json`). `steps_to_reach` and `series` read a variant's
metrics.jsonl for learning-curve claims; `plot_curves` draws them.
"""

import json
import os

from absl import logging
import ml_collections
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from research.launch import trial
from research.train import (config as config_lib, metrics as metrics_lib, trainer,
                            workdir as workdir_lib)

RESULT_FILE = "result.json"


def _config_text(config: ml_collections.ConfigDict) -> str:
  """The keys the trainer reads: an experiment's own keys do not change a run."""
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


def run_variants(base: ml_collections.ConfigDict, variants: dict[str, dict],
                 workdir: str, *, divergence_ok: bool = False) -> dict[str, dict]:
  """Runs each {name: overrides} variant of `base` in workdir/name; returns name -> metrics."""
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


# --- Learning curves from metrics.jsonl -------------------------------------


def series(workdir: str, key: str) -> tuple[list[int], list[float]]:
  """(steps, values) of `key` in a run's metrics.jsonl, one value per step.

  A resumed run appends rows for steps it repeats; the later row wins.
  """
  by_step = {}
  for row in metrics_lib.read_metrics(workdir):
    if key in row:
      by_step[row["step"]] = row[key]
  steps = sorted(by_step)
  return steps, [by_step[s] for s in steps]


def steps_to_reach(workdir: str, key: str, target: float) -> int | None:
  """The first logged step at which `key` is <= target (an error), or None."""
  for step, value in zip(*series(workdir, key)):
    if value <= target:
      return step
  return None


def plot_error_curves(workdir: str, colors: dict[str, str], path: str, *,
                      steps_per_epoch: float, title: str) -> dict[str, tuple]:
  """Saves train (dashed) and test error against epochs for the variants in
  `colors` {name: matplotlib colour}, each read from workdir/name; returns the
  curves {"<name> train" | "<name> test": (epochs, errors)}."""
  curves, styles = {}, {}
  for name, color in colors.items():
    for key, split, style in (("train_eval/error", "train", dict(linestyle="--")),
                              ("test/error", "test", {})):
      steps, err = series(os.path.join(workdir, name), key)
      curves[f"{name} {split}"] = ([s / steps_per_epoch for s in steps], err)
      styles[f"{name} {split}"] = dict(color=color, marker="o", **style)
  plot_curves(curves, path, xlabel="epoch", ylabel="error", styles=styles, title=title)
  return curves


def plot_curves(curves: dict[str, tuple], path: str, *, xlabel: str, ylabel: str,
                title: str = "", hlines: dict[str, float] | None = None,
                styles: dict[str, dict] | None = None, ylim=None,
                yscale: str = "linear") -> str:
  """Saves a PNG of labelled curves {label: (x, y)} (matplotlib's Agg canvas).

  `hlines` {label: y} draws dashed reference lines (e.g. a target error);
  `styles` {label: matplotlib line kwargs} sets a curve's look.
  """
  fig = Figure(figsize=(6.4, 4.2), dpi=100)
  ax = fig.add_subplot()
  for label, (x, y) in curves.items():
    ax.plot(x, y, label=label, **(styles or {}).get(label, {}))
  for label, y in (hlines or {}).items():
    ax.axhline(y, color="gray", linestyle="--", linewidth=1, label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_yscale(yscale)
  if ylim is not None:
    ax.set_ylim(*ylim)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, format="png")
  return path
