"""The one training loop: `train(config, workdir)`, for every objective.

What is trained is the objective named by config.objective.name
(research/train/objectives/: classification, adversarial, gan, faster_rcnn); this loop owns
everything else, the same for all of them. Read top to bottom: logging, mesh,
input, objective, steps, checkpoint, evals, loop. A run writes into `workdir`:
config.json, run_info.json, summary.txt, metrics.jsonl, tensorboard/,
checkpoints/. Run it again with the same workdir and it resumes from the newest
checkpoint; the data order is a function of (seed, step) and the objectives
take their step keys from (state, step), so the resumed run ends with exactly
the state of an uninterrupted one. Nothing is written into `workdir` until
every check that can fail on bad input has passed; then the run holds the
workdir's lock (workdir.py). A step with NaN or inf (in any metric, the
parameters or the optimizer state) stops the run before it is checkpointed
(finite.py); a damaged checkpoint is passed over (checkpoint.py).
"""

import dataclasses
import os
import signal
import time
from typing import Any, Callable

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from research.data import inputs, pipeline
from research.data.tfds_source import ArraySplit
from research.models import conv_impl
from research.train import (checkpoint, finite, metrics as metrics_lib, objectives, precision,
                            preflight, workdir as workdir_lib)
from research.errors import require

# Fault injection for the resume test: SIGKILL this process after this step.
_KILL_AT_STEP_ENV = "RESEARCH_TEST_SIGKILL_AT_STEP"

# Preemption: a launcher's handler of Slurm's warning signal calls
# request_preemption(); the loop then checkpoints the step it is at and raises
# Preempted, and the launcher requeues the job, which resumes from that step.
# With several processes all must stop at the same step (saving is
# collective), so they agree every few steps instead of reading their own flag.
_preemption_requested = False
PREEMPTION_SYNC_EVERY_STEPS = 10


class Preempted(Exception):
  """The run stopped early on request, after checkpointing its current step."""


def request_preemption() -> None:
  """Asks the training loop to checkpoint and stop (safe in a signal handler)."""
  global _preemption_requested
  _preemption_requested = True


def _preemption_agreed(step: int) -> bool:
  if jax.process_count() == 1:
    return _preemption_requested
  if step % PREEMPTION_SYNC_EVERY_STEPS:
    return False
  flags = multihost_utils.process_allgather(np.int32(_preemption_requested))
  return bool(np.any(flags))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops impossible settings before any work, naming the key to fix: the
  loop's own keys here, the objective's in its module's validate_config."""
  require(config.batch_size > 0, "batch_size", config.batch_size, "must be > 0.")
  require(config.batch_size % jax.device_count() == 0, "batch_size", config.batch_size,
          f"must be divisible by the {jax.device_count()} devices.")
  require(config.eval_batch_size > 0, "eval_batch_size", config.eval_batch_size,
          "must be > 0.")
  require(config.eval_batch_size % jax.device_count() == 0, "eval_batch_size",
          config.eval_batch_size, f"must be divisible by the {jax.device_count()} devices.")
  require((config.total_steps > 0) != (config.num_epochs > 0), "total_steps",
          config.total_steps,
          f"set exactly one of total_steps and num_epochs (num_epochs={config.num_epochs}) "
          "to a positive value.")
  for key in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps",
              "eval_every_epochs", "checkpoint_every_epochs"):
    require(config[key] >= 0, key, config[key], "must be >= 0 (0: only at the end).")
  require(config.keep_checkpoints >= 1, "keep_checkpoints", config.keep_checkpoints,
          "must be >= 1.")
  inputs.validate(config.data)
  precision.validate_config(config)
  conv_impl.validate(config.conv_impl)
  objectives.get(config.objective.name).validate_config(config)


def _every(step: int, interval: int, last: int) -> bool:
  return step == last or (interval > 0 and step % interval == 0)


def _interval_steps(config, what: str, steps_per_epoch: int) -> int:
  """config.<what>_every_epochs when set (> 0), else config.<what>_every_steps."""
  epochs = config[f"{what}_every_epochs"]
  if epochs > 0:
    return max(1, int(round(epochs * steps_per_epoch)))
  return config[f"{what}_every_steps"]


