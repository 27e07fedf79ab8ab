"""The oneDNN convolution's three FFI calls with their vmap and sharding rules.

`ops(geometry)` gives (fwd, bwd_data, bwd_weights) for one convolution
geometry (strides, paddings, dilation, groups); research/ops/onednn_conv.py
puts them under a `jax.custom_vjp`:

  fwd(x [N, H, W, C], w [KH, KW, C/G, O])         -> y  [N, OH, OW, O]
  bwd_data(dy [N, OH, OW, O], w)                  -> dx [N, H, W, C]
  bwd_weights(x, dy)                              -> dw [KH, KW, C/G, O]

all in the operands' dtype (float32 or bfloat16). Each is a
`jax.custom_batching.custom_vmap` around a
`jax.experimental.custom_partitioning` around `jax.ffi.ffi_call`:

- vmap (a mapped axis of size B): activations mapped and weights shared are
  folded into the batch, [B, N, ...] -> [B * N, ...], one FFI call (the
  convolution is independent per image). Where the weights are mapped too (or
  the call's result is per-map, as per-example weight gradients), the B
  convolutions become one grouped convolution with B * G feature groups
  (channels [..., B * C], weights [KH, KW, C/G, B * O]): again one call, at
  the cost of transposing the activations to put B beside the channels; an
  operand not mapped is broadcast. Nested vmaps apply the rule again.
- sharding (the data-parallel mesh: a batch axis sharded over devices): the
  forward and the input gradient run per shard on the shard's images, the
  weights replicated; the weight gradient runs per shard and one psum over the
  batch's mesh axes adds the partial gradients (the all-reduce XLA inserts for
  its own convolution's weight gradient under the same mesh). Any other
  sharding (channels, spatial, weights) is gathered first: correct, not
  faster. A batch that the shards do not divide is gathered too. Shardy's
  rules (`sharding_rule`) and GSPMD's callbacks say the same.

Why custom_partitioning, not shard_map in the layer: the rule follows
whatever mesh and batch sharding XLA propagates to the call (any axis names,
several batch axes, inside any jitted step) without the layer knowing about
meshes; on one device it lowers to the plain FFI call.

Why: issue 15 asks for the op under jit, vmap and the data-parallel mesh.
Without these rules vmap looped over the mapped axis and the mesh gathered
every convolution's operands onto every device.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec as P


class Geometry(NamedTuple):
  """A convolution's arguments besides its operands (lax's, explicit)."""
  strides: tuple[int, int]
  padding_lo: tuple[int, int]
  padding_hi: tuple[int, int]
  dilation: tuple[int, int]
  groups: int

  def attrs(self) -> dict:
    return dict(strides=np.array(self.strides, np.int64),
                padding_lo=np.array(self.padding_lo, np.int64),
                padding_hi=np.array(self.padding_hi, np.int64),
                dilation=np.array(self.dilation, np.int64), groups=np.int64(self.groups))

  def out_hw(self, h: int, w: int, kh: int, kw: int) -> tuple[int, int]:
    return tuple((size + lo + hi - (k - 1) * d - 1) // s + 1 for size, lo, hi, k, d, s in zip(
        (h, w), self.padding_lo, self.padding_hi, (kh, kw), self.dilation, self.strides))


def _ffi(target: str, shape, dtype, a, b, geometry: Geometry):
  # The mapped case never reaches here (custom_vmap's rule runs instead), so
  # "sequential" is only what a bare ffi_call would do.
  out = jax.ShapeDtypeStruct(shape, dtype)
  return jax.ffi.ffi_call(target, out, vmap_method="sequential")(a, b, **geometry.attrs())


# ---- Sharding: the batch axis per shard, everything else replicated.

def _batch_axes(arg):
  """The mesh axes arg's dim 0 is sharded over, if they divide it evenly, else None."""
  sharding = arg.sharding
  if not isinstance(sharding, NamedSharding) or not sharding.spec:
    return None
  axes = sharding.spec[0]
  if axes is None:
    return None
  names = (axes,) if isinstance(axes, str) else tuple(axes)
  shards = math.prod(sharding.mesh.shape[a] for a in names)
  return axes if arg.shape[0] % shards == 0 else None


