"""The oneDNN convolution (research/ops/onednn_conv.py) against lax.conv_general_dilated.

Values and both gradients on random shapes (odd sizes, strides 1/2/4, groups,
asymmetric and "SAME" padding, dilation) in float32 and bfloat16; under jit
and vmap; flax's nn.Conv with it; its refusals. Needs the library
(`bash scripts/build_onednn_conv.sh`); without it these tests skip, saying so.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.ops import onednn_conv
from tests.conftest import ROOT

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


# vmap: 3 maps of a grouped, strided, dilated, asymmetrically padded convolution.
_VMAP_X = (3, 2, 7, 8, 4)      # [B, N, H, W, C]
_VMAP_K = (3, 3, 2, 2, 6)      # [B, KH, KW, C / 2, O]


def _vmapped(impl, in_axes):
  return jax.vmap(_conv(impl, (2, 1), [(1, 0), (0, 2)], (1, 2), 2), in_axes=in_axes)


def _ffi_calls(hlo: str) -> list[str]:
  """The oneDNN custom calls in a lowered (StableHLO) module, one line each."""
  return [line for line in hlo.splitlines() if "stablehlo.custom_call @onednn_conv" in line]


@needs_library
@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0)], ids=str)
def test_vmap_matches_lax_in_one_call_per_convolution(in_axes):
  """Mapped input and shared weights fold into the batch; mapped weights into feature groups.

  Either way each of the three convolutions (forward, both gradients) is one
  FFI call, not a loop over the mapped axis.
  """
  x = jax.random.normal(jax.random.key(0), _VMAP_X[in_axes[0] is None:])
  k = jax.random.normal(jax.random.key(1), _VMAP_K[in_axes[1] is None:])
  loss = lambda impl: (lambda x, k: jnp.sum(jnp.sin(_vmapped(impl, in_axes)(x, k))))
  ours = jax.jit(jax.value_and_grad(loss(onednn_conv.conv_general_dilated), argnums=(0, 1)))
  ref = jax.value_and_grad(loss(jax.lax.conv_general_dilated), argnums=(0, 1))
  (v, grads), (v_ref, grads_ref) = ours(x, k), ref(x, k)
  np.testing.assert_allclose(v, v_ref, rtol=1e-5)
  for g, g_ref in zip(grads, grads_ref):
    _close(g, g_ref, "float32")
  hlo = ours.lower(x, k).as_text()
  calls = _ffi_calls(hlo)
  assert len(calls) == 3 and "while" not in hlo, calls
  if in_axes == (0, None):   # Folded: one call on all B * N = 6 images, 2 groups as before.
    fwd = next(c for c in calls if "onednn_conv_fwd" in c)
    assert "tensor<6x7x8x4xf32>" in fwd and "groups = 2" in fwd, fwd
  else:                      # Grouped: N = 2 images, B * 2 = 6 groups.
    assert all("groups = 6" in c for c in calls), calls


@needs_library
def test_per_example_gradients_and_nested_vmap_match_lax():
  """vmap of grad (per-example weight gradients: x and dy mapped) and vmap of vmap."""
  x = jax.random.normal(jax.random.key(0), _VMAP_X)
  k = jax.random.normal(jax.random.key(1), _VMAP_K)
  per_example = lambda impl: jax.vmap(jax.grad(lambda k, x: jnp.sum(jnp.sin(
      _conv(impl, (2, 1), [(1, 0), (0, 2)], (1, 2), 2)(x[None], k)))), in_axes=(None, 0))
  ours = jax.jit(per_example(onednn_conv.conv_general_dilated))
  # 2 examples x 2 groups; the input gradient is not needed.
  calls = _ffi_calls(ours.lower(k[0], x[0]).as_text())
  assert len(calls) == 2 and "groups = 4" in calls[1] and "bwd_weights" in calls[1], calls
  _close(ours(k[0], x[0]), per_example(jax.lax.conv_general_dilated)(k[0], x[0]), "float32")
  nested = lambda impl: jax.vmap(_vmapped(impl, (0, None)), in_axes=(0, 0))
  xx = jnp.stack([x, -x])
  ours = jax.jit(nested(onednn_conv.conv_general_dilated))
  assert len(_ffi_calls(ours.lower(xx, k[:2]).as_text())) == 1
  _close(ours(xx, k[:2]), nested(jax.lax.conv_general_dilated)(xx, k[:2]), "float32")


@needs_library
def test_concurrent_calls_give_each_caller_its_own_result():
  """4 Python threads run the same-shape convolution (forward, both gradients) at once.

  No mutex serialises the calls (onednn_conv.cc): each calling thread has its
  own scratchpad and reordered-weights buffers. With the buffers shared and no
  lock this test failed (measured 2026-11-29: 7 of 480 results wrong).
  """
  def step(impl):
    def f(x, k, dy):
      y, vjp = jax.vjp(_conv(impl, (1, 1), "SAME", (1, 1), 1), x, k)
      return (y, *vjp(dy))
    return jax.jit(f)
  ours, ref = step(onednn_conv.conv_general_dilated), step(jax.lax.conv_general_dilated)
  shapes = [(2, 12, 12, 32), (3, 3, 32, 32), (2, 12, 12, 32)]  # Blocked (reordered) weights.
  args = [[jax.random.normal(jax.random.key(10 * t + i), s) for i, s in enumerate(shapes)]
          for t in range(4)]
  refs = [ref(*a) for a in args]
  ours(*args[0])   # Compiled and the primitives cached before the threads start.

  def wrong_results(t):
    return sum(float(jnp.abs(out - r).max()) > 1e-4 * float(jnp.abs(r).max())
               for _ in range(40) for out, r in zip(ours(*args[t]), refs[t]))
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    assert list(pool.map(wrong_results, range(4))) == [0] * 4


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
def test_one_and_two_threads_give_the_same_values():
  x = jax.random.normal(jax.random.key(0), (2, 9, 7, 6))
  k = jax.random.normal(jax.random.key(1), (3, 3, 6, 8))
  conv = jax.jit(_conv(onednn_conv.conv_general_dilated, (2, 2), [(1, 0), (1, 0)], (1, 1), 1))
  try:
    onednn_conv.set_threads(1)
    one = conv(x, k)
    onednn_conv.set_threads(2)
    _close(conv(x, k), one, "float32")
  finally:
    onednn_conv.set_threads(int(os.environ.get("RESEARCH_ONEDNN_THREADS", "0")))
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


_MESH_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from research.ops import onednn_conv
    assert jax.device_count() == 2
    DN = ("NHWC", "HWIO", "NHWC")
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())

    def loss(conv):
      def f(x, k1, k2):  # Two layers: stride 2 with ResNet's (1, 0) padding, then grouped.
        h = jnp.tanh(conv(x, k1, (2, 2), [(1, 0), (1, 0)], dimension_numbers=DN))
        y = conv(h, k2, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
        return jnp.mean(jnp.square(y))
      return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)),
                     out_shardings=(replicated, (batch, replicated, replicated)))

    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.device_put(jax.random.normal(keys[0], (4, 9, 9, 8)), batch)
    k1 = jax.random.normal(keys[1], (3, 3, 8, 16)) / 8
    k2 = jax.random.normal(keys[2], (3, 3, 8, 16)) / 8
    out = {{}}
    for shardy in (True, False):
      jax.config.update("jax_use_shardy_partitioner", shardy)
      (v, grads), (v_ref, grads_ref) = [loss(c)(x, k1, k2) for c in (
          onednn_conv.conv_general_dilated, jax.lax.conv_general_dilated)]
      hlo = loss(onednn_conv.conv_general_dilated).lower(x, k1, k2).compile().as_text()
      calls = [l.split(" custom-call(")[0].split(" = ")[1] + " " + l.split('custom_call_target="')[1].split('"')[0]
               for l in hlo.splitlines() if 'custom_call_target="onednn_conv' in l]
      out[str(shardy)] = dict(
          value_error=abs(float(v) - float(v_ref)) / abs(float(v_ref)),
          grad_errors=[float(jnp.abs(g - r).max() / jnp.abs(r).max()) for g, r in zip(grads, grads_ref)],
          all_gathers=hlo.count("all-gather"), calls=calls,
          all_reduced=[l.split(" all-reduce")[0].split(" = ")[1] for l in hlo.splitlines()
                       if " all-reduce(" in l or " all-reduce-start(" in l])
    print(json.dumps(out))
""")


