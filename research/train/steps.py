"""Train state and the pure, jitted training and evaluation steps."""

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: checkpointing this is resuming exactly."""
  step: jax.Array
  params: Any
  batch_stats: Any   # {} for models without batch norm.
  opt_state: Any
  rng: jax.Array     # Raw uint32 key; step keys are fold_in(rng, step).


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       input_shape, seed: int) -> TrainState:
  """Initialises parameters from `seed` on a zero input of `input_shape` [B, H, W, C]."""
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
  # train=True: layers used only in training (GoogLeNet's auxiliary
  # classifiers) must have parameters too.
  variables = model.init({"params": init_rng, "dropout": init_rng},
                         jnp.zeros(input_shape, jnp.float32), train=True)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}),
                    opt_state=tx.init(params), rng=train_rng)


def to_unit_range(images: jax.Array) -> jax.Array:
  """uint8 [B, H, W, C] -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def standardize(x: jax.Array, mean, std) -> jax.Array:
  """(x - mean) / std, per channel; x float [B, H, W, C] in [0, 1]."""
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0):
  """Mean softmax cross-entropy. logits [B, K], labels int [B]."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def _apply(model, state, params, x, *, train: bool, rng=None):
  """model.apply with batch-norm statistics updated in training when present."""
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  rngs = {"dropout": rng} if rng is not None else None
  if train and state.batch_stats:
    (logits, features), updates = model.apply(
        variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    return logits, features, updates["batch_stats"]
  logits, features = model.apply(variables, x, train=train, rngs=rngs)
  return logits, features, state.batch_stats


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, *,
                    mean, std, label_smoothing: float = 0.0,
                    aux_loss_weight: float = 0.0,
                    augment: Callable | None = None) -> Callable:
  """Returns train_step(state, batch) -> (state, metrics), pure.

  batch: {"image": uint8 [B, H, W, C], "label": int [B]}. Auxiliary
  classifiers (features named "*aux*_logits", GoogLeNet §5) add their
  cross-entropy times `aux_loss_weight`. `augment(key, images) -> images`
  runs on the float [0, 1] images before standardisation.
  """

  def train_step(state: TrainState, batch):
    step_rng = jax.random.fold_in(state.rng, state.step)
    dropout_rng, augment_rng = jax.random.split(step_rng)
    x = to_unit_range(batch["image"])
    if augment is not None:
      x = augment(augment_rng, x)
    x = standardize(x, mean, std)
    labels = batch["label"]

    def loss_fn(params):
      logits, features, batch_stats = _apply(model, state, params, x, train=True,
                                             rng=dropout_rng)
      loss = cross_entropy(logits, labels, label_smoothing)
      total = loss
      for name, aux_logits in features.items():
        if aux_loss_weight and "aux" in name and name.endswith("_logits"):
          total = total + aux_loss_weight * cross_entropy(aux_logits, labels, label_smoothing)
      return total, (loss, logits, batch_stats)

    (total, (loss, logits, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "total_loss": total,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
        "grad_norm": optax.global_norm(grads),
    }
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state)
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, *, mean, std) -> Callable:
  """Returns eval_step(state, batch) -> sums of loss, correct and count.

  batch also has "mask" float [B]: padding rows count for nothing, so metrics
  over a split are exact whatever the batch size.
  """

  def eval_step(state: TrainState, batch):
    x = standardize(to_unit_range(batch["image"]), mean, std)
    logits, _, _ = _apply(model, state, state.params, x, train=False)
    mask = batch["mask"]
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {"loss": jnp.sum(losses * mask), "correct": jnp.sum(correct * mask),
            "count": jnp.sum(mask)}

  return eval_step
