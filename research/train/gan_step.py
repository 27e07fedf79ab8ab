"""GAN training state and one pure, jitted step of Algorithm 1 (Goodfellow et al. 2014).

One step = k = 1 discriminator update, then one generator update:
  1. z ~ p_z (fresh), x ~ data; D ascends log D(x) + log(1 - D(G(z))).
  2. z' ~ p_z (fresh, as Algorithm 1 samples a new noise minibatch);
     G descends its loss (`research.ops.gan.generator_loss`) against the
     *updated* D.
(The authors' released pylearn2 code instead updates both players
simultaneously from one shared sample; Algorithm 1 is sequential, and so
is this.)

Batch norm (DCGAN): D sees the real and the fake minibatch in two separate
calls, so each is normalised with its own statistics, as in Radford et al.'s
code; D's running averages are updated by those two calls of the D step
only. G's running averages are updated by its own step only (the D step's
forward pass of G is not counted twice). Dropout (the maxout D) is on in
both steps: the G step differentiates through a dropped-out D, as in the
released code.
"""

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.models.gan import to_model_range, to_unit_range
from research.ops import gan as gan_ops
from research.train import precision


@flax.struct.dataclass
class GANState:
  """Both players' variables and optimiser states; pure data (checkpointable)."""
  step: jax.Array
  g_params: Any
  g_batch_stats: Any      # {} when the generator has no batch norm.
  g_opt_state: Any
  d_params: Any
  d_batch_stats: Any
  d_opt_state: Any


def create_gan_state(generator: nn.Module, discriminator: nn.Module,
                     g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                     image_shape: tuple[int, int, int], key: jax.Array) -> GANState:
  """Initialises both players. image_shape: (H, W, C) of one image."""
  g_key, d_key = jax.random.split(key)
  # Jitted: eager init compiles every operation separately (seconds on CPU).
  g_vars = jax.jit(lambda k: generator.init(
      {"params": k}, jnp.zeros((2, generator.latent_dim)), train=False))(g_key)
  d_vars = jax.jit(lambda k: discriminator.init(
      {"params": k, "dropout": k}, jnp.zeros((2, *image_shape)), train=False))(d_key)
  return GANState(step=jnp.zeros((), jnp.int32),
                  g_params=g_vars["params"], g_batch_stats=g_vars.get("batch_stats", {}),
                  g_opt_state=g_tx.init(g_vars["params"]),
                  d_params=d_vars["params"], d_batch_stats=d_vars.get("batch_stats", {}),
                  d_opt_state=d_tx.init(d_vars["params"]))


def _apply(module: nn.Module, params, batch_stats, x, *, train: bool, rng=None,
           compute_dtype: str = "float32"):
  """module.apply -> (output, batch_stats), the latter updated when training with batch
  norm; the module computes in `compute_dtype` (`precision.apply`), outputs float32."""
  variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
  rngs = {"dropout": rng} if rng is not None else None
  run = lambda **kw: precision.apply(module, variables, x, train=train, rngs=rngs,
                                     compute_dtype=compute_dtype, **kw)
  if train and batch_stats:
    out, updates = run(mutable=["batch_stats"])
    return out, updates["batch_stats"]
  return run(), batch_stats


def real_images(batch, generator: nn.Module) -> jax.Array:
  """batch {"image": uint8 or float [0, 1] [B, H, W, C]} (or the array) -> G's output range."""
  images = batch["image"] if isinstance(batch, dict) else batch
  x = images.astype(jnp.float32)
  if images.dtype == jnp.uint8:
    x = x / 255.0
  return to_model_range(x, generator.output_range)


@functools.partial(jax.jit, static_argnames=("generator", "discriminator", "g_tx", "d_tx",
                                             "generator_loss", "compute_dtype"))
