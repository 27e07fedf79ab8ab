"""Adversarial examples: FGSM, PGD, box-constrained L-BFGS, adversarial training.

Papers:
  - Szegedy et al. 2013, "Intriguing properties of neural networks", §4.1
    (box-constrained L-BFGS, the "approximate minimum distortion").
  - Goodfellow, Shlens & Szegedy 2014, "Explaining and harnessing adversarial
    examples", eq. 3 (fast gradient sign method) and eq. 6 (adversarial
    training objective).
  - Madry et al. 2017, "Towards deep learning models resistant to adversarial
    attacks", §2 (L-infinity projected gradient descent with a random start).

Conventions. Inputs `x` are float images [B, H, W, C] in [0, 1]: every
epsilon below is in those units (the papers' MNIST epsilon = 0.25 and 0.3 are
on [0, 1] pixels). Any preprocessing a classifier needs (standardisation)
belongs inside `apply_fn(variables, x) -> logits [B, K]`, so gradients are
taken with respect to pixels. `variables` is whatever `apply_fn` takes (for
Flax, {"params": ..., "batch_stats": ...}); attacks run the model in
inference mode, so `apply_fn` should call it with `train=False`.

The jitted attacks take `apply_fn` (and `loss_fn`) as static arguments: pass
the same function object every call (define it once, not a fresh lambda per
batch), or each call compiles again.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize

ApplyFn = Callable[[Any, jax.Array], jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy. logits [B, K], labels int [B] -> [B]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def input_gradient(apply_fn: ApplyFn, variables, x: jax.Array, y: jax.Array,
                   loss_fn: Callable | None = None) -> jax.Array:
  """d/dx of the summed per-example loss: [B, ...] like x.

  Summing (not averaging) over the batch makes each example's gradient its
  own loss's gradient, independent of the batch size.
  """
  loss_fn = loss_fn or cross_entropy
  return jax.grad(lambda x_: jnp.sum(loss_fn(apply_fn(variables, x_), y)))(x)


@functools.partial(jax.jit, static_argnames=("apply_fn", "clip", "loss_fn"))
def fgsm(apply_fn: ApplyFn, variables, x: jax.Array, y: jax.Array,
         epsilon: float, *, clip: bool = True,
         loss_fn: Callable | None = None) -> jax.Array:
  """Fast gradient sign method (Goodfellow et al. 2014, eq. 3).

  x_adv = x + epsilon * sign(grad_x J(theta, x, y)).

  Args:
    apply_fn: (variables, x) -> logits [B, K].
    x: float [B, ...] in [0, 1].
    y: int [B], the true labels (the attack increases their loss).
    epsilon: the L-infinity size of the perturbation, in [0, 1] pixel units.
    clip: clip x_adv to [0, 1]. The paper's numbers (epsilon = 0.25 on MNIST,
      §5-6) are for [0, 1] images; clipping keeps the result a valid image.
      The paper does not say it clipped: with clip=False the perturbation is
      exactly eq. 3, and background pixels at 0 may go negative.
    loss_fn: (logits, labels) -> per-example loss [B]; cross-entropy by default.

  Returns:
    float [B, ...], x_adv.
  """
  grad = input_gradient(apply_fn, variables, x, y, loss_fn)
  x_adv = x + epsilon * jnp.sign(grad)
  return jnp.clip(x_adv, 0.0, 1.0) if clip else x_adv


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_steps", "random_start",
                                             "clip", "loss_fn"))
def pgd(apply_fn: ApplyFn, variables, x: jax.Array, y: jax.Array, epsilon: float,
        step_size: float, num_steps: int, key: jax.Array | None = None, *,
        random_start: bool = True, clip: bool = True,
        loss_fn: Callable | None = None) -> jax.Array:
  """L-infinity projected gradient descent on the negative loss (Madry et al. 2017, §2).

  x_{t+1} = Proj_{B(x, epsilon) ∩ [0,1]}(x_t + step_size * sign(grad J(x_t))),
  starting from x + U(-epsilon, epsilon) when random_start. Both sets are
  boxes, so the projection onto their intersection is a coordinate-wise clip.
  With num_steps=1, step_size=epsilon and no random start this is FGSM.
  (Madry et al.'s MNIST attack: epsilon 0.3, step 0.01, 40 steps, random start.)

  Args:
    x: float [B, ...] in [0, 1]; y: int [B] true labels.
    key: PRNG key for the random start (required when random_start).
    clip: also project onto [0, 1] (see `fgsm`).

  Returns:
    float [B, ...], with |x_adv - x|_inf <= epsilon.
  """
  lower, upper = x - epsilon, x + epsilon
  if clip:
    lower, upper = jnp.maximum(lower, 0.0), jnp.minimum(upper, 1.0)
  if random_start:
    if key is None:
      raise ValueError("pgd: random_start=True needs a PRNG key.")
    x0 = x + jax.random.uniform(key, x.shape, x.dtype, -epsilon, epsilon)
  else:
    x0 = x
  x0 = jnp.clip(x0, lower, upper)

  def step(_, x_t):
    grad = input_gradient(apply_fn, variables, x_t, y, loss_fn)
    return jnp.clip(x_t + step_size * jnp.sign(grad), lower, upper)

  return jax.lax.fori_loop(0, num_steps, step, x0)


class LBFGSResult(NamedTuple):
  """Per example: the smallest-distortion x_adv found, and how it was found."""
  x_adv: np.ndarray        # float [B, ...]; for failures, the last attempt (smallest c).
  success: np.ndarray      # bool [B]: argmax f(x_adv) == target.
  c: np.ndarray            # float [B]: the penalty weight that produced x_adv.
  l2: np.ndarray           # float [B]: |x_adv - x|_2.


def distortion(x: np.ndarray, x_adv: np.ndarray) -> np.ndarray:
  """Szegedy et al.'s distortion measure (Table 1): sqrt(sum (x' - x)^2 / n), per example [B]."""
  diff = np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)
  diff = diff.reshape(diff.shape[0], -1)
  return np.sqrt(np.mean(diff**2, axis=1))


@functools.cache
def _lbfgs_objective(apply_fn: ApplyFn, loss_fn: Callable):
  """Jitted value_and_grad of sum_i c_i |x'_i - x_i|_2^2 + loss(f(x'_i), t_i), in x'."""

  def objective(x_adv, variables, x, targets, c):
    sq = jnp.sum(jnp.square(x_adv - x).reshape(x.shape[0], -1), axis=1)
    return jnp.sum(c * sq + loss_fn(apply_fn(variables, x_adv), targets))

  value_and_grad = jax.jit(jax.value_and_grad(objective))

  @jax.jit
  def predict(x_adv, variables):
    return jnp.argmax(apply_fn(variables, x_adv), axis=-1)

  return value_and_grad, predict


