"""Training a classifier on the standard or the adversarial objective, resumably.

Goodfellow et al. 2014, eq. 6 trains on
  alpha J(θ, x, y) + (1 - alpha) J(θ, x + ε sign(∇x J(θ, x, y)), y),
the FGSM perturbation recomputed from the current parameters at every step
(`research.ops.adversarial.adversarial_training_loss`). The standard trainer
(`research/train/trainer.py`) takes its loss from `steps.make_train_step`
and has no hook for another objective, so this is its small single-device
counterpart for the adversarial experiment. It keeps the trainer's
guarantees: the same TrainState, data order a function of (seed, step),
dropout keys fold_in(rng, step), orbax checkpoints every few steps (a killed
run resumes where it stopped and ends with the same parameters),
metrics.jsonl and progress lines. adversarial_epsilon = 0 is plain
cross-entropy training, so every classifier of the experiment goes through
the same loop. Models with batch norm are not supported (none of the
adversarial paper's are).
"""

import os

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research.data import pipeline
from research.data.tfds_source import ArraySplit
from research.ops import adversarial
from research.train import checkpoint, metrics as metrics_lib, optim, steps


def make_apply_fn(model: nn.Module, mean, std):
  """(variables, x in [0, 1]) -> logits, inference mode, standardisation inside.

  The attacks differentiate with respect to pixels through this function and
  take it as a static jit argument: make it once per model and reuse it.
  """
  mean, std = tuple(mean), tuple(std)

  def apply_fn(variables, x):
    logits, _ = model.apply(variables, steps.standardize(x, mean, std), train=False)
    return logits

  return apply_fn


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, *, mean, std,
                    adversarial_epsilon: float = 0.0, adversarial_alpha: float = 0.5):
  """train_step(state, batch) -> (state, metrics), pure; jit it.

  batch: {"image": uint8 [B, H, W, C], "label": int [B]}. With
  adversarial_epsilon > 0 the loss is eq. 6; metrics then also report the
  loss and accuracy on this batch's adversarial half.
  """
  mean, std = tuple(mean), tuple(std)

  def train_step(state: steps.TrainState, batch):
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    x, y = steps.to_unit_range(batch["image"]), batch["label"]

    # A loss of pixels in [0, 1]: the FGSM perturbation is taken in pixel space.
    def loss_fn(params, x_, y_):
      logits, _ = model.apply({"params": params}, steps.standardize(x_, mean, std),
                              train=True, rngs={"dropout": dropout_rng})
      return steps.cross_entropy(logits, y_), logits

    def objective(params):
      if adversarial_epsilon > 0:
        total, (clean_logits, adv_logits) = adversarial.adversarial_training_loss(
            loss_fn, params, x, y, adversarial_epsilon, adversarial_alpha, has_aux=True)
        return total, (clean_logits, adv_logits)
      loss, logits = loss_fn(params, x, y)
      return loss, (logits, None)

    (loss, (logits, adv_logits)), grads = jax.value_and_grad(
        objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
               "grad_norm": optax.global_norm(grads)}
    if adv_logits is not None:
      metrics["adversarial_accuracy"] = jnp.mean(jnp.argmax(adv_logits, -1) == y)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), metrics

  return train_step


def train_classifier(model: nn.Module, train_data: ArraySplit, workdir: str, *,
                     total_steps: int, batch_size: int, optimizer: ml_collections.ConfigDict,
                     seed: int, mean, std, adversarial_epsilon: float = 0.0,
                     adversarial_alpha: float = 0.5, log_every_steps: int = 100,
                     checkpoint_every_steps: int = 500, keep_checkpoints: int = 2) -> dict:
  """Trains `model` into `workdir` (resuming from its newest checkpoint).

  Returns the inference variables {"params": ...}. `optimizer` is a config
  like `base_config().optimizer` (research/train/optim.py).
  """
  tx, schedule = optim.make_optimizer(optimizer, total_steps)
  state = jax.jit(lambda: steps.create_train_state(
      model, tx, (1, *train_data.images.shape[1:]), seed))()
  if jax.tree.leaves(state.batch_stats):
    raise ValueError(f"{type(model).__name__} has batch norm; train_classifier does not "
                     "support it.")
  ckpt = checkpoint.Checkpointer(workdir, keep=keep_checkpoints)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
  start_step = int(state.step)
  if start_step >= total_steps:
    ckpt.close()
    return {"params": state.params}

  train_step = jax.jit(make_train_step(model, tx, mean=mean, std=std,
                                       adversarial_epsilon=adversarial_epsilon,
                                       adversarial_alpha=adversarial_alpha), donate_argnums=0)
  writer = metrics_lib.MetricWriter(workdir, tensorboard=False)
  batches = pipeline.train_batches(train_data, batch_size, seed, start_step)
  progress = metrics_lib.Progress(total_steps, batch_size, start_step)
  name = os.path.basename(os.path.normpath(workdir))
  pending = []
  for step in range(start_step + 1, total_steps + 1):
    state, step_metrics = train_step(state, next(batches))
    pending.append(step_metrics)
    if step == start_step + 1:
      progress.restart_clock(step)
    is_log = step % log_every_steps == 0 or step == total_steps
    is_checkpoint = step % checkpoint_every_steps == 0 or step == total_steps
    if is_log or is_checkpoint:  # Never checkpoint a NaN state.
      means = metrics_lib.fetch_means(pending)
      if not np.isfinite(means["loss"]):
        ckpt.wait()
        raise FloatingPointError(f"{name}: training loss became {means['loss']} by step "
                                 f"{step}; lower the learning rate. Checkpoints in "
                                 f"{ckpt.directory}.")
    if is_log:
      writer.write(step, {**{f"train/{k}": v for k, v in means.items()},
                          "train/learning_rate": float(schedule(step - 1))})
      logging.info("%s: %s", name, progress.line(step, {
          k: v for k, v in means.items() if k != "grad_norm"}))
    if is_checkpoint:
      ckpt.save(step, state)
  ckpt.close()
  writer.close()
  return {"params": state.params}
