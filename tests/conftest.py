"""Shared test setup: small, fast, offline."""

import os

import pytest

# Tests never touch the network or a user's TFDS folder: datasets are prepared
# from local files into a folder of the checkout (once; later runs reuse it).
TEST_DATA_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".tfds_test"))
os.environ["TFDS_DATA_DIR"] = TEST_DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> str:
  """A TFDS data_dir holding the real, prepared Fashion-MNIST and mnist_5k."""
  from research.data import builders, reader
  for name in ("fashion_mnist", "mnist_5k"):
    if reader.prepared_dir(name, TEST_DATA_DIR) is None:
      builders.prepare(name, TEST_DATA_DIR)
  return TEST_DATA_DIR