def gan_train_step(state: GANState, batch, key: jax.Array, *, generator: nn.Module,
                   discriminator: nn.Module, g_tx: optax.GradientTransformation,
                   d_tx: optax.GradientTransformation,
                   generator_loss: str = "non_saturating",
                   compute_dtype: str = "float32") -> tuple[GANState, dict]:
  """One D update then one G update (Algorithm 1, k = 1). Pure.

  Args:
    state: GANState.
    batch: {"image": uint8 [B, H, W, C]} or float in [0, 1]; mapped to the
      generator's output range here.
    key: PRNG key for this step (e.g. fold_in(run_key, state.step)).
    generator, discriminator, g_tx, d_tx: static; pass the same objects
      every step, or each call compiles again.
    generator_loss: "non_saturating" or "minimax" (see research.ops.gan).
    compute_dtype: "float32" or "bfloat16": both players' arithmetic
      (`precision.apply`); parameters, optimizer states, batch-norm
      statistics and the losses stay float32.

  Returns:
    (new state, metrics): d_loss, g_loss, d_real / d_fake (mean D(x) and
    D(G(z)) before the D update), d_fake_after (mean D(G(z')) in the G step),
    and both gradient norms.
  """
  real = real_images(batch, generator)
  batch_size = real.shape[0]
  z_d_key, z_g_key, drop_real, drop_fake, drop_g = jax.random.split(key, 5)
  sample = functools.partial(gan_ops.sample_latent, num=batch_size,
                             latent_dim=generator.latent_dim,
                             distribution=generator.latent_distribution)

  # --- Discriminator step: G's samples are constants here.
  apply = functools.partial(_apply, compute_dtype=compute_dtype)
  fake, _ = apply(generator, state.g_params, state.g_batch_stats, sample(z_d_key), train=True)
  fake = jax.lax.stop_gradient(fake)

  def d_loss_fn(d_params):
    real_logits, stats = apply(discriminator, d_params, state.d_batch_stats, real,
                               train=True, rng=drop_real)
    fake_logits, stats = apply(discriminator, d_params, stats, fake, train=True, rng=drop_fake)
    return gan_ops.discriminator_loss(real_logits, fake_logits), (stats, real_logits, fake_logits)

  (d_loss, (d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  # --- Generator step against the updated D; D's batch-stat updates are dropped.
  def g_loss_fn(g_params):
    images, g_stats = apply(generator, g_params, state.g_batch_stats, sample(z_g_key),
                            train=True)
    logits, _ = apply(discriminator, d_params, d_stats, images, train=True, rng=drop_g)
    return gan_ops.generator_loss(logits, generator_loss), (g_stats, logits)

  (g_loss, (g_stats, g_logits)), g_grads = jax.value_and_grad(
      g_loss_fn, has_aux=True)(state.g_params)
  g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  new_state = state.replace(step=state.step + 1,
                            g_params=g_params, g_batch_stats=g_stats, g_opt_state=g_opt_state,
                            d_params=d_params, d_batch_stats=d_stats, d_opt_state=d_opt_state)
  metrics = {
      "d_loss": d_loss, "g_loss": g_loss,
      "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
      "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
      "d_fake_after": jnp.mean(jax.nn.sigmoid(g_logits)),
      "d_grad_norm": optax.global_norm(d_grads),
      "g_grad_norm": optax.global_norm(g_grads),
  }
  return new_state, metrics


def make_gan_train_step(generator: nn.Module, discriminator: nn.Module,
                        g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                        generator_loss: str = "non_saturating", *,
                        compute_dtype: str = "float32"):
  """`gan_train_step` with the static arguments bound: step(state, batch, key)."""
  return functools.partial(gan_train_step, generator=generator, discriminator=discriminator,
                           g_tx=g_tx, d_tx=d_tx, generator_loss=generator_loss,
                           compute_dtype=compute_dtype)


def generate(generator: nn.Module, state: GANState, z: jax.Array, *,
             train: bool = False) -> jax.Array:
  """G(z) [B, H, W, C] in the generator's output range. train=False uses
  batch norm's running averages (DCGAN implementations often sample with
  batch statistics instead: train=True, whose stat updates are discarded)."""
  images, _ = _apply(generator, state.g_params, state.g_batch_stats, z, train=train)
  return images


def run_keys(seed: int) -> dict[str, jax.Array]:
  """A GAN run's keys, all from its seed: init, per-step (fold_in step), the
  fixed noise of the sample grids, evaluation samples."""
  init, steps, grid, evals = jax.random.split(jax.random.PRNGKey(seed), 4)
  return {"init": init, "steps": steps, "grid": grid, "eval": evals}


@functools.cache
def make_sampler(generator: nn.Module, *, batch_stats_mode: bool = False):
  """sample(state, z [N, latent]) -> images in [0, 1], jitted once per generator
  (cached: equal generators share one function and its compilations).

  batch_stats_mode: normalise with the batch's own statistics (what many
  DCGAN implementations sample with) instead of batch norm's running averages.
  """
  @jax.jit
  def sample(state, z):
    images = generate(generator, state, z, train=batch_stats_mode)
    return to_unit_range(images, generator.output_range)
  return sample


def generate_images(sampler, generator: nn.Module, state, key: jax.Array, num: int,
                    batch_size: int = 1000) -> np.ndarray:
  """`num` samples in [0, 1], float32 [num, H, W, C], drawn in batches (noise from `key`)."""
  out = []
  for i, start in enumerate(range(0, num, batch_size)):
    z = gan_ops.sample_latent(jax.random.fold_in(key, i), min(batch_size, num - start),
                              generator.latent_dim, generator.latent_distribution)
    out.append(np.asarray(sampler(state, z)))
  return np.concatenate(out)


def dcgan_optimizers() -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """(g_tx, d_tx): Adam, lr 0.0002, beta1 0.5 (Radford et al. §4)."""
  return optax.adam(2e-4, b1=0.5), optax.adam(2e-4, b1=0.5)


def gan_mlp_optimizers(steps_per_epoch: int = 500):
  """(g_tx, d_tx) as in the released MNIST configuration (mnist.yaml):
  batch 100 (500 steps per epoch on 50,000 images), SGD lr 0.1 divided by
  1.000004 every step down to 1e-6, momentum 0.5 rising linearly to 0.7
  between epochs 1 and 250."""
  lr = optax.exponential_decay(0.1, transition_steps=1, decay_rate=1 / 1.000004,
                               end_value=1e-6)
  momentum = optax.linear_schedule(0.5, 0.7, transition_steps=249 * steps_per_epoch,
                                   transition_begin=steps_per_epoch)
  make = lambda: optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
  return make(), make()
