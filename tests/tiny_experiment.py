"""A tiny experiment for the sweep, Slurm and multi-host tests: seconds per run.

Sweeps: (none) two good runs; `fail` one good run and one whose loss diverges;
`slow` sleeps 0.15 s per training step, so a test can signal a run mid-way.
"""

import time

from research.launch import sweep as sweep_lib
from research.train import trainer
from tests.conftest import make_tiny_config


def get_config(arg: str | None = None):
  config = make_tiny_config()
  config.arg = arg or ""
  if arg == "slow":
    config.total_steps, config.checkpoint_every_steps = 60, 20
  return config


def sweep(arg: str | None = None) -> list[dict]:
  if arg == "fail":  # The second run diverges: the trainer stops it with a NaN error.
    return sweep_lib.product({"optimizer.learning_rate": [0.05, 1e30]})
  return sweep_lib.product({"optimizer.learning_rate": [0.02, 0.05]},
                           sweep_lib.fixed(log_every_steps=6))


def run(config, workdir: str) -> dict:
  if config.arg == "slow":
    batches = trainer.pipeline.train_batches

    def slow_batches(*args, **kwargs):
      for batch in batches(*args, **kwargs):
        time.sleep(0.15)
        yield batch
    trainer.pipeline.train_batches = slow_batches
  return trainer.train_and_evaluate(config, workdir)
