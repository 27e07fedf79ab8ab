"""The image-classification trainer: `train_and_evaluate(config, workdir)`.

Read top to bottom: logging, mesh, input, model, optimizer, steps,
checkpoint, evals, loop. A run writes into `workdir`: config.json,
run_info.json, summary.txt, metrics.jsonl, tensorboard/, checkpoints/. Run it
again with the same workdir and it resumes from the newest checkpoint; the data
order is a function of (seed, step), so the resumed run ends with exactly the
parameters of an uninterrupted one. Nothing is written into `workdir` until
every check that can fail on bad input has passed; then the run holds the
workdir's lock (workdir.py). A step with NaN or inf stops the run before it is
checkpointed (finite.py); a damaged checkpoint is passed over (checkpoint.py).
"""

import os
import re
import signal
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from research import models
from research.data import augment as augment_lib, datasets, pipeline, tfds_source
from research.models import summary as summary_lib
from research.train import (checkpoint, finite, metrics as metrics_lib, optim, preflight,
                            steps, transfer, workdir as workdir_lib)
from research.train.config import require

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
  """Stops impossible settings before any work, naming the key to fix."""
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
  require(config.optimizer.learning_rate > 0, "optimizer.learning_rate",
          config.optimizer.learning_rate, "must be > 0.")
  require(config.optimizer.name in optim.OPTIMIZERS, "optimizer.name",
          config.optimizer.name, f"choose one of {optim.OPTIMIZERS}.")
  require(config.optimizer.schedule in optim.SCHEDULES, "optimizer.schedule",
          config.optimizer.schedule, f"choose one of {optim.SCHEDULES}.")
  require(all(0 < b < 1 for b in config.optimizer.boundaries), "optimizer.boundaries",
          config.optimizer.boundaries, "are fractions of training, each in (0, 1).")
  for key in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps",
              "eval_every_epochs", "checkpoint_every_epochs"):
    require(config[key] >= 0, key, config[key], "must be >= 0 (0: only at the end).")
  require(config.keep_checkpoints >= 1, "keep_checkpoints", config.keep_checkpoints,
          "must be >= 1.")
  datasets.normalization(config.data.name, config.data.mean, config.data.std)  # Raises.
  try:
    augment_lib.parse(config.augment)
  except ValueError as e:
    require(False, "augment", config.augment, str(e))
  for key, pattern in (("freeze", config.freeze),
                       ("init_from.include_regex", config.init_from.include_regex)):
    try:
      re.compile(pattern)
    except re.error as e:
      require(False, key, pattern, f"not a regular expression ({e}).")
  require(config.model.name in models.registry(), "model.name", config.model.name,
          f"unknown model. Known: {', '.join(sorted(models.registry()))}.")


def _every(step: int, interval: int, last: int) -> bool:
  return step == last or (interval > 0 and step % interval == 0)