def _lbfgs_solve(apply_fn, loss_fn, variables, x, targets, c, max_iter):
  """Minimises the batch objective over x' in [0, 1]^n with L-BFGS-B, from x' = x."""
  value_grad, predict = _lbfgs_objective(apply_fn, loss_fn)
  shape = x.shape
  x_j, t_j, c_j = jnp.asarray(x), jnp.asarray(targets), jnp.asarray(c, jnp.float32)

  def fun(flat):
    value, grad = value_grad(jnp.asarray(flat.reshape(shape), jnp.float32),
                             variables, x_j, t_j, c_j)
    return float(value), np.asarray(grad, np.float64).ravel()

  result = scipy.optimize.minimize(
      fun, np.asarray(x, np.float64).ravel(), jac=True, method="L-BFGS-B",
      bounds=scipy.optimize.Bounds(0.0, 1.0), options={"maxiter": max_iter})
  x_adv = np.clip(result.x.reshape(shape), 0.0, 1.0).astype(np.float32)
  success = np.asarray(predict(jnp.asarray(x_adv), variables)) == np.asarray(targets)
  return x_adv, success


def lbfgs_attack(apply_fn: ApplyFn, variables, x, target_labels, *,
                 c_values=None, c_init: float = 1.0, num_search_steps: int = 10,
                 max_iter: int = 100, loss_fn: Callable | None = None) -> LBFGSResult:
  """Box-constrained L-BFGS targeted attack (Szegedy et al. 2013, §4.1).

  Solves, per example, min_r c |r|^2 + loss_f(x + r, l) subject to
  x + r in [0, 1]^n with scipy's L-BFGS-B (box bounds), the objective's
  gradient from jax. Then searches over c for the smallest perturbation
  that is classified as the target l.

  Norm: the paper writes |r|_2; we penalise the *squared* L2 norm, which is
  smooth (|r|_2 has no gradient at r = 0, where the search starts) and has the
  same minimisers along the c path up to a reparametrisation of c. The
  returned `l2` and `distortion(x, x_adv)` are unsquared.

  Search direction: with c on the norm term, larger c means smaller r, so
  the smallest-norm success is at the *largest* c that still reaches the
  target. (The paper's "minimum c > 0" reads as c on the loss term; same
  search.) Each example keeps its own c: multiplied (divided) by 10 until a
  failure (success) brackets it, then geometric bisection. Because the
  network is non-convex this is the paper's "approximate" minimum distortion.

  Batching: the B problems are independent, so the batch is solved as one
  L-BFGS-B problem on the sum of their objectives; the minimiser of the sum
  is the tuple of per-example minimisers. The line search and curvature
  memory are shared, so convergence per example can differ slightly from
  solving each alone; call with one example at a time for the strict version.

  Args:
    apply_fn: (variables, x) -> logits [B, K], inference mode.
    x: float [B, ...] in [0, 1].
    target_labels: int [B], the class each x_adv should be classified as.
    c_values: if given, a fixed grid of c tried for every example (no
      search); the smallest-norm success among them is kept.
    c_init: the first c of the search.
    num_search_steps: L-BFGS-B solves in the search.
    max_iter: L-BFGS-B iterations per solve.
    loss_fn: (logits, labels) -> [B]; cross-entropy with the target by default.

  Returns:
    LBFGSResult of numpy arrays.
  """
  loss_fn = loss_fn or cross_entropy
  x = np.asarray(x, np.float32)
  targets = np.asarray(target_labels)
  batch = x.shape[0]
  best_x, best_l2 = x.copy(), np.full(batch, np.inf)
  best_c, success = np.zeros(batch), np.zeros(batch, bool)
  last_x, last_c = x.copy(), np.full(batch, np.inf)
  lo, hi = np.zeros(batch), np.full(batch, np.inf)   # largest success c, smallest failure c
  c = np.full(batch, float(c_init))
  grid = None if c_values is None else [float(v) for v in c_values]
  steps = len(grid) if grid is not None else num_search_steps
  for i in range(steps):
    if grid is not None:
      c = np.full(batch, grid[i])
    x_adv, ok = _lbfgs_solve(apply_fn, loss_fn, variables, x, targets, c, max_iter)
    l2 = np.sqrt(np.sum((x_adv - x).reshape(batch, -1).astype(np.float64)**2, axis=1))
    better = ok & (l2 < best_l2)
    best_x[better], best_l2[better], best_c[better] = x_adv[better], l2[better], c[better]
    success |= ok
    # Failures report their strongest attempt (smallest c, largest perturbation).
    weaker = ~ok & (c <= last_c)
    last_x[weaker], last_c[weaker] = x_adv[weaker], c[weaker]
    lo = np.where(ok, np.maximum(lo, c), lo)
    hi = np.where(ok, hi, np.minimum(hi, c))
    c = np.where(np.isinf(hi), lo * 10.0,
                 np.where(lo == 0.0, hi / 10.0, np.sqrt(lo * hi)))
  x_out = np.where(success.reshape((-1,) + (1,) * (x.ndim - 1)), best_x, last_x)
  l2_out = np.sqrt(np.sum((x_out - x).reshape(batch, -1).astype(np.float64)**2, axis=1))
  return LBFGSResult(x_adv=x_out, success=success, c=np.where(success, best_c, last_c),
                     l2=l2_out)


