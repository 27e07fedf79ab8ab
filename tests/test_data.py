"""Datasets (offline TFDS, real files and mock data) and the grain pipeline."""

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from research.data import builders, datasets, pipeline, tfds_source


def test_real_fashion_mnist_is_the_full_dataset(data_dir):
  train = tfds_source.load_split("fashion_mnist", "train", data_dir)
  test = tfds_source.load_split("fashion_mnist", "test", data_dir)
  assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
  assert len(test) == 10000
  assert np.bincount(train.labels).tolist() == [6000] * 10
  assert train.class_names[0] == "T-shirt/top" and train.num_classes == 10
  # The registered statistics (the normalisation constants we use) are the data's.
  known = datasets.get("fashion_mnist")
  x = train.images / 255.0
  assert abs(x.mean() - known.mean[0]) < 1e-3 and abs(x.std() - known.std[0]) < 1e-3
  assert (len(train), len(test)) == (known.splits["train"], known.splits["test"])
  assert train.images.shape[1:] == known.image_shape
  # TFDS stores the IDX file's images (in its own shuffled order).
  raw = builders.read_idx(f"{builders.fashion_mnist_source_dir()}/t10k-images-idx3-ubyte.gz")
  assert sorted(x.tobytes() for x in test.images[..., 0]) == sorted(x.tobytes() for x in raw)


def test_stock_tfds_reader_opens_our_prepared_folder(data_dir):
  # A cluster's data_dir prepared by the stock builder looks the same to us,
  # and ours looks the same to the stock reader.
  source = tfds.data_source("fashion_mnist", split="test", data_dir=data_dir, download=False)
  assert len(source) == 10000 and source[0]["image"].shape == (28, 28, 1)


def test_mnist_5k_is_shuffled_stratified_and_disjoint(data_dir):
  train = tfds_source.load_split("mnist_5k", "train", data_dir)
  test = tfds_source.load_split("mnist_5k", "test", data_dir)
  assert (len(train), len(test)) == (4000, 1000)
  assert np.bincount(test.labels).tolist() == [100] * 10
  assert np.bincount(train.labels).tolist() == [400] * 10
  assert len(set(train.labels[:50])) > 5  # Not sorted by label any more.
  flat_train = {x.tobytes() for x in train.images}
  assert not any(x.tobytes() in flat_train for x in test.images)


def test_mock_data_reads_through_the_same_code(tmp_path):
  with tfds.testing.mock_data(num_examples=20):
    split = tfds_source.load_split("mnist", "train", str(tmp_path))
  assert split.images.shape == (20, 28, 28, 1) and split.labels.shape == (20,)
  batch = next(pipeline.train_batches(split, 8, seed=0, prefetch=0))
  assert batch["image"].shape == (8, 28, 28, 1)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="not prepared in .* To fix: .*tfds build mnist"):
    tfds_source.open_source("mnist", "train", str(tmp_path))


def _split(n=100):
  images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
  return tfds_source.ArraySplit(images, np.arange(n, dtype=np.int32), tuple("0123456789"))


def test_batches_are_a_function_of_seed_and_step():
  data = _split()
  run = [b["label"] for b in itertools.islice(pipeline.train_batches(data, 16, seed=3), 20)]
  resumed = [b["label"] for b in itertools.islice(
      pipeline.train_batches(data, 16, seed=3, start_step=13, prefetch=0), 7)]
  for a, b in zip(run[13:], resumed):
    np.testing.assert_array_equal(a, b)
  other_seed = next(pipeline.train_batches(data, 16, seed=4))["label"]
  assert not np.array_equal(run[0], other_seed)
  # Each epoch (6 full batches of 100 examples) visits distinct examples, reshuffled.
  first_epoch = np.concatenate(run[:6])
  assert len(set(first_epoch.tolist())) == 96


def test_each_process_reads_its_share_of_the_global_batch():
  data = _split()
  full = next(pipeline.train_batches(data, 8, seed=0, prefetch=0))["label"]
  parts = [next(pipeline.train_batches(data, 8, seed=0, process_index=i, process_count=2,
                                       prefetch=0))["label"] for i in range(2)]
  assert sorted(np.concatenate(parts).tolist()) == sorted(full.tolist())
  with pytest.raises(ValueError, match="not divisible by the 3 processes"):
    next(pipeline.train_batches(data, 8, seed=0, process_count=3))


def test_eval_batches_cover_every_example_once():
  data = _split(23)
  batches = list(pipeline.eval_batches(data, 10))
  assert [len(b["label"]) for b in batches] == [10, 10, 10]
  seen = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(seen, np.arange(23))


def test_batch_larger_than_dataset_is_a_clear_error():
  with pytest.raises(ValueError, match="batch_size=200 is larger than the dataset"):
    next(pipeline.train_batches(_split(), 200, seed=0))
