"""The interface between the training loop and an objective.

The loop calls, in this order:

  train_data, eval_splits = Objective.open_inputs(config, train_data)
      the input splits (default: research/data/inputs.training_inputs)
  objective = Objective(config, train_data, total_steps, workdir)
      train_data: research/data/pipeline.py's InputSplit (in memory or
      streamed): len(), num_classes, image_shape, sample_images(n)
  objective.summary()                 -> text of summary.txt, number of parameters
  state = jit(objective.init_state)()  (placed replicated on the device mesh)
  state = objective.start(state)       a new run only (not a resumed one)
  jit(objective.train_step)(state, batch) -> (state, metrics)   every step
  objective.train_extras(step)         host-side scalars logged with the metrics
  jit(objective.eval_step)(state, batch) -> out                  at eval steps
  sums = objective.eval_accumulate(sums, out)  over a split's batches (default: summed)
  objective.eval_metrics(sums)         -> {"loss": ..., ...}    per eval split
  objective.evaluate(state, step)      -> {name: float}          at eval steps

`train_step` and `eval_step` are pure and jittable; batches are
{"image": uint8 [B, H, W, C], "label": int32 [B]} sharded over the batch axis,
and `eval_step`'s also has "mask" float [B] (padding rows count 0). The state
must be a pytree of arrays (it is checkpointed as it is); keys for step s come
from the state and s (`fold_in`), never from host state, so a resumed run
repeats an uninterrupted one exactly.
"""

from typing import Any

import jax

from research.data import inputs
from research.data.pipeline import InputSplit


class Objective:
  """Defaults for an objective without evaluation steps or hooks."""

  # Train metrics shown in progress lines (every metric goes to metrics.jsonl).
  progress_keys: tuple[str, ...] = ("loss",)
  # Evaluate on config.data.eval_split (and eval_train_examples) with eval_step.
  has_eval_split: bool = False
  # Evaluate the fresh state at step 0 too (e.g. the GAN's first sample grid).
  evaluate_at_start: bool = False
  # jit-able (state, batch) -> sums of the eval split; None: no split evals.
  eval_step = None

  def __init__(self, config, train_data: InputSplit, total_steps: int, workdir: str):
    self.config, self.train_data, self.total_steps = config, train_data, total_steps
    self.workdir = workdir  # Files an objective writes go here (process 0 only).

  @classmethod
  def open_inputs(cls, config, train_data=None) -> tuple[InputSplit, dict[str, InputSplit]]:
    """(training split, {prefix: eval split}) the loop trains and evaluates on;
    train_data: the caller's own training split, or None (config.data's)."""
    return inputs.training_inputs(config, train_data, with_eval=cls.has_eval_split)

  def eval_accumulate(self, sums, out):
    """Folds one eval batch's eval_step output into the split's running total
    (None before the first batch): summed leaf by leaf, on the device."""
    return out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)

  def summary(self) -> tuple[str, int]:
    """(summary.txt's text, number of parameters); checks conv arithmetic."""
    raise NotImplementedError

  def init_state(self) -> Any:
    """The fresh state, from config.seed; pure (the loop jits it)."""
    raise NotImplementedError

  def start(self, state) -> Any:
    """Adjusts the fresh state of a new run (not called on resume)."""
    return state

  def train_step(self, state, batch) -> tuple[Any, dict]:
    """One training step, pure: (state, batch) -> (state, scalar metrics)."""
    raise NotImplementedError

  def train_extras(self, step: int) -> dict[str, float]:
    """Host-side scalars logged with the train metrics of `step` (e.g. the learning rate)."""
    return {}

  def eval_metrics(self, sums: dict) -> dict[str, float]:
    """The summed eval_step outputs of a split -> its metrics."""
    return {}

  def evaluate(self, state, step: int) -> dict[str, float]:
    """A periodic hook beside the split evals (e.g. sample grids); returns
    scalars logged under "eval/"."""
    return {}
