"""What is known about each dataset, in one place, keyed by its TFDS name.

Pixel statistics (per channel, on the [0, 1] scale, over the training split),
image shape, class count and split sizes. Configs leave `data.mean` and
`data.std` empty, `()`, to mean "this dataset's statistics" (`normalization`);
data preparation checks the files it reads against the split sizes
(`research/data/builders.py`). Nothing here reads data or imports JAX.

Adding a dataset is adding a `Dataset(...)` to `_DATASETS`, with where its
numbers come from.
"""

import dataclasses

from research import errors


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One dataset's known facts.

  Attributes:
    name: the TFDS name (without version or config).
    mean, std: float per channel, [0, 1] pixel scale, over the training split.
    image_shape: (H, W, C) as stored; None for a side whose size varies.
    num_classes: labels 0 .. num_classes - 1.
    splits: {split: number of examples}.
    source: where the statistics come from.
  """
  name: str
  mean: tuple[float, ...]
  std: tuple[float, ...]
  image_shape: tuple[int | None, int | None, int]
  num_classes: int
  splits: dict[str, int]
  source: str

  @property
  def channels(self) -> int:
    return self.image_shape[-1]


# ImageNet's statistics, which nets pretrained on it (and so detection on VOC) use.
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_MNIST_MEAN, _MNIST_STD = (0.1307,), (0.3081,)

_DATASETS = (
    Dataset("fashion_mnist", (0.2860,), (0.3530,), (28, 28, 1), 10,
            {"train": 60_000, "test": 10_000},
            "measured on the training split (tests/test_data.py checks them)"),
    Dataset("mnist", _MNIST_MEAN, _MNIST_STD, (28, 28, 1), 10,
            {"train": 60_000, "test": 10_000}, "the 60,000 training digits (the usual values)"),
    Dataset("mnist_5k", _MNIST_MEAN, _MNIST_STD, (28, 28, 1), 10,
            {"train": 4_000, "test": 1_000},
            "MNIST's (these 5,000 digits: 0.1313 and 0.3086, measured)"),
    Dataset("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (32, 32, 3), 10,
            {"train": 50_000, "test": 10_000}, "the 50,000 training images, per channel"),
    Dataset("imagenet2012", _IMAGENET_MEAN, _IMAGENET_STD, (None, None, 3), 1000,
            {"train": 1_281_167, "validation": 50_000},
            "the training images (the values torchvision's models were trained with)"),
    Dataset("detection_scenes", (0.4667, 0.3944, 0.3717), (0.2479, 0.2129, 0.2174),
            (128, 128, 3), 20, {"train": 5_000, "validation": 1_000, "test": 1_000},
            "measured on the 5,000 training scenes (research/data/scene_builders.py; "
            "tests/test_detection_data.py's slow test checks them)"),
    Dataset("caption_scenes", (0.4667, 0.3944, 0.3717), (0.2479, 0.2129, 0.2174),
            (128, 128, 3), 20, {"train": 5_000, "validation": 1_000, "test": 1_000},
            "detection_scenes' images (research/data/caption_scenes.py; "
            "tests/test_caption_data.py checks the images are the same)"),
    Dataset("voc", _IMAGENET_MEAN, _IMAGENET_STD, (None, None, 3), 20,
            {"train": 2_501, "validation": 2_510, "test": 4_952},
            "ImageNet's, as for backbones pretrained on it (splits: VOC 2007, TFDS's default)"),
)
DATASETS = {d.name: d for d in _DATASETS}


def get(name: str) -> Dataset | None:
  """The known facts of dataset `name` ("fashion_mnist", "voc/2007:5.0.0"), else None."""
  base = name.partition(":")[0]
  return DATASETS.get(base) or DATASETS.get(base.partition("/")[0])


def normalization(name: str, mean=(), std=()) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) to standardise dataset `name` with: the given ones, or the dataset's.

  Empty `mean` and `std` (the configs' default) mean the dataset's own
  statistics. Given ones must have one value per channel of a known dataset.

  Raises:
    errors.ConfigError (a ValueError): naming the config key (data.mean /
      data.std) and the fix, when only one of them is given, their lengths differ, a std is not > 0, the
      dataset has no known statistics and none are given, or the count does
      not match a known dataset's channels.
  """
  known = get(name)
  mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
  if not mean and not std:
    if known is None:
      raise errors.ConfigError(
          f"config.data.mean=(): dataset {name!r} has no known statistics "
          f"(research/data/datasets.py knows {sorted(DATASETS)}); set data.mean and "
          "data.std, one value per channel on the [0, 1] scale.")
    return known.mean, known.std
  if len(mean) != len(std) or not mean:
    raise errors.ConfigError(f"config.data.std={std}: needs one value per channel, like "
                     f"data.mean={mean} (or leave both empty for {name}'s own).")
  if not all(s > 0 for s in std):
    raise errors.ConfigError(f"config.data.std={std}: must be > 0.")
  if known is not None and len(mean) != known.channels:
    raise errors.ConfigError(
        f"config.data.mean={mean}: {name} has {known.channels} channel(s), so it needs "
        f"{known.channels} values; leave data.mean and data.std empty, (), for its own "
        f"statistics mean={known.mean}, std={known.std}.")
  return mean, std


def check_channels(name: str, mean, channels: int) -> None:
  """Raises errors.ConfigError (a ValueError) unless `mean` has one value per
  channel of the data read.

  For datasets `get` does not know (e.g. the distorted copies), whose channel
  count shows only once the data is read: one value must not be broadcast
  over three channels unnoticed.
  """
  if len(mean) != channels:
    raise errors.ConfigError(f"config.data.mean={tuple(mean)}: {name}'s images have {channels} "
                     f"channel(s); give data.mean and data.std {channels} value(s) each.")