def _partitioned(fun, reduce_batch: bool, rule: str):
  """custom_partitioning of fun(a, b) where dim 0 of a (and of b if reduce_batch) is the batch.

  reduce_batch False (forward, input gradient): a batch-sharded, b replicated
  -> a batch-sharded result. True (weight gradient): a and b batch-sharded ->
  a replicated result, the psum of the shards' results. `rule` is Shardy's
  (the batch's factor named "n"; every other factor stays replicated).
  Needs a mesh, which jit has whenever a NamedSharding shards the batch.
  """
  cp = custom_partitioning(fun)

  def shardings(mesh, arg_shapes):
    """(batch axes or None, a's sharding, b's sharding, the result's sharding)."""
    replicated = NamedSharding(mesh, P())
    axes = _batch_axes(arg_shapes[0])
    if axes is None:
      return None, replicated, replicated, replicated
    batch = NamedSharding(mesh, P(axes, None, None, None))
    if reduce_batch:
      return axes, batch, batch, replicated
    return axes, batch, replicated, batch

  def infer_sharding_from_operands(mesh, arg_shapes, result_shape):
    del result_shape
    return shardings(mesh, arg_shapes)[3]

  def partition(mesh, arg_shapes, result_shape):
    del result_shape
    axes, a, b, out = shardings(mesh, arg_shapes)
    if axes is None or not reduce_batch:
      return mesh, fun, out, (a, b)

    def lower(x, y):
      partial = fun(x, y)
      # The shards' partial weight gradients add in float32: a bf16 sum is
      # rounded once, not at every step of the all-reduce.
      return jax.lax.psum(partial.astype(jnp.float32), axes).astype(partial.dtype)
    return mesh, lower, out, (a, b)

  # Shardy wants the special factors in the order they first appear in the rule.
  factors = dict.fromkeys(rule.replace(",", " ").replace("->", " ").split())
  replicated = tuple(f for f in factors if f != "n")
  cp.def_partition(partition, infer_sharding_from_operands=infer_sharding_from_operands,
                   propagate_user_sharding=None, sharding_rule=rule,
                   reduction_factors=("n",) if reduce_batch else (),
                   need_replication_factors=replicated)
  return cp


# ---- vmap: fold the mapped axis into the batch, or into feature groups.

def _fold(a):
  """[B, N, ...] -> [B * N, ...]."""
  return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def _unfold(a, size: int):
  """[B * N, ...] -> [B, N, ...]."""
  return a.reshape(size, a.shape[0] // size, *a.shape[1:])


def _to_last(a):
  """[B, D0, D1, D2, C] -> [D0, D1, D2, B * C]: the mapped axis beside the last.

  For activations NHWC (B * C channels in B groups) and weights HWIO (B * O
  outputs in B groups): both layouts keep a group's channels contiguous.
  """
  b, d0, d1, d2, c = a.shape
  return jnp.moveaxis(a, 0, 3).reshape(d0, d1, d2, b * c)


def _from_last(a, size: int):
  """[D0, D1, D2, B * C] -> [B, D0, D1, D2, C]."""
  d0, d1, d2, bc = a.shape
  return jnp.moveaxis(a.reshape(d0, d1, d2, size, bc // size), 3, 0)


def _mapped(a, batched: bool, size: int):
  return a if batched else jnp.broadcast_to(a, (size, *a.shape))


@functools.cache
def ops(geometry: Geometry, in_hw: tuple[int, int], kernel_hw: tuple[int, int]):
  """(fwd, bwd_data, bwd_weights) for one convolution, with vmap and sharding rules (module doc).

  in_hw: the input's (H, W); kernel_hw: (KH, KW) (the gradients' shapes need
  them: strides > 1 make them ambiguous from the other operand's).
  """

  def fwd_call(x, w):
    oh, ow = geometry.out_hw(x.shape[1], x.shape[2], w.shape[0], w.shape[1])
    return _ffi("onednn_conv_fwd", (x.shape[0], oh, ow, w.shape[3]), x.dtype, x, w, geometry)

  def bwd_data_call(dy, w):
    shape = (dy.shape[0], *in_hw, w.shape[2] * geometry.groups)
    return _ffi("onednn_conv_bwd_data", shape, dy.dtype, dy, w, geometry)

  def bwd_weights_call(x, dy):
    shape = (*kernel_hw, x.shape[3] // geometry.groups, dy.shape[3])
    return _ffi("onednn_conv_bwd_weights", shape, x.dtype, x, dy, geometry)

  fwd = jax.custom_batching.custom_vmap(_partitioned(
      fwd_call, False, "n h w c, kh kw ci o -> n p q o"))
  bwd_data = jax.custom_batching.custom_vmap(_partitioned(
      bwd_data_call, False, "n p q o, kh kw ci o -> n h w c"))
  bwd_weights = jax.custom_batching.custom_vmap(_partitioned(
      bwd_weights_call, True, "n h w c, n p q o -> kh kw ci o"))

  def for_size(size: int):
    return ops(geometry._replace(groups=geometry.groups * size), in_hw, kernel_hw)

  def activations_and_weights_rule(index: int):
    """vmap rule of fwd (index 0) or bwd_data (1): (activations, weights) -> activations."""
    def rule(size, in_batched, a, w):
      a_batched, w_batched = in_batched
      if not w_batched:  # One call on B * N images.
        return _unfold((fwd, bwd_data)[index](_fold(a), w), size), True
      # Mapped weights: B * G groups, one call.
      out = for_size(size)[index](_to_last(_mapped(a, a_batched, size)), _to_last(w))
      return _from_last(out, size), True
    return rule

  fwd.def_vmap(activations_and_weights_rule(0))
  bwd_data.def_vmap(activations_and_weights_rule(1))

  @bwd_weights.def_vmap
  def _(size, in_batched, x, dy):
    # The result is per map (e.g. per-example gradients): B * G groups, one call.
    x_batched, dy_batched = in_batched
    dw = for_size(size)[2](_to_last(_mapped(x, x_batched, size)),
                           _to_last(_mapped(dy, dy_batched, size)))
    return _from_last(dw, size), True

  return fwd, bwd_data, bwd_weights

