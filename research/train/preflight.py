"""Checks that need the data or the experiment, made before any work (issue 13
§4): a run that would train nothing, evaluate nothing, or end in a report
that cannot be written stops here with the key to change.
"""

import math
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections

from research.errors import require


def run_length(config: ml_collections.ConfigDict, num_train: int,
               num_eval: int) -> tuple[int, int]:
  """(steps per epoch, total steps) of a run on `num_train` training examples.

  Raises:
    ValueError: a batch larger than the training split (no full batch: zero
      steps per epoch), or an empty evaluation split.
  """
  require(num_train >= config.batch_size, "batch_size", config.batch_size,
          f"larger than the {num_train} training examples of {config.data.train_split!r}: not "
          "one full batch, so the run would train 0 steps. Lower it or use a larger "
          "config.data.train_split.")
  require(num_eval > 0, "data.eval_split", config.data.eval_split,
          "has no examples (after data.classes); choose a split with some.")
  steps_per_epoch = num_train // config.batch_size
  total_steps = config.total_steps or int(math.ceil(config.num_epochs * steps_per_epoch))
  return steps_per_epoch, total_steps


def require_train_eval(config: ml_collections.ConfigDict, needed_by: str,
                       key: str = "eval_train_examples") -> None:
  """Stops a config whose report reads training-set metrics (`train_eval/*`)
  while `config.eval_train_examples` turns them off.

  Args:
    config: the trainer config the runs use.
    needed_by: what reads them, for the message (e.g. "the report's training
      errors (He et al. 2015, Fig. 6)").
    key: the key's path as the user sets it (e.g. "ablation.eval_train_examples").
  """
  require(config.eval_train_examples > 0, key, config.eval_train_examples,
          f"turns off the training-set evaluation, which is needed for {needed_by}; set it "
          "> 0 (e.g. 10000).")


def trace_eval_step(eval_step: Callable, init_state: Callable,
                    batch_specs: Iterable[dict]) -> None:
  """Traces (does not compile or run) `eval_step` on eval batches of each
  spec {key: (shape, dtype)} in `batch_specs` (pipeline.InputSplit.
  eval_batch_spec), so that what it raises while tracing, e.g. a ConfigError
  for a test-time view that cannot read the eval images (config.eval_views),
  stops the run before any work."""
  state = jax.eval_shape(init_state)
  seen = set()
  for spec in batch_specs:
    key = tuple(sorted((k, tuple(shape), jnp.dtype(dtype).name)
                       for k, (shape, dtype) in spec.items()))
    if key in seen:
      continue
    seen.add(key)
    batch = {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in spec.items()}
    jax.eval_shape(eval_step, state, batch)
