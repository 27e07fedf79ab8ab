"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning
applied to document recognition", §II.B and Fig. 2).

32x32 input (28x28 digits padded by 2) -> C1 6@28x28 -> S2 6@14x14 ->
C3 16@10x10 -> S4 16@5x5 -> C5 120 -> F6 84 -> 10 outputs.

C3 connects each of its 16 maps to a subset of S2's 6 maps (the paper's
Table I) "to break symmetry" and keep the parameter count down; `c3_table`
reproduces that with a fixed mask on a dense kernel. The paper's output layer
is Euclidean RBF units; we use a linear layer with softmax cross-entropy, as
every modern reproduction does.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.models import layers

# Table I of the paper: row = S2 map (input), column = C3 map (output).
C3_TABLE = np.array([
    [1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1],
    [1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1],
    [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1],
    [0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1],
    [0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 1],
    [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1],
], dtype=np.float32)


class MaskedConv(nn.Conv):
  """A stride-1 convolution whose kernel is multiplied by a fixed [C_in, C_out] mask."""
  mask: np.ndarray | None = None

  @nn.compact
  def __call__(self, x):
    kernel_shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    kernel = kernel * jnp.asarray(self.mask, kernel.dtype)[None, None]  # bf16 stays bf16.
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), self.padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def masked_parameter_count(params) -> int:
  """Parameters held at zero by C3's connection table (not free parameters)."""
  kernel = params.get("C3", {}).get("kernel")
  if kernel is None or kernel.shape[-2:] != C3_TABLE.shape:
    return 0
  return int(kernel.shape[0] * kernel.shape[1] * (C3_TABLE.size - C3_TABLE.sum()))


class LeNet5(nn.Module):
  """LeNet-5. Input float [B, 28, 28, C] (or 32x32 with pad_input=0)."""
  num_classes: int = 10
  activation: str = "relu"     # The paper: "scaled_tanh".
  pooling: str = "max"         # The paper: "avg" (trainable coefficients omitted).
  c3_table: bool = True
  dropout: float = 0.0
  pad_input: int = 2

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    act = layers.activation(self.activation)
    pool = {"max": layers.MaxPool, "avg": layers.AvgPool}[self.pooling]
    features = {}
    p = self.pad_input
    x = features["C1"] = act(nn.Conv(6, (5, 5), padding=[(p, p), (p, p)], name="C1")(x))
    x = pool(2, name="S2")(x)
    if self.c3_table:
      x = MaskedConv(16, (5, 5), padding="VALID", mask=C3_TABLE, name="C3")(x)
    else:
      x = nn.Conv(16, (5, 5), padding="VALID", name="C3")(x)
    x = features["C3"] = act(x)
    x = pool(2, name="S4")(x)
    x = features["C5"] = act(nn.Conv(120, (5, 5), padding="VALID", name="C5")(x))
    x = x.reshape(x.shape[0], -1)
    x = features["F6"] = act(nn.Dense(84, name="F6")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, name="output")(x)
    return logits, features


MODELS = {"lenet5": LeNet5}
