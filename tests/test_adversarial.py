"""Attacks on linear softmax models, whose input gradients are known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.ops import adversarial as adv

D, K = 12, 3


def linear_apply(variables, x):
  """logits = flatten(x) W + b: [B, ...] -> [B, K]."""
  return x.reshape(x.shape[0], -1) @ variables["w"] + variables["b"]


def make_linear(seed=0, k=K, d=D):
  rng = np.random.default_rng(seed)
  return {"w": jnp.asarray(rng.normal(size=(d, k)), jnp.float32),
          "b": jnp.asarray(rng.normal(size=(k,)), jnp.float32)}


def make_data(n=16, seed=1, k=K, d=D):
  rng = np.random.default_rng(seed)
  x = rng.uniform(0.2, 0.8, size=(n, d // 4, 4, 1)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(rng.integers(0, k, size=n))


def softmax_np(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def test_fgsm_binary_linear_closed_form():
  # Two classes: grad_x CE = (p_true - 1)(w_true - w_other), so the FGSM
  # perturbation is eps * sign(w_other - w_true), whatever x is.
  v = make_linear(k=2)
  x, y = make_data(k=2)
  x_adv = adv.fgsm(linear_apply, v, x, y, 0.1, clip=False)
  w = np.asarray(v["w"])
  y = np.asarray(y)
  expected = 0.1 * np.sign(w[:, 1 - y] - w[:, y]).T.reshape(x.shape)
  np.testing.assert_allclose(np.asarray(x_adv - x), expected, atol=1e-6)


def test_fgsm_multiclass_linear_closed_form_and_clipping():
  # K classes: grad_x CE = W (p - onehot(y)).
  v = make_linear()
  x, y = make_data()
  eps = 0.3
  w, b = np.asarray(v["w"]), np.asarray(v["b"])
  xf = np.asarray(x).reshape(len(x), -1)
  p = softmax_np(xf @ w + b)
  grad = (p - np.eye(K)[np.asarray(y)]) @ w.T
  expected = np.clip(xf + eps * np.sign(grad), 0, 1).reshape(x.shape)
  x_adv = adv.fgsm(linear_apply, v, x, y, eps)
  np.testing.assert_allclose(np.asarray(x_adv), expected, atol=1e-6)
  assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  # Without clipping the same step leaves [0, 1] (x is in [0.2, 0.8], eps 0.3).
  unclipped = adv.fgsm(linear_apply, v, x, y, eps, clip=False)
  assert float(unclipped.min()) < 0.0 or float(unclipped.max()) > 1.0


def test_pgd_one_step_without_random_start_is_fgsm():
  v = make_linear()
  x, y = make_data()
  a = adv.pgd(linear_apply, v, x, y, 0.1, 0.1, 1, random_start=False)
  b = adv.fgsm(linear_apply, v, x, y, 0.1)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)


def test_pgd_stays_in_ball_and_box_and_increases_loss():
  v = make_linear()
  rng = np.random.default_rng(3)
  # Pixels at 0 and 1 too, so the [0, 1] projection is active.
  x = jnp.asarray(rng.choice([0.0, 0.05, 0.5, 0.97, 1.0], size=(16, 3, 4, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, K, size=16))
  eps = 0.1
  x_adv = adv.pgd(linear_apply, v, x, y, eps, 0.03, 10, jax.random.PRNGKey(0))
  assert float(jnp.max(jnp.abs(x_adv - x))) <= eps + 1e-6
  assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  clean = adv.cross_entropy(linear_apply(v, x), y).mean()
  attacked = adv.cross_entropy(linear_apply(v, x_adv), y).mean()
  assert attacked > clean
  with pytest.raises(ValueError, match="PRNG key"):
    adv.pgd(linear_apply, v, x, y, eps, 0.03, 2)


def test_lbfgs_box_target_and_near_minimal_distance():
  v = make_linear(seed=4)
  x, y = make_data(n=6, seed=5)
  logits = np.asarray(linear_apply(v, x))
  y = logits.argmax(-1)
  target = (y + 1) % K
  result = adv.lbfgs_attack(linear_apply, v, x, target, c_init=1.0, num_search_steps=12)
  assert result.success.all()
  assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
  pred = np.asarray(linear_apply(v, jnp.asarray(result.x_adv))).argmax(-1)
  np.testing.assert_array_equal(pred, target)
  # Lower bound: crossing the hyperplane where logit_target = logit_y needs
  # at least margin / |w_target - w_y| (the box only makes it longer).
  w, b = np.asarray(v["w"]), np.asarray(v["b"])
  margin = logits[np.arange(6), y] - logits[np.arange(6), target]
  lower = margin / np.linalg.norm(w[:, target] - w[:, y], axis=0)
  assert (result.l2 >= lower - 1e-4).all()
  # The c search finds a perturbation close to that minimum (the CE penalty
  # needs a little overshoot past the boundary; a third class may also bind).
  assert np.median(result.l2 / lower) < 1.25
  np.testing.assert_allclose(adv.distortion(x, result.x_adv),
                             result.l2 / np.sqrt(D), rtol=1e-5)


def test_lbfgs_fixed_grid_keeps_smallest_success():
  v = make_linear(seed=4)
  x, _ = make_data(n=4, seed=5)
  target = (np.asarray(linear_apply(v, x)).argmax(-1) + 1) % K
  big = adv.lbfgs_attack(linear_apply, v, x, target, c_values=[1e-3])
  grid = adv.lbfgs_attack(linear_apply, v, x, target, c_values=[1e-3, 1e-2, 1e-1])
  assert big.success.all()
  assert (grid.l2[grid.success] <= big.l2[grid.success] + 1e-6).all()


def test_adversarial_training_loss():
  v = make_linear()
  x, y = make_data()

  def loss_fn(params, x_, y_):
    return adv.cross_entropy(linear_apply(params, x_), y_).mean()

  clean = loss_fn(v, x, y)
  np.testing.assert_allclose(adv.adversarial_training_loss(loss_fn, v, x, y, 0.25, alpha=1.0),
                             clean, rtol=1e-6)
  x_fgsm = adv.fgsm(linear_apply, v, x, y, 0.25)
  np.testing.assert_allclose(adv.adversarial_training_loss(loss_fn, v, x, y, 0.25, alpha=0.0),
                             loss_fn(v, x_fgsm, y), rtol=1e-6)

  # stop_gradient on the perturbation changes nothing: d sign(.)/d theta = 0.
  def paper_form(params):
    g = jax.grad(loss_fn, argnums=1)(params, x, y)
    x_adv = jnp.clip(x + 0.25 * jnp.sign(g), 0, 1)
    return 0.5 * loss_fn(params, x, y) + 0.5 * loss_fn(params, x_adv, y)

  ours = jax.grad(lambda p: adv.adversarial_training_loss(loss_fn, p, x, y, 0.25))(v)
  theirs = jax.grad(paper_form)(v)
  for key in ("w", "b"):
    np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6)

  # has_aux passes both auxiliary outputs through.
  total, (a, b) = adv.adversarial_training_loss(
      lambda p, x_, y_: (loss_fn(p, x_, y_), x_.sum()), v, x, y, 0.25, has_aux=True)
  assert float(a) == pytest.approx(float(x.sum()))
  assert float(b) != pytest.approx(float(a))


def test_error_rate_under_attack():
  v = make_linear()
  x, _ = make_data(n=40)
  y = np.asarray(linear_apply(v, x)).argmax(-1)   # Clean accuracy 100% by construction.
  clean = adv.error_rate_under_attack(linear_apply, v, x, y, batch_size=16)
  assert clean["error_rate"] == 0.0 and clean["clean_error_rate"] == 0.0
  assert clean["count"] == 40
  attacked = adv.error_rate_under_attack(
      linear_apply, v, x, y, lambda xb, yb: adv.fgsm(linear_apply, v, xb, yb, 0.5),
      batch_size=16)
  assert attacked["error_rate"] > 0.5
  assert attacked["clean_error_rate"] == 0.0
  assert 1.0 / K <= attacked["mean_confidence"] <= 1.0
