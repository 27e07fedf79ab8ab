"""Transfer: class selection, frozen parameters, initialising from another run."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import models
from research.data import tfds_source
from research.train import checkpoint, optim, steps, trainer, transfer
from tests.conftest import make_tiny_config


def test_select_classes_keeps_and_remaps_labels():
  images = np.arange(8, dtype=np.uint8).reshape(8, 1, 1, 1)
  data = tfds_source.ArraySplit(images, np.array([0, 1, 2, 3, 2, 1, 0, 3], np.int32),
                                ("a", "b", "c", "d"))
  picked = tfds_source.select_classes(data, (3, 1))
  np.testing.assert_array_equal(picked.labels, [1, 0, 1, 0])  # 3 -> 0, 1 -> 1.
  np.testing.assert_array_equal(picked.images.ravel(), [1, 3, 5, 7])
  assert picked.class_names == ("d", "b")
  assert tfds_source.select_classes(data, ()) is data
  with pytest.raises(ValueError, match="distinct labels"):
    tfds_source.select_classes(data, (1, 1))


def test_select_classes_on_real_data(data_dir):
  full = tfds_source.load_split("fashion_mnist", "test[:500]", data_dir)
  half = tfds_source.load_split("fashion_mnist", "test[:500]", data_dir, classes=(5, 7, 9))
  assert half.num_classes == 3 and set(half.labels) == {0, 1, 2}
  np.testing.assert_array_equal(half.images, full.images[np.isin(full.labels, (5, 7, 9))])


def test_copy_matching_copies_exactly_the_matching_leaves():
  params = {"conv1": {"kernel": np.zeros((2, 2)), "bias": np.zeros(2)},
            "fc": {"kernel": np.zeros((2, 3))}}
  source = {"conv1": {"kernel": np.ones((2, 2)), "bias": np.full(2, 2.0)},
            "fc": {"kernel": np.ones((2, 5))}}
  new, copied = transfer.copy_matching(params, source, transfer.layer_regex(["conv1"]))
  assert copied == ["conv1/bias", "conv1/kernel"]
  np.testing.assert_array_equal(new["conv1"]["bias"], [2.0, 2.0])
  np.testing.assert_array_equal(new["fc"]["kernel"], np.zeros((2, 3)))
  with pytest.raises(ValueError, match="shape"):  # The classifier of another task.
    transfer.copy_matching(params, source, "")
  with pytest.raises(ValueError, match="matches none"):
    transfer.copy_matching(params, source, "^conv9/")


def test_with_frozen_gives_zero_updates_to_matching_paths():
  params = {"a": {"kernel": jnp.ones(3)}, "b": {"kernel": jnp.ones(3)}}
  tx = transfer.with_frozen(optax.chain(optax.add_decayed_weights(0.1), optax.sgd(1.0)), "^a/")
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["a"]["kernel"], np.zeros(3))
  np.testing.assert_allclose(updates["b"]["kernel"], np.full(3, -1.1))
  assert transfer.with_frozen(tx, "") is tx


def _params(workdir):
  return checkpoint.load_arrays(workdir)[1]["params"]


def test_frozen_params_stay_bit_identical_and_init_from_copies_them(data_dir, tmp_path):
  # Run A: C1 frozen from its initialisation, the rest trained (SGD + weight decay).
  config = make_tiny_config(total_steps=6, eval_every_steps=0, checkpoint_every_steps=0)
  config.freeze = "^C1/"
  trainer.train_and_evaluate(config, str(tmp_path / "a"))
  a = _params(tmp_path / "a")
  model = models.get_model("lenet5", **config.model.kwargs.to_dict())
  tx, _ = optim.make_optimizer(config.optimizer, 6)
  init = steps.create_train_state(model, tx, (1, 28, 28, 1), config.seed).params
  for name in ("kernel", "bias"):
    np.testing.assert_array_equal(a["C1"][name], init["C1"][name])
  assert not np.array_equal(a["C3"]["kernel"], init["C3"]["kernel"])

  # Run B, on 3 of the classes: C1 and C3 copied from A and frozen, the rest
  # (including a 3-way output layer) new.
  config.data.classes = (0, 3, 7)
  config.freeze = config.init_from.include_regex = transfer.layer_regex(["C1", "C3"])
  config.init_from.workdir = str(tmp_path / "a")
  config.seed = 1
  trainer.train_and_evaluate(config, str(tmp_path / "b"))
  b = _params(tmp_path / "b")
  for layer in ("C1", "C3"):
    for name in ("kernel", "bias"):
      np.testing.assert_array_equal(b[layer][name], a[layer][name])
  assert b["output"]["kernel"].shape[-1] == 3
  assert not np.array_equal(b["C5"]["kernel"], a["C5"]["kernel"])


def test_frozen_layer_keeps_and_uses_its_batch_norm_statistics():
  # Issue 13 §6: freezing "^(conv1|bn1)/" of a ResNet-20 left bn1's running
  # variance moving (by 0.0957 in one step) and bn1 normalising with batch statistics.
  model = models.get_model("resnet20")
  regex = "^(conv1|bn1)/"
  tx = transfer.with_frozen(optax.sgd(0.1, momentum=0.9), regex)
  state = steps.create_train_state(model, tx, (1, 28, 28, 1), seed=0)
  frozen = transfer.frozen_modules(state.params, regex)
  assert frozen == {"conv1", "bn1"}
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (8, 28, 28, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, 8).astype(np.int32)}
  x = jnp.asarray(rng.standard_normal((4, 28, 28, 1)), jnp.float32)

  def bn1_output(s, train=False):
    variables = {"params": s.params, "batch_stats": s.batch_stats}
    capture = lambda module, _: module.path == ("bn1",)
    with nn.intercept_methods(steps._running_average_in(frozen)):
      _, out = model.apply(variables, x, train=train, rngs={"dropout": jax.random.key(0)},
                           capture_intermediates=capture, mutable=["intermediates",
                                                                   "batch_stats"])
    return np.asarray(out["intermediates"]["bn1"]["__call__"][0])

  before = bn1_output(state)
  # In training a frozen batch norm normalises with its running statistics.
  np.testing.assert_array_equal(bn1_output(state, train=True), before)
  step = jax.jit(steps.make_train_step(model, tx, mean=(0.5,), std=(0.5,), frozen=frozen))
  new, _ = step(state, batch)
  for stat in ("mean", "var"):
    np.testing.assert_array_equal(new.batch_stats["bn1"][stat], state.batch_stats["bn1"][stat])
  np.testing.assert_array_equal(bn1_output(new), before)  # Same function after the step.
  # The layers that are not frozen still train and update their statistics.
  assert not np.array_equal(new.batch_stats["stage1_block1"]["bn1"]["var"],
                            state.batch_stats["stage1_block1"]["bn1"]["var"])
  plain = optax.sgd(0.1)  # Without freezing, bn1's statistics move (the issue's case).
  unfrozen, _ = jax.jit(steps.make_train_step(model, plain, mean=(0.5,), std=(0.5,)))(
      state.replace(opt_state=plain.init(state.params)), batch)
  assert not np.allclose(unfrozen.batch_stats["bn1"]["var"], state.batch_stats["bn1"]["var"])
