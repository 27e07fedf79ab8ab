"""The CNN of Flax's MNIST example: 2 conv + 2 dense layers.

conv 3x3 32, ReLU, avg-pool 2 -> conv 3x3 64, ReLU, avg-pool 2 -> dense 256,
ReLU -> dense num_classes. Kept as a common reference point for speed
comparisons (benchmarks/train_step.py), not a paper's model.
"""

import flax.linen as nn

from research.models import layers


class FlaxExampleCNN(nn.Module):
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    features = {}
    x = features["conv1"] = nn.relu(nn.Conv(32, (3, 3), name="conv1")(x))
    x = layers.AvgPool(2, name="pool1")(x)
    x = features["conv2"] = nn.relu(nn.Conv(64, (3, 3), name="conv2")(x))
    x = layers.AvgPool(2, name="pool2")(x)
    x = features["fc1"] = nn.relu(nn.Dense(256, name="fc1")(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes, name="fc2")(x), features


MODELS = {"flax_example_cnn": FlaxExampleCNN}