@dataclasses.dataclass
class TrainResult:
  state: Any      # The objective's final state (steps.TrainState, gan_step.GANState, ...).
  metrics: dict   # The last train and eval metrics, steps, epochs, num_params, times.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates config.objective on config.data; returns the final metrics."""
  return train(config, workdir).metrics


def train(config: ml_collections.ConfigDict, workdir: str, *,
          train_data: ArraySplit | None = None,
          eval_fn: Callable[[Any, int], dict] | None = None) -> TrainResult:
  """Trains (or resumes) config.objective into `workdir`.

  Args:
    train_data: the training split (e.g. a subset made by the caller, an
      ArraySplit in memory, given config.data's preprocessing); default:
      config.data.train_split, opened here (research/data/inputs.py: in
      memory or streamed).
    eval_fn: (state, step) -> {name: float}, run at every evaluation after the
      objective's own, logged under "eval/" (e.g. a GAN's Fréchet distance).

  Raises (before writing anything into `workdir`): ValueError for impossible
  values or a workdir holding a run with another config, workdir.WorkdirBusy
  when another process trains there. FloatingPointError when training becomes
  non-finite, checkpoint.CheckpointError when no checkpoint is intact,
  Preempted when request_preemption() was called (the step is checkpointed).
  """
  # conv_impl: every model traced in the run computes its nn.Conv layers with it;
  # the guard holds the workdir's lock until the end.
  with conv_impl.use(config.conv_impl), workdir_lib.RunGuard(workdir) as guard:
    return _train(config, workdir, guard, train_data, eval_fn)