def adversarial_training_loss(loss_fn: Callable, params, x: jax.Array, y: jax.Array,
                              epsilon: float, alpha: float = 0.5, *, clip: bool = True,
                              has_aux: bool = False):
  """Goodfellow et al. 2014, eq. 6:
  alpha J(θ, x, y) + (1 - alpha) J(θ, x + ε sign(∇x J(θ, x, y)), y).

  The perturbation is recomputed from the current params at every call (the
  paper's "continually updating supply of adversarial examples"). It is
  wrapped in stop_gradient. This loses nothing: sign() is piecewise
  constant, so d(ε sign(∇x J))/dθ is zero almost everywhere and the
  gradient in θ is the same as the paper's formulation (θ inside the
  perturbation); stopping it only skips a useless second-order pass.
  The paper used alpha = 0.5, epsilon = 0.25 for maxout on MNIST (§6).

  Args:
    loss_fn: (params, x, y) -> scalar mean loss, or (loss, aux) if has_aux.
      It should run the model in training mode if that is what is trained.
    x: float [B, ...] in [0, 1]; y: int [B].
    clip: clip the adversarial point to [0, 1] (see `fgsm`).

  Returns:
    scalar total loss; with has_aux, (total, (aux_clean, aux_adversarial)).
  """
  def loss_of_x(x_):
    out = loss_fn(params, x_, y)
    return out if has_aux else (out, None)

  (clean, aux_clean), grad_x = jax.value_and_grad(loss_of_x, has_aux=True)(x)
  x_adv = jax.lax.stop_gradient(x + epsilon * jnp.sign(grad_x))
  if clip:
    x_adv = jnp.clip(x_adv, 0.0, 1.0)
  adv, aux_adv = loss_of_x(x_adv)
  total = alpha * clean + (1.0 - alpha) * adv
  return (total, (aux_clean, aux_adv)) if has_aux else total


