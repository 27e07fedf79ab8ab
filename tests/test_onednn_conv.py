"""The oneDNN convolution (research/ops/onednn_conv.py) against lax.conv_general_dilated.

Values and both gradients on random shapes (odd sizes, strides 1/2/4, groups,
asymmetric and "SAME" padding, dilation) in float32 and bfloat16; under jit
and vmap; flax's nn.Conv with it; its refusals. Needs the library
(`bash scripts/build_onednn_conv.sh`); without it these tests skip, saying so.
"""

import os
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.ops import onednn_conv

needs_library = pytest.mark.skipif(
    not onednn_conv.available(),
    reason=f"oneDNN conv not built: {onednn_conv.unavailable_reason()}")

_DN = ("NHWC", "HWIO", "NHWC")

# (N, H, W, C, O, KH, KW, strides, padding, dilation, groups)
CASES = [
    (2, 9, 7, 6, 8, 3, 3, (1, 1), [(1, 1), (1, 1)], (1, 1), 1),
    (3, 11, 13, 4, 5, 3, 3, (2, 2), [(1, 0), (1, 0)], (1, 1), 1),  # ResNet's stride-2 padding.
    (2, 13, 10, 3, 7, 5, 3, (4, 2), [(2, 1), (0, 2)], (1, 1), 1),  # AlexNet-like stride 4.
    (2, 8, 9, 6, 4, 3, 3, (1, 2), "SAME", (1, 1), 2),              # Groups (AlexNet's two towers).
    (1, 10, 10, 4, 8, 3, 3, (1, 1), "VALID", (2, 2), 4),           # Dilation and 4 groups.
    (4, 7, 7, 5, 3, 1, 1, (2, 2), [(0, 0), (0, 0)], (1, 1), 1),    # 1x1 projection shortcut.
]
_TOL = {"float32": 2e-5, "bfloat16": 2e-2}  # Relative to the largest magnitude of lax's result.


def _conv(impl, strides, padding, dilation, groups):
  return lambda x, w: impl(x, w, strides, padding, rhs_dilation=dilation,
                           dimension_numbers=_DN, feature_group_count=groups)


def _close(ours, ref, dtype):
  assert ours.shape == ref.shape and ours.dtype == ref.dtype
  ours, ref = np.asarray(ours, np.float32), np.asarray(ref, np.float32)
  scale = np.abs(ref).max()
  assert scale > 0
  np.testing.assert_array_less(np.abs(ours - ref).max(), _TOL[dtype] * scale)


@needs_library
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}x{c[2]}x{c[3]}->{c[4]}s{c[7]}g{c[10]}")
def test_values_and_gradients_equal_lax(case, dtype):
  n, h, w, c, o, kh, kw, strides, padding, dilation, groups = case
  kx, kw_, kdy = jax.random.split(jax.random.key(sum(case[:7])), 3)
  x = jax.random.normal(kx, (n, h, w, c), dtype)
  k = jax.random.normal(kw_, (kh, kw, c // groups, o), dtype)
  ours = _conv(onednn_conv.conv_general_dilated, strides, padding, dilation, groups)
  ref = _conv(jax.lax.conv_general_dilated, strides, padding, dilation, groups)
  y, vjp = jax.vjp(jax.jit(ours), x, k)
  y_ref, vjp_ref = jax.vjp(ref, x, k)
  _close(y, y_ref, dtype)
  dy = jax.random.normal(kdy, y.shape, dtype)
  for g, g_ref in zip(jax.jit(vjp)(dy), vjp_ref(dy)):
    _close(g, g_ref, dtype)


@needs_library
def test_grad_of_a_loss_and_vmap_match_lax():
  x = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 4))
  k = jax.random.normal(jax.random.key(1), (3, 3, 4, 5))
  loss = lambda impl: (lambda x, k: jnp.sum(jnp.tanh(jax.vmap(
      _conv(impl, (1, 1), "SAME", (1, 1), 1), in_axes=(0, None))(x, k))))
  ours = jax.jit(jax.value_and_grad(loss(onednn_conv.conv_general_dilated), argnums=(0, 1)))
  ref = jax.value_and_grad(loss(jax.lax.conv_general_dilated), argnums=(0, 1))
  (v, grads), (v_ref, grads_ref) = ours(x, k), ref(x, k)
  np.testing.assert_allclose(v, v_ref, rtol=1e-5)
  for g, g_ref in zip(grads, grads_ref):
    _close(g, g_ref, "float32")


