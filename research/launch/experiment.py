"""Experiment modules: loading them, listing them, running one to its report.

An experiment module (experiments/<paper>.py) defines
  get_config(arg) -> ConfigDict   docstring: the command, runtime, expected result;
  claims(config) -> list[Claim]   the paper's claims, checked on our metrics;
  run(config, workdir) -> dict    optional; default: the standard trainer;
  validate_config(config)         optional; default: the standard trainer's.
  notes(config, metrics) -> str   optional; a section of report.md above the claims
                                  (what was measured how, why a claim fails here).
"""

import contextlib
import glob
import importlib.util
import json
import os
import shlex
import sys
import types

import jax

from research import errors, report
from research.train import trainer

EXPERIMENTS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "experiments")


def load_module(path: str) -> types.ModuleType:
  """Imports an experiment module from its file path."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"Experiment file {path} does not exist; list them with "
                            "`python launch.py --list`.")
  name = "experiment_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def list_experiments() -> list[tuple[str, str]]:
  """(path, first docstring line) of every experiment module."""
  rows = []
  for path in sorted(glob.glob(os.path.join(EXPERIMENTS_DIR, "*.py"))):
    if os.path.basename(path).startswith("_"):
      continue
    module = load_module(path)
    title = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
    rows.append((os.path.relpath(path, os.path.join(EXPERIMENTS_DIR, "..")), title))
  return rows


def command_line() -> str:
  """The command that started this process, as a user would retype it."""
  return " ".join(shlex.quote(a) for a in ["python", os.path.basename(sys.argv[0]),
                                            *sys.argv[1:]])


def validate(module: types.ModuleType, config) -> None:
  """Raises ValueError naming the config key when a value is impossible."""
  getattr(module, "validate_config", trainer.validate_config)(config)


def run_experiment(module: types.ModuleType, config, workdir: str,
                   command: str | None = None) -> dict:
  """Runs the experiment into `workdir` and writes its report.md; returns metrics."""
  validate(module, config)
  run = getattr(module, "run", trainer.train_and_evaluate)
  metrics = run(config, workdir)
  if jax.process_index() != 0:  # Multi-host: one report per run, not one per process.
    return metrics
  _write_report(module, config, workdir, metrics, command or command_line())
  return metrics


def rewrite_report(module: types.ModuleType, config, workdir: str) -> dict:
  """Writes `workdir`'s report again from its metrics.json, without training or
  evaluating: the claims and notes of `module` under `config`, with the runs in
  config.compare read again (e.g. a compared detector that finished later).
  The report keeps the command that made the run and adds this one's.

  Raises:
    errors.ConfigError: `workdir` holds no metrics.json (no finished run).
  """
  path = os.path.join(workdir, "metrics.json")
  if not os.path.exists(path):
    raise errors.ConfigError(f"--report_only: {path} does not exist; run the experiment into "
                             f"--workdir={workdir} first.")
  with open(path) as f:
    metrics = json.load(f)
  if "compare" in config:
    compared = tuple(config.compare)
    metrics = {k: v for k, v in metrics.items()
               if k.split("/")[0] not in compared + ("compare",)}
    metrics.update(report.compared_metrics(workdir, config.compare))
  command = command_line()
  with contextlib.suppress(FileNotFoundError), open(os.path.join(workdir, "report.md")) as f:
    old = f.read().split("```\n")  # The first fenced block holds the run's own command(s).
    if len(old) > 2:
      command = (old[1].strip().split("\n# report rewritten by:")[0]
                 + f"\n# report rewritten by: {command}")
  _write_report(module, config, workdir, metrics, command)
  return metrics


def _write_report(module, config, workdir: str, metrics: dict, command: str) -> None:
  if jax.process_index() != 0:  # Multi-host: one report per run, not one per process.
    return
  results = report.evaluate_claims(module.claims(config) if hasattr(module, "claims") else [],
                                   metrics)
  title = (module.__doc__ or module.__name__).strip().splitlines()[0]
  notes = module.notes(config, metrics) if hasattr(module, "notes") else ""
  path = report.write_report(workdir, title=title, command=command,
                             metrics=metrics, results=results, notes=notes)
  for r in results:
    print(f"[{r.verdict}] {r.claim.source}: {r.claim.statement} paper {r.claim.paper}, "
          f"ours {r.ours_text()} ({r.claim.check_text})")
  print(f"Report: {path}")
