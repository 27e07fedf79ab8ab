"""The config helpers every layer uses: `require` and `override` (research/train/config.py)."""

import pytest

from research import errors
from research.train import config as config_lib


def test_require_names_key_value_and_fix():
  errors.require(True, "batch_size", 0, "unused")
  with pytest.raises(ValueError, match=r"^config\.batch_size=0: must be > 0\.$"):
    errors.require(False, "batch_size", 0, "must be > 0.")


def test_override_sets_dotted_keys_on_a_copy():
  base = config_lib.base_config()
  base.model.kwargs.dropout = 0.5
  config = config_lib.override(base, {"optimizer.learning_rate": 0.1,
                                      "model.kwargs.dropout": 0.0,
                                      "optimizer.boundaries": [0.3, 0.6]})  # JSON: a list.
  assert config.optimizer.learning_rate == 0.1 and config.model.kwargs.dropout == 0.0
  assert config.optimizer.boundaries == (0.3, 0.6)
  assert base.optimizer.learning_rate == 1e-3 and base.model.kwargs.dropout == 0.5


@pytest.mark.parametrize("overrides,match", [
    ({"optimizer.no_such_key": 1}, r"^Sweep override optimizer\.no_such_key=1: the config has no "
                                   r"key 'optimizer\.no_such_key'"),
    ({"no_such_group.lr": 1}, "no key 'no_such_group.lr'"),
    ({"seed.deeper": 1}, "no key 'seed.deeper'"),   # seed is a value, not a group.
    ({"batch_size": "big"}, r"^Sweep override batch_size='big': "),
])
def test_override_stops_on_unknown_keys_and_wrong_types(overrides, match):
  with pytest.raises(ValueError, match=match):
    config_lib.override(config_lib.base_config(), overrides, what="Sweep override")