@needs_library
def test_flax_conv_uses_it():
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
  ref = nn.Conv(4, (3, 3), strides=2, padding=[(1, 0), (1, 0)])
  ours = nn.Conv(4, (3, 3), strides=2, padding=[(1, 0), (1, 0)],
                 conv_general_dilated=onednn_conv.conv_general_dilated)
  params = ref.init(jax.random.key(1), x)
  _close(ours.apply(params, x), ref.apply(params, x), "float32")


@pytest.mark.parametrize("kwargs, message", [
    ({"lhs_dilation": (2, 2)}, "input (lhs) dilation"),
    ({"dimension_numbers": ("NCHW", "OIHW", "NCHW")}, "NHWC/HWIO/NHWC"),
    ({"padding": [(-1, 0), (0, 0)]}, "negative padding"),
    ({"batch_group_count": 2}, "batch_group_count"),
    ({"feature_group_count": 3}, "feature_group_count=3"),
])
def test_unsupported_arguments_are_refused_by_name(kwargs, message):
  args = {"lhs": jnp.zeros((2, 5, 5, 4)), "rhs": jnp.zeros((3, 3, 4, 4)),
          "window_strides": (1, 1), "padding": "SAME", "dimension_numbers": _DN}
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    onednn_conv.conv_general_dilated(**{**args, **kwargs})


def test_mixed_dtypes_are_refused():
  with pytest.raises(ValueError, match="must both be float32 or both bfloat16"):
    onednn_conv.conv_general_dilated(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2), jnp.bfloat16),
                                     (1, 1), "SAME", dimension_numbers=_DN)


def test_a_missing_library_says_how_to_build_it(monkeypatch, tmp_path):
  monkeypatch.setenv("RESEARCH_ONEDNN_CONV_LIB", str(tmp_path / "missing.so"))
  onednn_conv._load.cache_clear()
  try:
    assert not onednn_conv.available()
    assert "bash scripts/build_onednn_conv.sh" in onednn_conv.unavailable_reason()
    with pytest.raises(ValueError, match="library is not available"):
      onednn_conv.conv_general_dilated(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)), (1, 1),
                                       "SAME", dimension_numbers=_DN)
  finally:
    onednn_conv._load.cache_clear()   # The next caller loads the real library again.


@needs_library
def test_two_threads_give_the_same_values():
  x = jax.random.normal(jax.random.key(0), (2, 9, 7, 6))
  k = jax.random.normal(jax.random.key(1), (3, 3, 6, 8))
  conv = jax.jit(_conv(onednn_conv.conv_general_dilated, (2, 2), [(1, 0), (1, 0)], (1, 1), 1))
  default = conv(x, k)
  onednn_conv.set_threads(2)
  try:
    _close(conv(x, k), default, "float32")
  finally:
    onednn_conv.set_threads(int(os.environ.get("RESEARCH_ONEDNN_THREADS", "1")))
  with pytest.raises(ValueError, match="threads must be >= 0"):
    onednn_conv.set_threads(-1)


def _targets(fn, *args) -> str:
  return str(jax.make_jaxpr(fn)(*args))


@needs_library
def test_conv_or_lax_uses_onednn_where_it_can_and_lax_elsewhere():
  x, k = jnp.ones((2, 6, 6, 4)), jnp.ones((3, 3, 4, 4))
  supported = lambda x, k: onednn_conv.conv_or_lax(x, k, (1, 1), "SAME", dimension_numbers=_DN)
  dilated_input = lambda x, k: onednn_conv.conv_or_lax(x, k, (1, 1), [(1, 1), (1, 1)],
                                                       lhs_dilation=(2, 2), dimension_numbers=_DN)
  assert "onednn_conv_fwd" in _targets(supported, x, k)
  assert "onednn_conv_fwd" not in _targets(dilated_input, x, k)
  _close(supported(x, k), jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                         dimension_numbers=_DN), "float32")


def test_conv_or_lax_without_the_library_warns_once_and_uses_lax(monkeypatch, tmp_path):
  monkeypatch.setenv("RESEARCH_ONEDNN_CONV_LIB", str(tmp_path / "missing.so"))
  onednn_conv._load.cache_clear()
  onednn_conv._warn_unavailable_once.cache_clear()
  x, k = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 3))
  conv = lambda x, k: onednn_conv.conv_or_lax(x, k, (1, 1), "SAME", dimension_numbers=_DN)
  try:
    with pytest.warns(RuntimeWarning, match="missing.so does not exist.*using XLA's convolution"):
      y = conv(x, k)
    with warnings.catch_warnings():
      warnings.simplefilter("error")   # The second call is silent.
      conv(x, k)
    np.testing.assert_array_equal(y, jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                                  dimension_numbers=_DN))
  finally:
    onednn_conv._load.cache_clear()
    onednn_conv._warn_unavailable_once.cache_clear()
