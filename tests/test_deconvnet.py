"""The deconvnet (switches, unpooling, projection) and occlusion maps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import models
from research.models import deconvnet_chain, layers
from research.ops import deconvnet, occlusion


def test_switches_unpool_exactly_what_pooling_chose():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
  pads = ((0, 1), (0, 1))  # ZF Net's ceil-mode 3x3/2 pooling.
  pooled, switches = deconvnet.max_pool_with_switches(x, (3, 3), (2, 2), pads)
  np.testing.assert_array_equal(pooled, nn.max_pool(x, (3, 3), (2, 2), pads))
  # Each switch points at the element that won its window.
  flat = np.asarray(x).transpose(0, 3, 1, 2).reshape(2, 3, -1)
  chosen = np.take_along_axis(flat, np.asarray(switches).transpose(0, 3, 1, 2).reshape(2, 3, -1),
                              axis=-1)
  np.testing.assert_array_equal(chosen, np.asarray(pooled).transpose(0, 3, 1, 2).reshape(2, 3, -1))
  # Non-overlapping 2x2 pooling: unpooling puts each max back where it was, zeros elsewhere.
  pooled, switches = deconvnet.max_pool_with_switches(x[:, :8, :8], (2, 2), (2, 2),
                                                      ((0, 0), (0, 0)))
  up = np.asarray(deconvnet.unpool(pooled, switches, (8, 8)))
  xs = np.asarray(x[:, :8, :8])
  is_max = xs == np.repeat(np.repeat(np.asarray(pooled), 2, 1), 2, 2)
  np.testing.assert_array_equal(up, np.where(is_max, xs, 0.0))
  # Overlapping windows that choose the same element add up there.
  counts = deconvnet.unpool(jnp.ones_like(pooled), switches, (8, 8))
  assert float(counts.sum()) == pooled.size


def _numpy_transposed_conv(acts, kernel, stride, pad, out_hw):
  """Each activation paints its filter into the window it came from."""
  h, w = out_hw
  k = kernel.shape[0]
  out = np.zeros((acts.shape[0], h + 2 * k, w + 2 * k, kernel.shape[2]))
  for b, y, x, o in zip(*np.nonzero(acts)):
    top, left = y * stride - pad + k, x * stride - pad + k  # Offset by k: room for padding.
    out[b, top:top + k, left:left + k] += acts[b, y, x, o] * kernel[..., o]
  return out[:, k:k + h, k:k + w]


class OneLayer(nn.Module):
  @nn.compact
  def __call__(self, x, *, train=False):
    feats = {"layer1": nn.relu(nn.Conv(4, (3, 3), 2, padding=((1, 1), (1, 1)), name="conv1")(x))}
    return nn.Dense(2, name="fc")(feats["layer1"].reshape(x.shape[0], -1)), feats


def test_one_layer_projection_is_the_transposed_conv_of_the_masked_activation():
  model = OneLayer()
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 9, 2))
  params = _random_params(model, x.shape)
  chain = deconvnet_chain.read_chain(model, params, (9, 9, 2))
  assert chain == (deconvnet.Conv(("conv1",), (2, 2), ((1, 1), (1, 1)), 1, (3, 3)),)
  _, feats = model.apply({"params": params}, x)
  kernel = np.asarray(params["conv1"]["kernel"])
  for keep in ("map", "max"):
    got = _project(chain, params, x, 1, 2, keep=keep)
    acts = np.asarray(feats["layer1"]) * (np.arange(4) == 2)
    if keep == "max":
      acts = acts * (acts == acts.max(axis=(1, 2, 3), keepdims=True))
    want = _numpy_transposed_conv(acts, kernel, 2, 1, (9, 9))
    np.testing.assert_allclose(got, want, atol=1e-5)


# Narrow versions of the scaled nets: the same layers, strides and paddings.
NARROW = dict(widths=(4, 6, 8, 8, 6), fc_width=8)


def _random_params(model, input_shape, seed=0):
  """Random parameters of the model's shapes, drawn by NumPy: no compiled initialisers."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(input_shape))["params"]
  return jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), shapes)


