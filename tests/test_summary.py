"""Model summaries against hand-computed counts."""

import flax.linen as nn
import pytest

from research import models
from research.models import layers, summary


def test_lenet5_counts_by_hand():
  s = summary.summarize(models.get_model("lenet5"), (28, 28, 1))
  rows = {r.path: r for r in s.rows}
  # params: (k*k*C_in + 1) * C_out; MACs: H_out*W_out*C_out*k*k*C_in.
  assert rows["C1"].params == (5 * 5 * 1 + 1) * 6 == 156
  assert rows["C1"].output_shape == (28, 28, 6)
  assert rows["C1"].macs == 28 * 28 * 6 * 25 * 1
  assert rows["S2"].output_shape == (14, 14, 6) and rows["S2"].params == 0
  assert rows["C3"].params == (5 * 5 * 6 + 1) * 16
  assert rows["C3"].macs == 10 * 10 * 16 * 25 * 6
  assert rows["C5"].params == (5 * 5 * 16 + 1) * 120
  assert rows["F6"].params == 120 * 84 + 84
  assert rows["output"].params == 84 * 10 + 10
  assert s.total_params == 156 + 2416 + 48120 + 10164 + 850 == 61706
  assert s.total_activations == 784 + 28 * 28 * 6 + 14 * 14 * 6 + 1600 + 400 + 120 + 84 + 10
  assert s.total_flops == 2 * s.total_macs


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, *, train=False):
    x = nn.Conv(4, (3, 3), strides=2, padding=[(1, 1), (1, 1)], feature_group_count=2,
                name="conv")(x)
    x = layers.MaxPool(2, name="pool")(x)
    x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
    return nn.Dense(3, name="fc")(x.reshape(x.shape[0], -1)), {}


def test_grouped_conv_pool_batchnorm_dense():
  s = summary.summarize(_Tiny(), (8, 8, 2))
  rows = {r.path: r for r in s.rows}
  assert rows["conv"].output_shape == (4, 4, 4)
  assert rows["conv"].params == 3 * 3 * 1 * 4 + 4        # Each group sees C_in / 2.
  assert rows["conv"].macs == 4 * 4 * 4 * 9 * 2 // 2
  assert rows["pool"].output_shape == (2, 2, 4)
  assert rows["bn"].params == 8 and rows["bn"].activations == 0  # In place.
  assert rows["fc"].params == 16 * 3 + 3 and rows["fc"].macs == 48
  assert s.total_params == 40 + 8 + 51
  assert "total" in s.table() and "pool" in s.table()


def test_summary_names_the_layer_that_does_not_tile():
  with pytest.raises(ValueError, match=r"^S4: .*4.5 is not an integer"):
    summary.summarize(models.get_model("lenet5", pad_input=0), (30, 30, 1))


def test_unknown_model_lists_the_known_ones():
  with pytest.raises(ValueError, match="Known models: .*lenet5"):
    models.get_model("lenet6")
