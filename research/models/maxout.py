"""The MNIST classifiers of Goodfellow, Shlens & Szegedy 2014 ("Explaining and
harnessing adversarial examples"): a shallow softmax classifier (§5) and a
maxout network with dropout (§6; the permutation-invariant MNIST model of
Goodfellow et al. 2013, "Maxout networks").

Maxout network: input dropout (keep 0.8) -> maxout 240 units x 5 pieces ->
dropout 0.5 -> maxout 240 x 5 -> dropout 0.5 -> softmax, weights
U(-0.005, 0.005) as in the maxout paper's pylearn2 configuration. For
adversarial training Goodfellow et al. widened it to 1600 units per layer
(§6); `units` is a constructor field, so a config can do the same.

Both take images [B, H, W, C] (already standardised by the caller) and
return (logits [B, num_classes], features).
"""

import flax.linen as nn

from research.models.gan import Maxout


class SoftmaxRegression(nn.Module):
  """Multinomial logistic regression on the pixels: one Dense layer."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train  # No dropout or batch norm.
    return nn.Dense(self.num_classes, name="output")(x.reshape(x.shape[0], -1)), {}


class MaxoutMLP(nn.Module):
  """Maxout hidden layers with dropout, then a softmax layer."""
  num_classes: int = 10
  units: tuple[int, ...] = (240, 240)
  pieces: int = 5
  input_dropout: float = 0.2
  hidden_dropout: float = 0.5
  init_range: float = 0.005

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    features = {}
    x = x.reshape(x.shape[0], -1)
    x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
    for i, units in enumerate(self.units):
      x = features[f"h{i}"] = Maxout(units, self.pieces, self.init_range, name=f"h{i}")(x)
      x = nn.Dropout(self.hidden_dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="output")(x), features


MODELS = {"softmax_regression": SoftmaxRegression, "maxout_mlp": MaxoutMLP}