@functools.cache
def _softmax_fn(apply_fn: ApplyFn):
  """Jitted softmax probabilities of `apply_fn`, one per apply_fn: a fresh jit
  per call would compile again at every epsilon of a curve."""
  return jax.jit(lambda v, x_: jax.nn.softmax(apply_fn(v, x_), axis=-1))


def error_rate_under_attack(apply_fn: ApplyFn, variables, x, y,
                            attack: Callable | None = None,
                            batch_size: int = 500) -> dict[str, float]:
  """Error rate and confidence of a classifier on attacked inputs.

  Goodfellow et al. 2014 report both (e.g. "99.9% error with an average
  confidence of 79.3%" for a shallow softmax at epsilon 0.25, §5).

  Args:
    x: float [N, ...] in [0, 1]; y: int [N] (numpy or jax arrays).
    attack: (x_batch, y_batch) -> x_adv_batch, e.g.
      `lambda x, y: fgsm(apply_fn, variables, x, y, 0.25)`. None: clean data.
      For PGD close over a key (reusing it for every batch is fine).
    batch_size: examples per attack call.

  Returns:
    {"error_rate", "clean_error_rate", "mean_confidence" (softmax probability
    of the predicted class on the attacked inputs), "mean_confidence_wrong"
    (the same over misclassified attacked inputs; nan when none), "count"}.
  """
  predict = _softmax_fn(apply_fn)
  wrong, clean_wrong, conf, conf_wrong, n = 0, 0, 0.0, 0.0, 0
  for start in range(0, len(x), batch_size):
    xb, yb = jnp.asarray(x[start:start + batch_size]), np.asarray(y[start:start + batch_size])
    clean_pred = np.asarray(predict(variables, xb)).argmax(-1)
    xa = attack(xb, jnp.asarray(yb)) if attack is not None else xb
    probs = np.asarray(predict(variables, xa))
    pred, p = probs.argmax(-1), probs.max(-1)
    miss = pred != yb
    wrong += int(miss.sum())
    clean_wrong += int((clean_pred != yb).sum())
    conf += float(p.sum())
    conf_wrong += float(p[miss].sum())
    n += len(yb)
  return {"error_rate": wrong / n, "clean_error_rate": clean_wrong / n,
          "mean_confidence": conf / n,
          "mean_confidence_wrong": conf_wrong / wrong if wrong else float("nan"),
          "count": n}
