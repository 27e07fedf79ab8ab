"""Which convolution computes the models' `nn.Conv` layers: XLA's or oneDNN's (config.conv_impl).

    with conv_impl.use("onednn"):   # Around tracing (jit's first call, init, eval_shape).
      state, metrics = jax.jit(train_step)(state, batch)

"xla" (the default) leaves every model as it is: `lax.conv_general_dilated`,
bit for bit. "onednn" routes every `nn.Conv` of every model (and subclasses
that respect its `conv_general_dilated` field, e.g. LeNet-5's masked C3)
through `research.ops.onednn_conv.conv_or_lax`: oneDNN on the CPU backend where
it supports the arguments (NHWC/HWIO, float32 or bfloat16, strides, paddings,
kernel dilation, feature groups), lax elsewhere (GPU/TPU, input dilation).
Left on lax in both modes: `nn.ConvTranspose` (the DCGAN generator), a dense
layer run as a convolution for dense evaluation (`common.Dense.as_conv`), and
the deconvnet's projections (research/ops/deconvnet.py).

How: a Flax method interceptor (`nn.intercept_methods`) sets the layer's
`conv_general_dilated` field for the duration of its `__call__`, so no model's
constructor changes and the parameters are the same tree. The choice is read
when a function is traced: a function jitted and traced under one mode keeps
it (the trainer wraps the whole run, whose steps are jitted afresh per run).

Under a data-parallel mesh (the batch sharded) each device convolves its own
images and the weight gradients are summed with one all-reduce, as XLA does
for its own convolution (research/ops/onednn_conv_rules.py;
tests/test_conv_impl.py checks ResNet-20's step on 2 forced host devices).

Without the built library (`bash scripts/build_onednn_conv.sh`), "onednn"
logs one warning line per process and runs lax, as issue 15 asks.

Why: issue 15. XLA:CPU's convolutions with both backward passes ran at
0.5-0.6x PyTorch's oneDNN; the op alone is 1.9-2.1x XLA in float32 and 3.8x in
bfloat16 on ResNet-20's shapes (README, "A oneDNN convolution (issue 15)").
"""

import contextlib
import functools

import flax.linen as nn
from absl import logging

from research.errors import require
from research.ops import onednn_conv

IMPLS = ("xla", "onednn")


def validate(impl: str) -> None:
  """ConfigError "config.conv_impl=...: ..." unless `impl` is one of IMPLS."""
  require(impl in IMPLS, "conv_impl", impl,
          "choose 'xla' (lax.conv_general_dilated) or 'onednn' (oneDNN on the CPU backend, "
          "built by bash scripts/build_onednn_conv.sh; lax elsewhere).")


def _onednn_interceptor(next_fun, args, kwargs, context):
  """Runs an `nn.Conv`'s __call__ with `conv_general_dilated=onednn_conv.conv_or_lax`.

  Only layers that left the field at flax's default (None, meaning lax) are
  changed; a layer that chose its own convolution keeps it.
  """
  module = context.module
  if (context.method_name != "__call__" or not isinstance(module, nn.Conv)
      or module.conv_general_dilated is not None
      or module.conv_general_dilated_cls is not None):
    return next_fun(*args, **kwargs)
  # Flax modules are frozen dataclasses; the layer instance is the one being
  # called (rebuilt at every apply), and the field is restored on the way out.
  object.__setattr__(module, "conv_general_dilated", onednn_conv.conv_or_lax)
  try:
    return next_fun(*args, **kwargs)
  finally:
    object.__setattr__(module, "conv_general_dilated", None)


@functools.cache
def _warn_unavailable_once() -> None:
  logging.warning("config.conv_impl='onednn': %s; using XLA's convolution.",
                  onednn_conv.unavailable_reason())


@contextlib.contextmanager
def use(impl: str):
  """Within this context, models traced compute their `nn.Conv`s with `impl`.

  Args:
    impl: "xla" (nothing changes) or "onednn" (see the module docstring).

  Raises:
    ConfigError: `impl` is not one of IMPLS (before anything runs).
  """
  validate(impl)
  if impl == "xla":
    yield
    return
  if not onednn_conv.available():
    _warn_unavailable_once()
    yield
    return
  with nn.intercept_methods(_onednn_interceptor):
    yield
