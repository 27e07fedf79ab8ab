"""Each dataset's statistics live in one place, and their channels must match the data's."""

import pytest

from research import errors
from research.data import datasets
from research.train import config as config_lib, trainer


@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_every_dataset_has_one_statistic_per_channel(name):
  known = datasets.get(name)
  assert len(known.mean) == len(known.std) == known.channels
  assert all(0 < m < 1 for m in known.mean) and all(0 < s < 1 for s in known.std)
  assert known.num_classes > 1 and known.splits["train"] > 0


def test_configs_take_the_statistics_of_their_dataset_by_default():
  assert datasets.normalization("fashion_mnist") == ((0.2860,), (0.3530,))
  assert datasets.normalization("mnist_5k") == ((0.1307,), (0.3081,))
  assert datasets.normalization("cifar10:3.0.2")[0] == (0.4914, 0.4822, 0.4465)
  assert datasets.get("voc/2007").num_classes == 20
  config = config_lib.base_config()
  assert config.data.mean == config.data.std == ()
  config.data.name = "cifar10"
  trainer.validate_config(config)  # Three channels of cifar10's own statistics.
  assert datasets.normalization(config.data.name, config.data.mean, config.data.std)[1] == (
      0.2470, 0.2435, 0.2616)


@pytest.mark.parametrize("name,mean,std,match", [
    # One-channel statistics used to be broadcast over cifar10's three channels.
    ("cifar10", (0.5,), (0.5,), r"config\.data\.mean=\(0\.5,\): cifar10 has 3 channel"),
    ("fashion_mnist", (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), "fashion_mnist has 1 channel"),
    ("fashion_mnist", (0.5,), (), r"config\.data\.std=\(\): needs one value per channel"),
    ("fashion_mnist", (0.5,), (0.0,), r"config\.data\.std=\(0\.0,\): must be > 0"),
    ("my_photos", (), (), "dataset 'my_photos' has no known statistics"),
])
def test_bad_statistics_stop_before_any_work(name, mean, std, match):
  config = config_lib.base_config()
  config.data.name, config.data.mean, config.data.std = name, mean, std
  with pytest.raises(ValueError, match=match):
    trainer.validate_config(config)


def test_data_read_with_other_channels_than_its_statistics_is_an_error():
  datasets.check_channels("mnist_5k_rts", (0.0,), 1)  # A distorted copy: known once read.
  # A ConfigError: raised inside a run, launch.py prints it as one line.
  with pytest.raises(errors.ConfigError, match="mnist_5k_rts's images have 3 channel"):
    datasets.check_channels("mnist_5k_rts", (0.0,), 3)
