"""Model summaries in the style of the cs231n notes' VGG-16 table.

For every leaf layer: output shape, parameters, activations (output values
per image, the forward-pass memory) and multiply-accumulates, with totals.
Nothing is computed: the model is traced with `jax.eval_shape`, so an
ImageNet VGG-16 summarises in about a second. Convolution and pooling windows
are checked with `ops.conv_output_size`, so a filter that does not tile its
input (leaving real pixels unvisited, not just padding) stops with an error
naming the layer.

Counting rules (the notes'): MACs are counted for convolutions and dense
layers only; activations count the input and every leaf layer's output except
batch norm and dropout (applied in place); a ReLU applied as a function is
not a layer and is not counted.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import ops
from research.models import layers

_IN_PLACE = (nn.BatchNorm, nn.Dropout, nn.LayerNorm, nn.GroupNorm)


@dataclasses.dataclass
class LayerRow:
  path: str
  kind: str
  output_shape: tuple[int, ...]   # Without the batch axis.
  params: int = 0
  activations: int = 0
  macs: int = 0


@dataclasses.dataclass
class Summary:
  rows: list[LayerRow]
  input_shape: tuple[int, ...]
  total_params: int
  total_activations: int
  total_macs: int

  @property
  def total_flops(self) -> int:
    return 2 * self.total_macs

  def table(self) -> str:
    head = f"{'layer':<34}{'kind':<22}{'output':>16}{'params':>14}{'activations':>14}{'MACs':>16}"
    lines = [head, "-" * len(head),
             f"{'input':<34}{'':<22}{_shape(self.input_shape):>16}{'':>14}"
             f"{math.prod(self.input_shape):>14,}{'':>16}"]
    for r in self.rows:
      lines.append(f"{r.path:<34.34}{r.kind:<22.22}{_shape(r.output_shape):>16}"
                   f"{r.params:>14,}{r.activations:>14,}{r.macs:>16,}")
    lines += ["-" * len(head),
              f"{'total':<34}{'':<22}{'':>16}{self.total_params:>14,}"
              f"{self.total_activations:>14,}{self.total_macs:>16,}",
              f"parameters {self.total_params:,} ({self.total_params * 4 / 2**20:.1f} MiB "
              f"float32); activations per image {self.total_activations:,} "
              f"({self.total_activations * 4 / 2**20:.1f} MiB forward); "
              f"{_count(self.total_macs)}MACs = {_count(self.total_flops)}FLOPs per image"]
    return "\n".join(lines)


def _count(n: int) -> str:
  for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
    if n >= scale:
      return f"{n / scale:.3g} {prefix}"
  return f"{n} "


def _shape(shape) -> str:
  return "x".join(str(d) for d in shape) or "scalar"


def _window_check(name: str, in_hw, out_hw, window, strides, padding):
  """Checks a conv/pool window against conv arithmetic (explicit padding only)."""
  if isinstance(padding, str):
    if padding.upper() != "VALID":
      return  # SAME (and friends) pad to ceil(W / S) by construction.
    padding = [(0, 0)] * len(window)
  if isinstance(padding, int):
    padding = [(padding, padding)] * len(window)
  for w, f, s, (lo, hi), o in zip(in_hw, window, strides, padding, out_hw):
    if lo != hi:
      continue  # Asymmetric padding: the formula with a single P does not apply.
    if ops.conv_output_size(w, f, s, lo, allow_unused_padding=True, layer=name) != o:
      raise ValueError(f"{name}: conv arithmetic gives {w}->{o} mismatch.")


def _describe(module: nn.Module, path: str, x, y) -> tuple[str, int]:
  """(kind, MACs per image) of one layer call, checking its window arithmetic."""
  x_shape, y_shape = x.shape[1:], y.shape[1:]
  if isinstance(module, nn.ConvTranspose):
    k = tuple(module.kernel_size)
    return (f"ConvT {'x'.join(map(str, k))}",
            math.prod(x_shape[:-1]) * math.prod(k) * x_shape[-1] * y_shape[-1])
  if isinstance(module, nn.Conv):
    k = tuple(module.kernel_size)
    strides = module.strides or (1,) * len(k)
    strides = (strides,) * len(k) if isinstance(strides, int) else tuple(strides)
    dilation = module.kernel_dilation or 1
    if dilation in (1, (1,) * len(k)):
      _window_check(path, x_shape[:-1], y_shape[:-1], k, strides, module.padding)
    groups = module.feature_group_count
    kind = f"Conv {'x'.join(map(str, k))}/{strides[0]}" + (f" g{groups}" if groups > 1 else "")
    return kind, math.prod(y_shape) * math.prod(k) * x_shape[-1] // groups
  if isinstance(module, nn.Dense):
    return "Dense", math.prod(y_shape[:-1]) * x_shape[-1] * y_shape[-1]
  if isinstance(module, (layers.MaxPool, layers.AvgPool)):
    stride = module.stride or module.window
    _window_check(path, x_shape[:-1], y_shape[:-1], (module.window,) * 2, (stride,) * 2,
                  module.padding)
    return f"{type(module).__name__} {module.window}x{module.window}/{stride}", 0
  return type(module).__name__, 0


def summarize(model: nn.Module, input_shape, **call_kwargs) -> Summary:
  """Summarises `model` on one input of `input_shape` (with or without batch axis).

  `call_kwargs` go to the model call (e.g. train=False).
  """
  input_shape = tuple(input_shape)
  if len(input_shape) == 3:
    input_shape = (1, *input_shape)
  calls = []

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and args and hasattr(args[0], "shape"):
      path = "/".join(context.module.path)
      y = out[0] if isinstance(out, tuple) else out
      if not hasattr(y, "shape"):
        return out  # A model returning a dict of outputs (the detectors): its layers have rows.
      # Described (and window-checked) now, so a bad layer fails before later
      # layers can fail on its wrong shape.
      kind, macs = _describe(context.module, path, args[0], y)
      calls.append((context.module, path, kind, macs, y))
    return out

  def init(x):
    with nn.intercept_methods(interceptor):
      return model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                        x, **call_kwargs)

  variables = jax.eval_shape(init, jax.ShapeDtypeStruct(input_shape, jnp.float32))
  params = variables.get("params", {})

  paths = [c[1] for c in calls]
  rows = []
  for module, path, kind, macs, y in calls:
    if not path or any(other.startswith(path + "/") for other in paths):
      continue  # Not a leaf: its children have rows of their own.
    if isinstance(module, nn.Dropout):
      continue
    own = params
    for key in module.path:
      own = own.get(key, {}) if isinstance(own, dict) else {}
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(own)) if own else 0
    acts = 0 if isinstance(module, _IN_PLACE) else math.prod(y.shape[1:])
    rows.append(LayerRow(path, kind, tuple(y.shape[1:]), n_params, acts, macs))

  total_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
  return Summary(rows, input_shape[1:], total_params,
                 math.prod(input_shape[1:]) + sum(r.activations for r in rows),
                 sum(r.macs for r in rows))
