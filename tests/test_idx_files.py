"""Data preparation rejects damaged IDX files, naming the file, the fault and the fix (issue 13 §5)."""

import gzip
import os

import numpy as np
import pytest

from research.data import builders, datasets

SRC = builders.fashion_mnist_source_dir()
TEST_LABELS = os.path.join(SRC, "t10k-labels-idx1-ubyte.gz")


def _write_idx(path, array: np.ndarray) -> str:
  header = bytes([0, 0, 8, array.ndim]) + b"".join(
      int(n).to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb", compresslevel=1) as f:
    f.write(header + array.astype(np.uint8).tobytes())
  return str(path)


def test_a_cut_gzip_file_is_named(tmp_path):
  with open(TEST_LABELS, "rb") as f:
    payload = f.read()
  cut = tmp_path / "t10k-labels-idx1-ubyte.gz"
  cut.write_bytes(payload[:len(payload) // 2])
  # Before: "EOFError: Compressed file ended before the end-of-stream marker", no file named.
  with pytest.raises(builders.DataFileError,
                     match=rf"^{cut} is damaged: its gzip stream cannot be read .*To fix: "):
    builders.read_idx(str(cut))


def test_a_payload_truncated_inside_valid_gzip_is_named(tmp_path):
  with gzip.open(TEST_LABELS) as f:
    data = f.read()
  short = tmp_path / "labels.gz"
  with gzip.open(short, "wb") as f:
    f.write(data[:-100])
  # Before: "cannot reshape array of size 9900 into shape (10000,)".
  with pytest.raises(builders.DataFileError, match=rf"^{short} is truncated: its header gives "
                     r"shape \(10000,\), 10,008 bytes in all, but it holds 9,908"):
    builders.read_idx(str(short))


@pytest.mark.parametrize("payload,match", [
    (b"\x00\x00\x0d\x01", "is not an unsigned-byte IDX file"),       # float32 IDX
    (b"\x00\x00\x08\x03\x00\x00", "is cut inside its IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02\x05\x06\x07", "is longer than its header says"),
])
def test_headers_that_do_not_fit_are_named(tmp_path, payload, match):
  path = tmp_path / "x.idx"
  path.write_bytes(payload)
  with pytest.raises(builders.DataFileError, match=match):
    builders.read_idx(str(path))


def test_fifty_thousand_labels_beside_sixty_thousand_images_stop_preparation(tmp_path,
                                                                             monkeypatch):
  src = tmp_path / "src"
  src.mkdir()
  for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz"):
    os.symlink(os.path.join(SRC, name), src / name)
  labels = builders.read_idx(os.path.join(SRC, "train-labels-idx1-ubyte.gz"))
  _write_idx(src / "train-labels-idx1-ubyte.gz", labels[:50_000])
  monkeypatch.setenv("FASHION_MNIST_DIR", str(src))
  # Before: prepared silently as a 50,000-example training split.
  with pytest.raises(builders.DataFileError,
                     match=r"train-images-idx3-ubyte.gz holds 60,000 images but .*"
                           r"train-labels-idx1-ubyte.gz holds 50,000 labels; they must "
                           r"match\. To fix: reinstall"):
    builders.prepare("fashion_mnist", str(tmp_path / "data"))
  assert not list((tmp_path / "data").glob("fashion_mnist/*/dataset_info.json"))


def test_counts_shapes_and_labels_are_checked_against_the_known_dataset(tmp_path):
  known = datasets.Dataset("tiny", (0.5,), (0.5,), (4, 4, 1), 3, {"train": 6}, "test")
  images = np.zeros((5, 4, 4))
  paths = (_write_idx(tmp_path / "i.gz", images), _write_idx(tmp_path / "l.gz", np.zeros(5)))
  with pytest.raises(builders.DataFileError, match="hold 5 examples, but tiny's train split "
                     "has 6. To fix: get them"):
    builders.read_idx_split(*paths, known, "train", "get them")
  paths = (_write_idx(tmp_path / "i.gz", np.zeros((6, 4, 5))),
           _write_idx(tmp_path / "l.gz", np.zeros(6)))
  with pytest.raises(builders.DataFileError, match=r"images of shape \(4, 5, 1\), not tiny's"):
    builders.read_idx_split(*paths, known, "train", "get them")
  paths = (_write_idx(tmp_path / "i.gz", np.zeros((6, 4, 4))),
           _write_idx(tmp_path / "l.gz", np.arange(6)))
  with pytest.raises(builders.DataFileError, match=r"holds label 5, outside tiny's \[0, 3\)"):
    builders.read_idx_split(*paths, known, "train", "get them")
  images, labels = builders.read_idx_split(
      *(_write_idx(tmp_path / "i.gz", np.ones((6, 4, 4))),
        _write_idx(tmp_path / "l.gz", np.arange(6) % 3)), known, "train", "get them")
  assert images.shape == (6, 4, 4, 1) and labels.tolist() == [0, 1, 2, 0, 1, 2]
