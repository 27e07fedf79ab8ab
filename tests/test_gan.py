"""GAN losses, models, the two-player step, Parzen and Fréchet estimates, pictures."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
import scipy.stats

from research.eval import baselines, frechet, parzen, plots
from research.models import gan as gan_models
from research.ops import gan as gan_ops
from research.train import gan_step

# --- Losses.


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def test_losses_match_hand_computation():
  real, fake = np.array([0.0, 2.0, -1.0]), np.array([-1.0, 3.0])
  d = -(np.mean(np.log(sigmoid(real))) + np.mean(np.log(1 - sigmoid(fake))))
  np.testing.assert_allclose(gan_ops.discriminator_loss(jnp.asarray(real), jnp.asarray(fake)),
                             d, rtol=1e-6)
  np.testing.assert_allclose(gan_ops.generator_loss(jnp.asarray(fake)),
                             -np.mean(np.log(sigmoid(fake))), rtol=1e-6)
  np.testing.assert_allclose(gan_ops.generator_loss(jnp.asarray(fake), "minimax"),
                             np.mean(np.log(1 - sigmoid(fake))), rtol=1e-6)
  with pytest.raises(ValueError, match="non_saturating"):
    gan_ops.generator_loss(jnp.asarray(fake), "wasserstein")


def test_losses_finite_for_extreme_logits():
  big = jnp.array([-200.0, 200.0])
  for value in (gan_ops.discriminator_loss(big, big), gan_ops.generator_loss(big),
                gan_ops.generator_loss(big, "minimax")):
    assert np.isfinite(float(value))
  # Non-saturating vs minimax: when D confidently rejects samples (logit -10),
  # the minimax loss has almost no gradient, the non-saturating one does (§3).
  ns = jax.grad(lambda l: gan_ops.generator_loss(l))(jnp.array([-10.0]))
  mm = jax.grad(lambda l: gan_ops.generator_loss(l, "minimax"))(jnp.array([-10.0]))
  assert abs(float(ns[0])) > 1000 * abs(float(mm[0]))


def test_latent_sampling_and_interpolation():
  key = jax.random.PRNGKey(0)
  u = gan_ops.sample_latent(key, 500, 8, "uniform")
  assert u.shape == (500, 8) and float(u.min()) >= -1 and float(u.max()) <= 1
  assert gan_ops.sample_latent(key, 3, 8).shape == (3, 8)
  z0, z1 = jnp.ones(4), -jnp.ones(4) * 2
  line = gan_ops.interpolate_latents(z0, z1, 5)
  assert line.shape == (5, 4)
  np.testing.assert_allclose(line[0], z0)
  np.testing.assert_allclose(line[-1], z1)
  np.testing.assert_allclose(line[2], (z0 + z1) / 2)
  a, b = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])
  arc = gan_ops.interpolate_latents(a, b, 3, "slerp")
  assert arc.shape == (1, 3, 2)
  np.testing.assert_allclose(jnp.linalg.norm(arc, axis=-1), 1.0, rtol=1e-6)


# --- Models.


@pytest.mark.parametrize("name,gen_kwargs,size,out_range", [
    ("gan_mlp", {}, 28, (0.0, 1.0)),
    ("dcgan", {"image_size": 28, "width": 16}, 28, (-1.0, 1.0)),
    ("dcgan", {"image_size": 32, "width": 8}, 32, (-1.0, 1.0)),
])
def test_generator_and_discriminator_shapes(name, gen_kwargs, size, out_range):
  d_kwargs = {"width": gen_kwargs["width"]} if "width" in gen_kwargs else {}
  g, d = gan_models.get_gan(name, gen_kwargs, d_kwargs)
  assert g.output_range == out_range
  key = jax.random.PRNGKey(0)
  z = jnp.zeros((4, g.latent_dim))
  # Shapes by abstract evaluation: nothing is compiled (the ranges are
  # checked on real samples in the step test).
  g_vars = jax.eval_shape(lambda k: g.init(k, z, train=False), key)
  images = jax.eval_shape(lambda v: g.apply(v, z, train=False), g_vars)
  assert images.shape == (4, size, size, 1)
  d_vars = jax.eval_shape(lambda k, x: d.init({"params": k, "dropout": k}, x, train=False),
                          key, images)
  assert jax.eval_shape(lambda v, x: d.apply(v, x, train=False), d_vars, images).shape == (4,)
  train_logits = jax.eval_shape(
      lambda v, x: d.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}),
      d_vars, images)[0]
  assert train_logits.shape == (4,)


def test_dcgan_layout_and_range_helpers():
  assert gan_models.dcgan_base_size(28) == (7, 2)
  assert gan_models.dcgan_base_size(32) == (4, 3)
  assert gan_models.dcgan_base_size(64) == (4, 4)
  with pytest.raises(ValueError):
    gan_models.dcgan_base_size(5)
  x = jnp.array([0.0, 0.5, 1.0])
  np.testing.assert_allclose(gan_models.to_model_range(x, (-1.0, 1.0)), [-1, 0, 1])
  np.testing.assert_allclose(gan_models.to_unit_range(gan_models.to_model_range(x, (-1, 1)),
                                                      (-1, 1)), x)


def test_output_bias_from_marginals():
  g = gan_models.MLPGenerator(hidden=(8,), image_shape=(2, 2, 1))
  params = jax.jit(g.init)(jax.random.PRNGKey(0), jnp.zeros((1, 100)))["params"]
  images = np.array([[[[0.2], [0.5]], [[0.9], [0.0]]]] * 3, np.float32)
  params = gan_models.init_output_bias_from_marginals(params, images)
  np.testing.assert_allclose(jax.nn.sigmoid(params["output"]["bias"]), [0.2, 0.5, 0.9, 1e-3],
                             rtol=1e-4)


# --- The two-player step.


def _tree_equal(a, b):
  return all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), a, b)))


def _set_lr(opt_state, lr):
  return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": jnp.asarray(lr)})


@pytest.mark.parametrize("name", ["gan_mlp", "dcgan"])
def test_each_player_step_moves_only_its_params_downhill(name):
  if name == "gan_mlp":
    # Dropout off so the loss recomputed below is the one differentiated; a
    # wider init than the paper's 0.005 so G gets a gradient worth measuring.
    g = gan_models.MLPGenerator(latent_dim=16, hidden=(32, 32))
    d = gan_models.MaxoutDiscriminator(units=(16, 16), input_dropout=0.0, hidden_dropout=0.0,
                                       init_range=0.1)
  else:
    g = gan_models.DCGANGenerator(latent_dim=16, width=8)
    d = gan_models.DCGANDiscriminator(width=8)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, size=(8, 28, 28, 1), dtype=np.uint8)}
  key = jax.random.PRNGKey(1)
  # One optimizer object for both runs (one compilation); the learning rate
  # lives in the optimizer state, so a player is frozen by setting it to 0.
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2)
  step = gan_step.make_gan_train_step(g, d, tx, tx)
  init = gan_step.create_gan_state(g, d, tx, tx, (28, 28, 1), jax.random.PRNGKey(0))

  # A second call with the same key reuses the same noise, dropout masks and
  # real batch, so its "before" losses are the first call's losses after
  # its update. (Batch norm normalises with batch statistics in training, so
  # the running averages the first call changed do not enter.)
  # D learns, G frozen: the D loss on the fixed batch goes down.
  state = init.replace(g_opt_state=_set_lr(init.g_opt_state, 0.0))
  new, metrics = step(state, batch, key)
  assert int(new.step) == 1
  assert _tree_equal(new.g_params, state.g_params)
  assert not _tree_equal(new.d_params, state.d_params)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  _, again = step(new, batch, key)
  assert float(again["d_loss"]) < float(metrics["d_loss"])
  assert float(again["d_real"]) > float(metrics["d_real"])
  assert float(again["d_fake"]) < float(metrics["d_fake"])

  # G learns, D frozen: the G loss against the same D goes down.
  state = init.replace(d_opt_state=_set_lr(init.d_opt_state, 0.0))
  new, metrics = step(state, batch, key)
  assert _tree_equal(new.d_params, state.d_params)
  assert not _tree_equal(new.g_params, state.g_params)
  _, again = step(new, batch, key)
  assert float(again["g_loss"]) < float(metrics["g_loss"])
  assert float(again["d_fake_after"]) > float(metrics["d_fake_after"])

  samples = gan_step.generate(g, new, jnp.zeros((3, 16)))
  assert samples.shape == (3, 28, 28, 1)
  lo, hi = g.output_range
  assert float(samples.min()) >= lo and float(samples.max()) <= hi


def test_optimizer_presets():
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.ones(3)}
  g_tx, d_tx = gan_step.gan_mlp_optimizers(steps_per_epoch=10)
  opt = g_tx.init(params)
  for _ in range(3):
    _, opt = g_tx.update(grads, opt, params)
  # Hyperparameters as used by the last update (step 2): lr 0.1 / 1.000004^2, momentum 0.5.
  assert float(opt.hyperparams["learning_rate"]) == pytest.approx(0.1 / 1.000004**2, rel=1e-6)
  assert float(opt.hyperparams["momentum"]) == pytest.approx(0.5)
  for tx in gan_step.dcgan_optimizers():
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step moves every coordinate by the learning rate.
    np.testing.assert_allclose(updates["w"], -2e-4, rtol=1e-3)


# --- Parzen window.


def test_parzen_matches_explicit_mixture_1d_and_2d():
  mu = np.array([[0.0], [1.0], [3.0]])
  x = np.array([[0.5], [2.0], [-1.0]])
  sigma = 0.7
  expected = np.log(np.mean(scipy.stats.norm.pdf(x, mu.T, sigma), axis=1))
  np.testing.assert_allclose(parzen.parzen_log_likelihood(mu, x, sigma), expected, rtol=1e-10)

  mu2 = np.array([[0.0, 0.0], [1.0, 2.0]])
  x2 = np.array([[0.5, 0.5], [1.0, 1.0]])
  pdf = np.stack([scipy.stats.multivariate_normal.pdf(x2, m, 0.3**2 * np.eye(2)) for m in mu2], 1)
  got = parzen.parzen_log_likelihood(mu2, x2, np.array([0.3, 0.5]), batch_size=1)
  assert got.shape == (2, 2)
  np.testing.assert_allclose(got[0], np.log(pdf.mean(1)), rtol=1e-10)
  # Far from every centre the estimate stays finite (log-sum-exp, no underflow).
  assert np.isfinite(parzen.parzen_log_likelihood(mu2, np.array([[50.0, 50.0]]), 0.1)).all()


def test_parzen_estimate_selects_sigma_and_reports_standard_error():
  rng = np.random.default_rng(0)
  samples, valid, test = (rng.normal(size=(n, 2)) for n in (400, 200, 300))
  sigmas = np.array([0.01, 0.3, 10.0])
  result = parzen.parzen_estimate(samples, test, valid, sigmas=sigmas)
  assert result.sigma == 0.3   # Too narrow and too wide both lose.
  assert int(np.argmax(result.validation_means)) == 1
  ll = parzen.parzen_log_likelihood(samples, test, 0.3)
  assert result.mean == pytest.approx(ll.mean())
  assert result.standard_error == pytest.approx(ll.std() / np.sqrt(300))
  fixed = parzen.parzen_estimate(samples, test, sigma=0.3)
  assert fixed.mean == pytest.approx(result.mean)


# --- Fréchet distance and the Gaussian baseline.


def test_frechet_closed_form_diagonal_and_general():
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
  # Diagonal (commuting) covariances: |mu1 - mu2|^2 + sum (s1 - s2)^2, s the std devs.
  expected = np.sum((mu1 - mu2)**2) + np.sum((np.sqrt(v1) - np.sqrt(v2))**2)
  got = frechet.gaussian_frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
  assert got == pytest.approx(expected, rel=1e-10)
  # Non-commuting full covariances, one singular: against scipy's sqrtm.
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 2))
  c1, c2 = a @ a.T, b @ b.T
  ref = np.sum((mu1 - mu2)**2) + np.trace(c1 + c2 - 2 * np.real(scipy.linalg.sqrtm(c1 @ c2)))
  assert frechet.gaussian_frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-6)


def test_frechet_distance_from_features():
  rng = np.random.default_rng(1)
  f = rng.normal(size=(2000, 4))
  assert frechet.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)
  g = rng.normal(size=(4000, 4)) * 2.0 + 1.0
  # N(0, I) vs N(1, 4I) in 4-D: 4 * 1 + 4 * (1 - 2)^2 = 8, up to sampling error.
  assert frechet.frechet_distance(f, g) == pytest.approx(8.0, rel=0.1)


def test_gaussian_baseline_matches_moments():
  rng = np.random.default_rng(2)
  data = rng.uniform(size=(3000, 3, 3, 1)) ** 2
  data[:, 0, 0, 0] = 0.0    # A constant pixel: singular covariance.
  base = baselines.GaussianBaseline.fit(data)
  s = base.sample(rng, 20000)
  assert s.shape == (20000, 3, 3, 1) and s.dtype == np.float32
  np.testing.assert_allclose(s.reshape(len(s), -1).mean(0), data.reshape(3000, -1).mean(0),
                             atol=0.01)
  np.testing.assert_allclose(np.cov(s.reshape(len(s), -1), rowvar=False),
                             np.cov(data.reshape(3000, -1), rowvar=False), atol=0.01)
  clipped = base.sample(rng, 100, clip=(0.0, 1.0))
  assert clipped.min() >= 0.0 and clipped.max() <= 1.0


# --- Pictures.


def test_plots_write_pngs(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(10, 8, 8, 1)).astype(np.float32)
  grid = plots.image_grid(images, 4, str(tmp_path / "grid.png"), title="samples")
  assert grid.shape == (3 * 10 + 2, 4 * 10 + 2, 1)
  adv = np.clip(images + 0.1 * np.sign(rng.normal(size=images.shape)), 0, 1)
  plots.adversarial_triptych(images[:3], adv[:3], [1, 2, 3], [0.9, 0.8, 0.7], [4, 5, 6],
                             [0.99, 0.6, 0.5], str(tmp_path / "adv.png"), true_labels=[1, 2, 3],
                             epsilon=0.1)
  walk = np.stack([images[:5] * 2 - 1, images[5:] * 2 - 1])
  strip = plots.interpolation_strip(walk, str(tmp_path / "walk.png"), value_range=(-1, 1))
  assert strip.shape == (2 * 10 + 2, 5 * 10 + 2, 1)
  for name in ("grid.png", "adv.png", "walk.png"):
    path = tmp_path / name
    assert path.exists() and os.path.getsize(path) > 100
    with open(path, "rb") as fh:
      assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