def _interval_steps(config, what: str, steps_per_epoch: int) -> int:
  """config.<what>_every_epochs when set (> 0), else config.<what>_every_steps."""
  epochs = config[f"{what}_every_epochs"]
  if epochs > 0:
    return max(1, int(round(epochs * steps_per_epoch)))
  return config[f"{what}_every_steps"]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates config.model on config.data; returns the final metrics.

  Raises (before writing anything into `workdir`): ValueError for impossible
  values or a workdir holding a run with another config, workdir.WorkdirBusy
  when another process trains there. FloatingPointError when training becomes
  non-finite, checkpoint.CheckpointError when no checkpoint is intact.
  """
  with workdir_lib.RunGuard(workdir) as guard:  # Holds the workdir's lock until the end.
    return _train_and_evaluate(config, workdir, guard)


def _train_and_evaluate(config, workdir: str, guard: workdir_lib.RunGuard) -> dict:
  validate_config(config)
  guard.check(config)  # Another run in workdir: stop before any work.
  start_time = time.time()
  is_main = jax.process_index() == 0

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
  data = config.data
  train_data = tfds_source.load_split(data.name, data.train_split, data.data_dir,
                                      download=data.download, classes=data.classes)
  eval_data = tfds_source.load_split(data.name, data.eval_split, data.data_dir,
                                     download=data.download, classes=data.classes)
  mean, std = datasets.normalization(data.name, data.mean, data.std)
  datasets.check_channels(data.name, mean, train_data.images.shape[-1])
  logging.info("Standardising with mean=%s, std=%s.", mean, std)
  steps_per_epoch, total_steps = preflight.run_length(config, len(train_data), len(eval_data))
  eval_every = _interval_steps(config, "eval", steps_per_epoch)
  checkpoint_every = _interval_steps(config, "checkpoint", steps_per_epoch)
  logging.info("%d training examples, %d eval; %d steps of %d (%.2f epochs).",
               len(train_data), len(eval_data), total_steps, config.batch_size,
               total_steps / max(steps_per_epoch, 1))

  # --- Model ---------------------------------------------------------------
  model_kwargs = {"num_classes": train_data.num_classes, **config.model.kwargs.to_dict()}
  model = models.get_model(config.model.name, **model_kwargs)
  image_shape = train_data.images.shape[1:]
  summary = summary_lib.summarize(model, image_shape, train=False)  # Checks conv arithmetic.
  logging.info("Model %s: %s parameters.", config.model.name, f"{summary.total_params:,}")

  # --- Optimizer -----------------------------------------------------------
  tx, schedule = optim.make_optimizer(config.optimizer, total_steps)
  tx = transfer.with_frozen(tx, config.freeze)  # Frozen parameters get zero updates.

  # --- Steps ---------------------------------------------------------------
  norm = dict(mean=mean, std=std)
  train_step = jax.jit(finite.with_finite_flag(
      steps.make_train_step(model, tx, label_smoothing=config.label_smoothing,
                            aux_loss_weight=config.aux_loss_weight,
                            augment=augment_lib.build(config.augment, train_data.images), **norm)),
      donate_argnums=0, out_shardings=(replicated, replicated))
  eval_step = jax.jit(steps.make_eval_step(model, **norm), out_shardings=replicated)

  # --- The run is accepted: lock the workdir, write its record. -----------
  guard.accept(config, write=is_main, files={"summary.txt": summary.table() + "\n"})
  writer = metrics_lib.MetricWriter(workdir, enabled=is_main)

  # --- Checkpoint: resume from the newest intact one in workdir, if any. ---
  state = jax.jit(lambda: steps.create_train_state(
      model, tx, (1, *image_shape), config.seed), out_shardings=replicated)()
  ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
  elif config.init_from.workdir:  # A new run that starts from another run's parameters.
    state, copied = transfer.init_from_checkpoint(
        state, tx, config.init_from.workdir, config.init_from.include_regex, replicated)
    logging.info("Initialised %s from %s.", ", ".join(copied), config.init_from.workdir)
  start_step = int(state.step)

  # --- Evals ---------------------------------------------------------------
  def evaluate(split_data, prefix: str) -> dict:
    sums = None
    for batch in pipeline.eval_batches(split_data, config.eval_batch_size,
                                       process_index=jax.process_index(),
                                       process_count=jax.process_count()):
      out = eval_step(state, to_global(batch))
      sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)
    sums = jax.device_get(sums)
    return {f"{prefix}/loss": float(sums["loss"] / sums["count"]),
            f"{prefix}/accuracy": float(sums["correct"] / sums["count"]),
            f"{prefix}/error": float(1 - sums["correct"] / sums["count"])}

  train_eval_data = None
  if config.eval_train_examples:
    n = min(config.eval_train_examples, len(train_data))
    train_eval_data = tfds_source.ArraySplit(train_data.images[:n], train_data.labels[:n],
                                             train_data.class_names)

  def run_evals(step: int) -> dict:
    results = evaluate(eval_data, "test")
    if train_eval_data is not None:
      results.update(evaluate(train_eval_data, "train_eval"))
    writer.write(step, results)
    logging.info("eval at step %d: %s", step,
                 ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    return results

  # --- Loop ----------------------------------------------------------------
  batches = pipeline.train_batches(
      train_data, config.batch_size, config.seed, start_step,
      process_index=jax.process_index(), process_count=jax.process_count())
  progress = metrics_lib.Progress(total_steps, config.batch_size, start_step)
  kill_at = int(os.environ.get(_KILL_AT_STEP_ENV, -1))
  pending, last_train, last_eval = [], {}, {}

  def flush_train_metrics(step: int) -> dict:
    """Fetches pending step metrics; stops the run on a non-finite step."""
    if not pending:
      return last_train
    fetched = jax.device_get(pending)
    pending.clear()
    bad = finite.first_nonfinite(fetched, step - len(fetched) + 1)
    if bad:
      raise FloatingPointError(
          f"Training {bad[1]} at step {bad[0]}; stopping. {ckpt.newest_text()} Lower "
          "config.optimizer.learning_rate or check the data.")
    means = {f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    means["train/learning_rate"] = float(schedule(step - 1))
    return means

  for step in range(start_step + 1, total_steps + 1):
    state, step_metrics = train_step(state, to_global(next(batches)))
    pending.append(step_metrics)
    if step == start_step + 1:
      progress.restart_clock(step)
    if _every(step, config.log_every_steps, total_steps):
      last_train = flush_train_metrics(step)
      writer.write(step, last_train)
      progress.log(step, {k.split("/")[1]: v for k, v in last_train.items()
                          if k in ("train/loss", "train/accuracy")})
    if _every(step, eval_every, total_steps):
      last_eval = run_evals(step)
    preempted = step < total_steps and _preemption_agreed(step)
    if preempted or _every(step, checkpoint_every, total_steps):
      last_train = flush_train_metrics(step)  # Never checkpoint a NaN state.
      ckpt.save(step, state)
      last_saved = step
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

  return {
      **last_train, **last_eval,
      "steps": total_steps,
      "epochs": total_steps / max(steps_per_epoch, 1),
      "num_params": summary.total_params,
      "wall_time_s": time.time() - start_time,
      "train_images_per_s": progress.images_per_second(total_steps),
  }
