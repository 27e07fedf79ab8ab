"""Train state and the pure training and evaluation steps of the classifier
objectives (research/train/objectives/): plain cross-entropy and Goodfellow et
al.'s adversarial training. The loop (research/train/trainer.py) jits them."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from research import models
from research.errors import ConfigError
from research.ops import adversarial, views
from research.train import precision


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


def _keep_frozen(old, new, frozen: frozenset[str], prefix: str = ""):
  """`new` (a variable collection, nested dicts) with the subtrees of frozen
  modules taken from `old`: their running statistics never move."""
  if not isinstance(new, dict):
    return new
  return {k: (old[k] if f"{prefix}{k}" in frozen else
              _keep_frozen(old[k], v, frozen, f"{prefix}{k}/")) for k, v in new.items()}


def _running_average_in(frozen: frozenset[str]):
  """An interceptor that makes the BatchNorm layers of frozen modules normalise
  with their running statistics, as at inference: a frozen layer computes the
  same function during fine-tuning as before it."""
  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if not (isinstance(module, nn.BatchNorm) and context.method_name == "__call__"
            and "/".join(module.path) in frozen):
      return next_fun(*args, **kwargs)
    if kwargs.get("use_running_average") is not None:  # Chosen at call time.
      return next_fun(*args, **{**kwargs, "use_running_average": True})
    # Chosen in the constructor (this project's models: not train). Flax allows
    # only one of the two, so the bound instance's field is switched for this call.
    chosen = module.use_running_average
    object.__setattr__(module, "use_running_average", True)
    try:
      return next_fun(*args, **kwargs)
    finally:
      object.__setattr__(module, "use_running_average", chosen)
  return interceptor


def _apply(model, state, params, x, *, train: bool, rng=None,
           frozen: frozenset[str] = frozenset(), compute_dtype: str = "float32",
           **call_kwargs):
  """model.apply with batch-norm statistics updated in training when present
  (except those of `frozen` modules, which are used and kept), in
  `compute_dtype` (`precision.apply`: logits and features come back float32).
  `call_kwargs`: the model's other call keywords, in inference (dense=True)."""
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  rngs = {"dropout": rng} if rng is not None else None
  if train and state.batch_stats:
    with nn.intercept_methods(_running_average_in(frozen)):
      (logits, features), updates = precision.apply(
          model, variables, x, train=True, rngs=rngs, mutable=["batch_stats"],
          compute_dtype=compute_dtype)
    return logits, features, _keep_frozen(state.batch_stats, updates["batch_stats"], frozen)
  logits, features = precision.apply(model, variables, x, train=train, rngs=rngs,
                                     compute_dtype=compute_dtype, **call_kwargs)
  return logits, features, state.batch_stats