def _train(config, workdir: str, guard: workdir_lib.RunGuard, train_data, eval_fn):
  validate_config(config)
  guard.check(config)  # Another run in workdir: stop before any work.
  start_time = time.time()
  is_main = jax.process_index() == 0
  objective_lib = objectives.get(config.objective.name)

  # --- Mesh: the batch is split over every device; the state is replicated.
  # Auto axes: XLA propagates the batch sharding (make_mesh defaults to Explicit).
  mesh = jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())

  def to_global(local_batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(data_sharding, x), local_batch)

  # --- Input ---------------------------------------------------------------
  train_data, eval_splits = objective_lib.Objective.open_inputs(config, train_data)
  steps_per_epoch, total_steps = preflight.run_length(
      config, len(train_data), len(eval_splits["test"]) if eval_splits else 1)
  eval_every = _interval_steps(config, "eval", steps_per_epoch)
  checkpoint_every = _interval_steps(config, "checkpoint", steps_per_epoch)
  logging.info("%d training examples; %d steps of %d (%.2f epochs).", len(train_data),
               total_steps, config.batch_size, total_steps / max(steps_per_epoch, 1))

  # --- Objective: model(s), optimizer(s), the pure steps -------------------
  objective = objective_lib.Objective(config, train_data, total_steps, workdir)
  summary_text, num_params = objective.summary()  # Checks conv arithmetic.

  # --- Steps ---------------------------------------------------------------
  train_step = jax.jit(finite.with_finite_flag(objective.train_step), donate_argnums=0,
                       out_shardings=(replicated, replicated))
  eval_step = (jax.jit(objective.eval_step, out_shardings=replicated)
               if objective.eval_step is not None else None)
  if eval_step is not None:  # Traced now: an eval that cannot run stops before any work.
    preflight.trace_eval_step(objective.eval_step, objective.init_state,
                              [s.eval_batch_spec(config.eval_batch_size)
                               for s in eval_splits.values()])

  # --- The run is accepted: lock the workdir, write its record. -----------
  guard.accept(config, write=is_main, files={"summary.txt": summary_text + "\n"})
  writer = metrics_lib.MetricWriter(workdir, enabled=is_main)

  # --- Checkpoint: resume from the newest one in workdir, if any. ----------
  state = jax.jit(objective.init_state, out_shardings=replicated)()
  ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
  else:
    state = objective.start(state)  # E.g. parameters from another run (init_from).
  start_step = int(state.step)

  # --- Evals: the objective's eval step over the eval split (and part of the
  # training split), its periodic hook, then the caller's eval_fn. ---------
  def evaluate(split_data, prefix: str) -> dict:
    sums = None
    for batch in pipeline.eval_batches(split_data, config.eval_batch_size,
                                       process_index=jax.process_index(),
                                       process_count=jax.process_count()):
      sums = objective.eval_accumulate(sums, eval_step(state, to_global(batch)))
    return {f"{prefix}/{k}": v
            for k, v in objective.eval_metrics(jax.device_get(sums)).items()}

  eval_seconds = 0.0  # Evaluation time inside the loop: not training time.

  def run_evals(step: int) -> dict:
    nonlocal eval_seconds
    eval_start = time.time()
    results = {}
    for prefix, split_data in eval_splits.items():
      results.update(evaluate(split_data, prefix))
    hooks = {**objective.evaluate(state, step), **(eval_fn(state, step) if eval_fn else {})}
    results.update({f"eval/{k}": v for k, v in hooks.items()})
    if results:
      writer.write(step, results)
      logging.info("eval at step %d: %s", step,
                   ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    eval_seconds += time.time() - eval_start
    return results

  # --- Loop ----------------------------------------------------------------
  batches = pipeline.train_batches(
      train_data, config.batch_size, config.seed, start_step,
      process_index=jax.process_index(), process_count=jax.process_count())
  progress = metrics_lib.Progress(total_steps, config.batch_size, start_step)
  kill_at = int(os.environ.get(_KILL_AT_STEP_ENV, -1))
  pending, last_train, last_eval = [], {}, {}

  def stop_if_nonfinite(fetched: list, step: int) -> None:
    bad = finite.first_nonfinite(fetched, step - len(fetched) + 1)
    if bad:
      raise FloatingPointError(
          f"Training {bad[1]} at step {bad[0]}; stopping. {ckpt.newest_text()} Lower "
          "the learning rate or check the data.")

  def flush_train_metrics(step: int) -> dict:
    """Fetches pending step metrics; stops the run on a non-finite step."""
    if not pending:
      return last_train
    fetched = jax.device_get(pending)
    pending.clear()
    stop_if_nonfinite(fetched, step)
    means = {f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    means.update({f"train/{k}": v for k, v in objective.train_extras(step).items()})
    return means

  loop_start = time.time()
  # Training seconds of the earlier invocations of a resumed run, up to its checkpoint.
  logged = [v for s, v in zip(*metrics_lib.series(workdir, "train_time_s")) if s <= start_step]
  prior_train_s = logged[-1] if start_step and logged else 0.0

  def train_seconds() -> float:
    """The run's training steps so far (compilation included), without the evaluations,
    opening the inputs (dataset preparation, proposals) and what came before."""
    return prior_train_s + time.time() - loop_start - eval_seconds

  if start_step == 0 and objective.evaluate_at_start:
    last_eval = run_evals(0)
  for step in range(start_step + 1, total_steps + 1):
    state, step_metrics = train_step(state, to_global(next(batches)))
    pending.append(step_metrics)
    if step == start_step + 1:
      progress.restart_clock(step)
    if _every(step, config.log_every_steps, total_steps):
      last_train = flush_train_metrics(step)
      writer.write(step, last_train)
      progress.log(step, {k: last_train[f"train/{k}"] for k in objective.progress_keys})
    if _every(step, eval_every, total_steps):
      # A non-finite state is never evaluated (nor logged as a result); the
      # pending metrics stay pending, so logged means are unchanged.
      stop_if_nonfinite(jax.device_get(pending), step)
      last_eval = run_evals(step)
    preempted = step < total_steps and _preemption_agreed(step)
    if preempted or _every(step, checkpoint_every, total_steps):
      last_train = flush_train_metrics(step)  # Never checkpoint a NaN state.
      ckpt.save(step, state)
      writer.write(step, {"train_time_s": train_seconds()})  # Read back on resume.
    if preempted:
      ckpt.close()
      writer.close()
      raise Preempted(f"Preempted at step {step} of {total_steps}; checkpointed in "
                      f"{ckpt.directory}. Run again with the same workdir to resume.")
    if step == kill_at:
      os.kill(os.getpid(), signal.SIGKILL)

  if start_step >= total_steps:  # Resumed a finished run: just evaluate.
    last_eval = run_evals(total_steps)
  ckpt.close()
  writer.close()

  return TrainResult(state, {
      **last_train, **last_eval,
      "steps": total_steps,
      "epochs": total_steps / max(steps_per_epoch, 1),
      "num_params": num_params,
      "wall_time_s": time.time() - start_time,
      "train_time_s": train_seconds(),
      "train_images_per_s": progress.images_per_second(total_steps),
  })