@needs_library
def test_the_data_parallel_mesh_runs_each_shard_with_no_gather():
  """2 forced host devices, the batch sharded: values and gradients as lax's, nothing gathered.

  Two layers' loss under jit, with Shardy (JAX's default) and with GSPMD's
  propagation. The compiled program has each device convolve its 2 of the 4
  images (forward and input gradient), no all-gather, and one all-reduce that
  carries the weight gradients (each device's partial sum; XLA combines it with
  the loss's all-reduce). Before the sharding rule the activations were
  all-gathered and every device convolved all 4 images.
  """
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  result = subprocess.run([sys.executable, "-c", _MESH_SCRIPT.format(root=ROOT)], env=env,
                          capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  for shardy, run in out.items():
    assert run["value_error"] < 1e-5 and max(run["grad_errors"]) < 1e-5, (shardy, run)
    assert run["all_gathers"] == 0, (shardy, run)
    assert sorted(run["calls"]) == sorted([
        "f32[2,4,4,16]{3,2,1,0} onednn_conv_fwd", "f32[2,4,4,16]{3,2,1,0} onednn_conv_fwd",
        "f32[2,4,4,16]{3,2,1,0} onednn_conv_bwd_data", "f32[2,9,9,8]{3,2,1,0} onednn_conv_bwd_data",
        "f32[3,3,8,16]{3,2,1,0} onednn_conv_bwd_weights",
        "f32[3,3,8,16]{3,2,1,0} onednn_conv_bwd_weights"]), (shardy, run)
    weight_grads = "f32[3,3,8,16]{3,2,1,0}, f32[3,3,8,16]{3,2,1,0}"
    assert any(weight_grads in r for r in run["all_reduced"]), (shardy, run)