def _apply_gradients(state: TrainState, tx: optax.GradientTransformation, grads, **changes):
  """state one step on: tx's update of `grads` applied, step + 1, `changes` replaced."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state, **changes)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, *,
                    mean, std, label_smoothing: float = 0.0,
                    aux_loss_weight: float = 0.0,
                    augment: Callable | None = None,
                    frozen: frozenset[str] = frozenset(),
                    compute_dtype: str = "float32") -> Callable:
  """Returns train_step(state, batch) -> (state, metrics), pure.

  batch: {"image": uint8 [B, H, W, C], "label": int [B]}. Auxiliary
  classifiers (GoogLeNet §5), returned by the model as
  features[models.AUX_LOGITS] = {head: logits [B, K]}, add their
  cross-entropy times `aux_loss_weight`. `augment(key, images) -> images`
  runs on the float [0, 1] images before standardisation. `frozen`
  (`transfer.frozen_modules`): modules whose batch norm uses and keeps its running
  statistics (their parameters are frozen by `transfer.with_frozen(tx)`).
  `compute_dtype` ("float32" | "bfloat16"): the model's arithmetic
  (`precision.apply`); parameters, optimizer state, loss and metrics stay float32.
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
                                             rng=dropout_rng, frozen=frozen,
                                             compute_dtype=compute_dtype)
      loss = cross_entropy(logits, labels, label_smoothing)
      total = loss
      if aux_loss_weight:
        for aux_logits in features.get(models.AUX_LOGITS, {}).values():
          total = total + aux_loss_weight * cross_entropy(aux_logits, labels, label_smoothing)
      return total, (loss, logits, batch_stats)

    (total, (loss, logits, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    metrics = {
        "loss": loss,
        "total_loss": total,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
        "grad_norm": optax.global_norm(grads),
    }
    return _apply_gradients(state, tx, grads, batch_stats=batch_stats), metrics

  return train_step


def make_adversarial_train_step(model: nn.Module, tx: optax.GradientTransformation, *,
                                mean, std, epsilon: float, alpha: float = 0.5,
                                compute_dtype: str = "float32") -> Callable:
  """train_step(state, batch) -> (state, metrics) on Goodfellow et al. 2014's eq. 6,
  alpha J(x) + (1 - alpha) J(x + epsilon sign(grad_x J)), pure.

  The FGSM perturbation is taken in pixel space ([0, 1]; standardisation is
  part of the loss) from the current parameters at every step
  (`research.ops.adversarial.adversarial_training_loss`). epsilon = 0 is
  plain cross-entropy. The step's dropout key is fold_in(rng, step) itself
  (the key of the adversarial experiment's reported runs; the plain step
  splits it with an augmentation key). Metrics: loss (eq. 6), accuracy, and
  with epsilon > 0 adversarial_accuracy on this batch's adversarial half.
  Batch norm is not supported (`objectives.adversarial` refuses such models).
  `compute_dtype`: as in `make_train_step`; the perturbation is taken from the
  float32 gradient with respect to the float32 pixels.
  """
  mean, std = tuple(mean), tuple(std)

  def train_step(state: TrainState, batch):
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    x, y = to_unit_range(batch["image"]), batch["label"]

    def loss_fn(params, x_, y_):  # Of pixels in [0, 1].
      logits, _ = precision.apply(model, {"params": params}, standardize(x_, mean, std),
                                  train=True, rngs={"dropout": dropout_rng},
                                  compute_dtype=compute_dtype)
      return cross_entropy(logits, y_), logits

    def objective(params):
      if epsilon > 0:
        return adversarial.adversarial_training_loss(loss_fn, params, x, y, epsilon, alpha,
                                                     has_aux=True)
      loss, logits = loss_fn(params, x, y)
      return loss, (logits, None)

    (loss, (logits, adv_logits)), grads = jax.value_and_grad(
        objective, has_aux=True)(state.params)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
               "grad_norm": optax.global_norm(grads)}
    if adv_logits is not None:
      metrics["adversarial_accuracy"] = jnp.mean(jnp.argmax(adv_logits, -1) == y)
    return _apply_gradients(state, tx, grads), metrics

  return train_step


def make_apply_fn(model: nn.Module, mean, std) -> Callable:
  """(variables, x float [B, H, W, C] in [0, 1]) -> logits [B, K], inference
  mode, standardisation inside.

  The attacks differentiate with respect to pixels through this function and
  take it as a static jit argument: make it once per model and reuse it.
  """
  mean, std = tuple(mean), tuple(std)

  def apply_fn(variables, x):
    logits, _ = model.apply(variables, standardize(x, mean, std), train=False)
    return logits

  return apply_fn


def make_eval_step(model: nn.Module, *, mean, std,
                   eval_views: Sequence[views.View] = (views.View("central"),),
                   compute_dtype: str = "float32") -> Callable:
  """Returns eval_step(state, batch) -> sums of loss, correct, correct5 and count.

  Each of `eval_views` (`research.ops.views`: central, central_crop(s),
  ten_crop(s), dense(q1,...)) gives log class posteriors, from which the
  cross-entropy, top-1 and top-5 hits are summed: keys "loss", "correct",
  "correct5" for the first view, "<view name>/loss" etc. for the others.
  "correct5" (the label among the 5 highest posteriors, ties broken by class
  index as `lax.top_k` does) is left out when there are 5 classes or fewer,
  where it would always be 1. A dense view applies the model with dense=True
  (its FC layers as convolutions). batch also has "mask" float [B]: padding
  rows count for nothing, so metrics over a split are exact whatever the batch
  size. The model runs in `compute_dtype`, as in training; the loss is float32.

  Raises (at trace time, i.e. when jitted or traced on the eval images' shapes):
    ConfigError: a view that cannot read these images (a crop larger than them,
      a score map or model input of the wrong size), naming config.eval_views.
  """

  def eval_step(state: TrainState, batch):
    def apply_fn(params, x, **call_kwargs):  # x float [B, H, W, C] in [0, 1].
      return _apply(model, state, params, standardize(x, mean, std), train=False,
                    compute_dtype=compute_dtype, **call_kwargs)[0]

    images, labels, mask = to_unit_range(batch["image"]), batch["label"], batch["mask"]
    sums = {"count": jnp.sum(mask)}
    for i, view in enumerate(eval_views):
      try:
        views.check_image_size(view, images.shape[1:3])
        log_probs = views.log_posteriors(view, apply_fn, state.params, images,
                                         functools.partial(apply_fn, dense=True))
      except (ValueError, TypeError, ArithmeticError, flax.errors.FlaxError) as e:
        raise ConfigError(
            f"config.eval_views={tuple(v.name for v in eval_views)!r}: view {view.name!r} "
            f"cannot run on eval images of shape {tuple(images.shape[1:])}: "
            f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from e
      prefix = f"{view.name}/" if i else ""
      losses = optax.softmax_cross_entropy_with_integer_labels(log_probs, labels)
      sums[prefix + "loss"] = jnp.sum(losses * mask)
      correct = (jnp.argmax(log_probs, -1) == labels).astype(jnp.float32)
      sums[prefix + "correct"] = jnp.sum(correct * mask)
      if log_probs.shape[-1] > 5:
        top5 = jax.lax.top_k(log_probs, 5)[1]
        in_top5 = jnp.any(top5 == labels[:, None], axis=-1).astype(jnp.float32)
        sums[prefix + "correct5"] = jnp.sum(in_top5 * mask)
    return sums

  return eval_step
