"""Real photographs that ship inside Python packages, as a crop-classification task.

scikit-learn ships two (china.jpg, flower.jpg) and scikit-image eight more
colour photos (astronaut, chelsea the cat, coffee, a rocket, a motorcycle,
the Hubble deep field, an immunohistochemistry slide, a retina). Ten photos
are far too few to train an object recogniser, but plenty for a network to
learn natural-image features at a larger input size than 28x28: the task is
"which photo does this 64x64 crop come from?". Each photo is resized so its
shorter side is `short_side` pixels; its rightmost `test_columns` columns are
held out, so test crops show parts of the photo never seen in training.
Nothing is downloaded.
"""

import dataclasses

import numpy as np
from PIL import Image

NAMES = ("china", "flower", "astronaut", "chelsea", "coffee", "rocket", "motorcycle",
         "hubble_deep_field", "immunohistochemistry", "retina")


def load_photos(short_side: int = 192, names: tuple[str, ...] = NAMES) -> list[np.ndarray]:
  """Photos as uint8 [H, W, 3], shorter side `short_side`, in `names` order.

  names: NAMES' photos, or any of scikit-image's bundled ones (grey ones, such
  as "camera" or "grass", are repeated over three channels).
  """
  try:
    from skimage import data as skdata
  except ImportError as e:
    raise ImportError("The photo task needs scikit-image's bundled photos: "
                      "pip install scikit-image (see requirements.txt).") from e
  sk = {}
  if {"china", "flower"} & set(names):  # Loading scikit-learn's takes seconds.
    from sklearn.datasets import load_sample_images
    sk = dict(zip(("china", "flower"), load_sample_images().images))
  loaders = {"motorcycle": lambda: skdata.stereo_motorcycle()[0]}
  photos = []
  for name in names:
    image = sk[name] if name in sk else (loaders[name] if name in loaders
                                         else getattr(skdata, name))()
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    photos.append(np.asarray(Image.fromarray(image[..., :3]).resize(size, Image.BILINEAR)))
  return photos


@dataclasses.dataclass(frozen=True)
class PhotoCrops:
  """Crops of the photos: which photo each crop comes from is its label."""
  photos: tuple[np.ndarray, ...]
  crop: int = 64
  test_columns: int = 80

  def train_crop_batch(self, seed: int, step: int, batch_size: int):
    """Random training crops for `step` (a pure function of seed and step):
    images uint8 [B, crop, crop, 3], labels int32 [B]."""
    rng = np.random.default_rng([seed, step])
    labels = rng.integers(0, len(self.photos), batch_size).astype(np.int32)
    images = []
    for label in labels:
      photo = self.photos[label]
      h, w = photo.shape[:2]
      y = rng.integers(0, h - self.crop + 1)
      x = rng.integers(0, w - self.test_columns - self.crop + 1)
      images.append(photo[y:y + self.crop, x:x + self.crop])
    return np.stack(images), labels

  def grid_crops(self, stride: int, region: str = "test"):
    """Crops on a grid: (images uint8 [N, c, c, 3], labels int32 [N], origins int [N, 2]).

    region "test": inside the held-out right strip; "all": the whole photo.
    """
    images, labels, origins = [], [], []
    for label, photo in enumerate(self.photos):
      h, w = photo.shape[:2]
      x_lo = w - self.test_columns if region == "test" else 0
      for y in range(0, h - self.crop + 1, stride):
        for x in range(x_lo, w - self.crop + 1, stride):
          images.append(photo[y:y + self.crop, x:x + self.crop])
          labels.append(label)
          origins.append((y, x))
    return np.stack(images), np.asarray(labels, np.int32), np.asarray(origins)

  def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel pixel mean and std on the [0, 1] scale, over the training columns."""
    pixels = np.concatenate([p[:, :p.shape[1] - self.test_columns].reshape(-1, 3)
                             for p in self.photos]).astype(np.float64) / 255.0
    return tuple(pixels.mean(0).round(4)), tuple(pixels.std(0).round(4))