def _project(chain, params, x, layer, channel, keep="max"):
  return jax.jit(deconvnet.project, static_argnums=(0, 3), static_argnames="keep")(
      chain, params, x, layer, channel, keep=keep)


@pytest.mark.parametrize("name", ["zfnet_small", "alexnet_small"])
def test_chain_reproduces_the_models_features(name):
  model = models.get_model(name, **NARROW)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1))
  params = _random_params(model, x.shape)
  chain = deconvnet_chain.read_chain(model, params, (28, 28, 1))
  assert [type(l).__name__ for l in chain].count("Conv") == 5
  _, want = jax.jit(model.apply)({"params": params}, x)
  got, _ = jax.jit(deconvnet.forward, static_argnums=0)(chain, params, x)
  prefix = "layer" if name.startswith("zf") else "conv"
  for n, g in enumerate(got, start=1):
    np.testing.assert_allclose(g, want[f"{prefix}{n}"], rtol=1e-4, atol=1e-5)
  proj = _project(chain, params, x, 5, 3)
  assert proj.shape == x.shape and bool(jnp.all(jnp.isfinite(proj)))


def test_projection_stays_in_the_receptive_field():
  model = models.get_model("zfnet_small", **NARROW)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 28, 28, 1))
  params = _random_params(model, x.shape)
  chain = deconvnet_chain.read_chain(model, params, (28, 28, 1))
  assert deconvnet.receptive_box(chain, 1, 0, 0) == (-2, -2, 3, 3)  # 5x5 pad 2.
  feats, _ = jax.jit(deconvnet.forward, static_argnums=0)(chain, params, x)
  a = np.asarray(feats[1][0, ..., 5])
  y, xx = np.unravel_index(np.argmax(a), a.shape)
  top, left, bottom, right = deconvnet.receptive_box(chain, 2, y, xx)
  proj = np.abs(np.asarray(_project(chain, params, x, 2, 5)[0, ..., 0]))
  inside = np.zeros_like(proj, bool)
  inside[max(top, 0):bottom, max(left, 0):right] = True
  assert proj[inside].sum() > 0 and proj[~inside].sum() == 0


def test_read_chain_rejects_unsupported_layers():
  class WithAvgPool(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
      x = layers.AvgPool(2)(nn.relu(nn.Conv(2, (3, 3))(x)))
      return nn.Dense(2)(x.reshape(x.shape[0], -1)), {}
  model = WithAvgPool()
  params = _random_params(model, (1, 8, 8, 1))
  with pytest.raises(NotImplementedError, match="AvgPool"):
    deconvnet_chain.read_chain(model, params, (8, 8, 1))


def test_occlusion_map_of_a_linear_model_is_its_closed_form():
  rng = np.random.default_rng(0)
  image = rng.uniform(size=(10, 12, 3)).astype(np.float32)
  weights = rng.normal(size=(10, 12, 3)).astype(np.float32)
  fill, size, stride = np.array([0.5, 0.4, 0.3], np.float32), 4, 3
  got = occlusion.occlusion_map(lambda im: jnp.sum(weights * im) + 1.0, jnp.asarray(image),
                                size=size, stride=stride, fill=fill, batch_size=5)
  ys, xs = range(1, 10, 3), range(1, 12, 3)
  assert got.shape == (len(ys), len(xs))
  for i, cy in enumerate(ys):
    for j, cx in enumerate(xs):
      rows = slice(max(cy - 2, 0), cy + 2)
      cols = slice(max(cx - 2, 0), cx + 2)
      # f(occluded) = f(x) - <w, x - fill> over the square.
      want = (np.sum(weights * image) + 1.0
              - np.sum(weights[rows, cols] * (image[rows, cols] - fill)))
      np.testing.assert_allclose(got[i, j], want, rtol=1e-4, atol=1e-4)
