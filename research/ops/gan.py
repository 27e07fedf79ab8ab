"""GAN losses and latent-space helpers (Goodfellow et al. 2014; Radford et al. 2015).

The value function (Goodfellow et al. 2014, eq. 1):
  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))],   D = sigmoid(logit).
D ascends V; G descends it ("minimax") or, as §3 recommends because
log(1 - D(G(z))) saturates early in training when D rejects samples
confidently, ascends log D(G(z)) instead ("non_saturating").

Everything is written on logits with log-sigmoid / softplus:
  log D = log_sigmoid(l) = -softplus(-l),
  log(1 - D) = log_sigmoid(-l) = -softplus(l),
exact and finite for any logit (computing sigmoid first underflows to
log(0) for |l| > ~17 in float32).
"""

import jax
import jax.numpy as jnp

GENERATOR_LOSSES = ("non_saturating", "minimax")


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """-V(D, G) on a minibatch (Algorithm 1's D step, as a loss to minimise).

  -(1/m) sum_i [log D(x_i) + log(1 - D(G(z_i)))], i.e. the binary
  cross-entropy with label 1 for data and 0 for samples, each averaged over
  its own batch. (The authors' released code halves this; with plain SGD
  that is only a halved learning rate.)

  Args:
    real_logits: float [B] (or any shape), D's logits on data.
    fake_logits: float [B'], D's logits on G's samples.

  Returns:
    scalar.
  """
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits: jax.Array, kind: str = "non_saturating") -> jax.Array:
  """The generator's loss to minimise, on D's logits for G(z), float [B] -> scalar.

  kind:
    "non_saturating": -(1/m) sum log D(G(z))       (§3; what everyone trains with).
    "minimax":         (1/m) sum log(1 - D(G(z)))  (Algorithm 1 as written).
  """
  if kind == "non_saturating":
    return jnp.mean(jax.nn.softplus(-fake_logits))
  if kind == "minimax":
    return -jnp.mean(jax.nn.softplus(fake_logits))
  raise ValueError(f"Unknown generator loss {kind!r}; choose one of {GENERATOR_LOSSES}.")


def sample_latent(key: jax.Array, num: int, latent_dim: int,
                  distribution: str = "normal") -> jax.Array:
  """Noise z ~ p_z, float [num, latent_dim].

  distribution:
    "normal":  N(0, I) (the default of Goodfellow et al.'s released code).
    "uniform": U(-1, 1) per coordinate (DCGAN §4).
  """
  if distribution == "normal":
    return jax.random.normal(key, (num, latent_dim))
  if distribution == "uniform":
    return jax.random.uniform(key, (num, latent_dim), minval=-1.0, maxval=1.0)
  raise ValueError(f"Unknown latent distribution {distribution!r}; use 'normal' or 'uniform'.")


def interpolate_latents(z0: jax.Array, z1: jax.Array, num: int,
                        kind: str = "linear") -> jax.Array:
  """Points from z0 to z1 inclusive, [num, D] for z0, z1 [D]; or [B, num, D] for [B, D].

  "linear" is what DCGAN §6.1 walks along. "slerp" (spherical) keeps the
  norm typical of a Gaussian prior, where the straight line's midpoint has
  an atypically small norm; offered for normal noise.
  """
  t = jnp.linspace(0.0, 1.0, num)
  z0, z1 = jnp.asarray(z0)[..., None, :], jnp.asarray(z1)[..., None, :]
  t = t[:, None]
  if kind == "linear":
    return (1.0 - t) * z0 + t * z1
  if kind == "slerp":
    n0 = z0 / jnp.linalg.norm(z0, axis=-1, keepdims=True)
    n1 = z1 / jnp.linalg.norm(z1, axis=-1, keepdims=True)
    omega = jnp.arccos(jnp.clip(jnp.sum(n0 * n1, -1, keepdims=True), -1.0, 1.0))
    so = jnp.sin(omega)
    # Nearly parallel endpoints: sin(omega) -> 0; fall back to the line.
    safe = so > 1e-6
    so = jnp.where(safe, so, 1.0)
    w0 = jnp.where(safe, jnp.sin((1.0 - t) * omega) / so, 1.0 - t)
    w1 = jnp.where(safe, jnp.sin(t * omega) / so, t)
    return w0 * z0 + w1 * z1
  raise ValueError(f"Unknown interpolation {kind!r}; use 'linear' or 'slerp'.")
