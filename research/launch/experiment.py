"""Experiment modules: loading them, listing them, running one to its report.

An experiment module (experiments/<paper>.py) defines
  get_config(arg) -> ConfigDict   docstring: the command, runtime, expected result;
  claims(config) -> list[Claim]   the paper's claims, checked on our metrics;
  run(config, workdir) -> dict    optional; default: the standard trainer;
  validate_config(config)         optional; default: the standard trainer's.
  notes(config, metrics) -> str   optional; a section of report.md above the claims
                                  (what was measured how, why a claim fails here).
"""

import glob
import importlib.util
import os
import shlex
import sys
import types

import jax

from research import report
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
  results = report.evaluate_claims(module.claims(config) if hasattr(module, "claims") else [],
                                   metrics)
  title = (module.__doc__ or module.__name__).strip().splitlines()[0]
  notes = module.notes(config, metrics) if hasattr(module, "notes") else ""
  path = report.write_report(workdir, title=title, command=command or command_line(),
                             metrics=metrics, results=results, notes=notes)
  for r in results:
    print(f"[{r.verdict}] {r.claim.source}: {r.claim.statement} paper {r.claim.paper}, "
          f"ours {r.ours_text()} ({r.claim.check_text})")
  print(f"Report: {path}")
  return metrics
