"""Mixed precision: the one policy every objective's steps apply (config.compute_dtype).

"float32" (the default) runs the model exactly as before. "bfloat16" computes
the network in bfloat16 while everything that accumulates stays float32
(Micikevicius et al. 2018, "Mixed precision training", §3; with bfloat16's
float32 exponent range no loss scaling is needed, Kalamkar et al. 2019):

* parameters and optimizer state are stored and updated in float32; `apply`
  casts a bfloat16 copy of the parameters for the forward pass, so gradients
  flow back through the cast and arrive in float32;
* the input is cast to bfloat16 after standardisation (in float32);
* Flax's BatchNorm keeps its running statistics in float32 and computes the
  batch mean and variance in float32 (`force_float32_reductions`, on by
  default), then normalises back into bfloat16;
* the model's outputs (logits, features) are cast back to float32, so the
  softmax, the loss and every metric are float32.

The objectives' train and eval steps follow it; analyses outside them (the
GAN's sample grids, the attacks and the rest of research/eval) run float32.

The switch is for GPUs and TPUs (benchmarks/gpu_train_step.py), and for the
CPU convolution of issue 15: XLA:CPU's bf16 convolutions run no faster than
its float32 ones (111 GFLOP/s both, measured for that issue on 2026-11-29).
"""

from typing import Any

import jax
import jax.numpy as jnp

from research.errors import require

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def validate_config(config) -> None:
  """ConfigError unless config.compute_dtype is one of COMPUTE_DTYPES."""
  require(config.compute_dtype in COMPUTE_DTYPES, "compute_dtype", config.compute_dtype,
          f"choose one of {sorted(COMPUTE_DTYPES)} (bfloat16: bf16 compute, float32 "
          "parameters, optimizer state and loss).")


def dtype_of(name: str):
  """"float32" | "bfloat16" -> the jnp dtype; ValueError naming the choices otherwise."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"Unknown compute dtype {name!r}; choose one of {sorted(COMPUTE_DTYPES)}.")
  return COMPUTE_DTYPES[name]


def cast_floating(tree: Any, dtype) -> Any:
  """`tree` with every floating-point array cast to `dtype` (integers, keys untouched)."""
  def cast(x):
    if jnp.issubdtype(getattr(x, "dtype", jnp.int32), jnp.floating):
      return jnp.asarray(x, dtype)
    return x
  return jax.tree.map(cast, tree)


def apply(module, variables: dict, x: jax.Array, *, compute_dtype: str = "float32", **kwargs):
  """`module.apply(variables, x, **kwargs)` in `compute_dtype`, outputs in float32.

  Args:
    module: a Flax module.
    variables: {"params": float32 tree, other collections (batch_stats)}; only
      "params" is cast: batch-norm statistics stay float32.
    x: float input [B, ...] (or a latent batch), cast to the compute dtype.
    compute_dtype: "float32" (module.apply unchanged, bit for bit) or "bfloat16".
    kwargs: module.apply's (train, rngs, mutable, ...).

  Returns:
    What module.apply returns, floating leaves in float32 (with `mutable`, the
    (output, updated collections) pair, both float32).
  """
  if compute_dtype == "float32":
    return module.apply(variables, x, **kwargs)
  dtype = dtype_of(compute_dtype)
  variables = {**variables, "params": cast_floating(variables["params"], dtype)}
  return cast_floating(module.apply(variables, cast_floating(x, dtype), **kwargs), jnp.float32)
