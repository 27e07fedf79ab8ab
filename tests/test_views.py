"""Dense evaluation (FC layers as convolutions), test-time views and top-5.

Models are tiny-width versions of the real architectures (the same layers,
pools and strides), so the stride-32 geometry is the papers' and each test
compiles in seconds.
"""

import json
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import models
from research.errors import ConfigError
from research.models import common
from research.ops import views
from research.train import steps, trainer
from research.train.objectives import classification

TINY = dict(num_classes=6, widths=(4, 4, 4, 4, 4), fc_width=8)


def _valid_convs(next_fun, args, kwargs, context):
  """Runs every nn.Conv unpadded (VALID).

  With zero padding, a 224 crop and the same window of a larger image differ
  near the crop's border: the crop's convolutions see zeros where the larger
  image has its neighbouring pixels (VGG §3.2 notes these boundary conditions).
  Without padding each window of the dense pass sees exactly the crop's pixels,
  so the equality below is exact up to float rounding.
  """
  module = context.module
  if not (isinstance(module, nn.Conv) and context.method_name == "__call__"):
    return next_fun(*args, **kwargs)
  padding = module.padding
  object.__setattr__(module, "padding", "VALID")
  try:
    return next_fun(*args, **kwargs)
  finally:
    object.__setattr__(module, "padding", padding)


# (model, crop size): the crop gives a 2 x 2 map before fc6 (unpadded), so fc6
# is a 2 x 2 conv and the kernel's (h, w, c) order matters.
@pytest.mark.parametrize("name, size", [("vgg11", 182), ("alexnet_paper", 227)])
def test_dense_score_map_equals_the_network_on_each_crop_at_stride_32(name, size):
  model = models.get_model(name, **TINY)
  image = jax.random.uniform(jax.random.key(0), (1, size + 64, size + 80, 3))
  crops = jnp.concatenate([image[:, 32 * i:32 * i + size, 32 * j:32 * j + size]
                           for i in range(3) for j in range(3)])

  @jax.jit  # One compilation (eager Flax compiles op by op).
  def run(image, crops):
    with nn.intercept_methods(_valid_convs):
      variables = model.init(jax.random.key(1), crops[:1])
      return (variables["params"]["fc6"]["kernel"].shape, model.apply(variables, image, dense=True)[0],
              model.apply(variables, crops)[0])

  fc6_shape, scores, logits = run(image, crops)
  assert fc6_shape == (2 * 2 * 4, 8)
  assert scores.shape == (1, 3, 3, 6)   # (64 / 32 + 1, 80 / 32 + 1, rounded down).
  np.testing.assert_allclose(scores.reshape(9, 6), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, kwargs, size", [
    ("vgg_small", dict(widths=(4, 4, 4, 4, 4), fc_width=8), 28),   # Padded to 32 inside.
    ("alexnet", TINY, 224),                                       # The adaptive pool left out.
    ("zfnet", TINY, 224),
])
def test_dense_on_the_training_size_gives_the_logits_and_slides_beyond(name, kwargs, size):
  """The real, zero-padded nets: one position on the training size, then a map."""
  model = models.get_model(name, num_classes=6, **{k: v for k, v in kwargs.items()
                                                   if k != "num_classes"})
  image = jax.random.uniform(jax.random.key(0), (2, size + 64, size + 32, 3 if size > 28 else 1))

  @jax.jit
  def run(image):
    variables = model.init(jax.random.key(1), image[:, :size, :size])
    return (model.apply(variables, image[:, :size, :size])[0],
            model.apply(variables, image[:, :size, :size], dense=True)[0],
            model.apply(variables, image, dense=True)[0])

  logits, scores, score_map = run(image)
  np.testing.assert_allclose(scores[:, 0, 0], logits, rtol=1e-5, atol=1e-6)
  assert score_map.shape == (2, 3, 2, 6)


def test_fc_to_conv_kernel():
  kernel = jnp.arange(3 * 3 * 2 * 5.0).reshape(18, 5)
  conv = common.fc_to_conv_kernel(kernel, 2)
  assert conv.shape == (3, 3, 2, 5)
  assert conv[1, 2, 0, 4] == kernel[(1 * 3 + 2) * 2 + 0, 4]   # Row-major (h, w, c).
  with pytest.raises(ValueError, match="not a square window"):
    common.fc_to_conv_kernel(jnp.zeros((12, 5)), 2)


def test_has_dense_mode():
  assert models.has_dense_mode("vgg16") and models.has_dense_mode("alexnet")
  assert not models.has_dense_mode("lenet5") and not models.has_dense_mode("resnet50")


def test_parse_views():
  assert views.parse("central") == views.View("central")
  assert views.parse("ten_crop(224)").name == "ten_crop(224)"
  assert views.parse("dense(256, 384,512)").args == (256, 384, 512)
  for bad, match in [("ten_crops(224)", "unknown view"), ("central(3)", "takes 0"),
                     ("ten_crop(224,256)", "takes 1"), ("dense()", "one or more"),
                     ("ten_crop(-1)", "positive integers"), ("dense(2.5)", "positive")]:
    with pytest.raises(ValueError, match=match):
      views.parse(bad)
  with pytest.raises(ValueError, match="crops 30 x 30 from eval images of 28 x 32"):
    views.check_image_size(views.parse("ten_crop(30)"), (28, 32))


def _first_row_logits(params, x):
  """A stand-in network: logits = its input's first row (channel 0), times params."""
  return x[:, 0, :6, 0] * params


def test_ten_crop_and_central_crop_average_the_right_patches():
  images = jax.random.uniform(jax.random.key(0), (2, 9, 10, 1))
  got = jax.jit(views.ten_crop, static_argnums=(0, 3))(_first_row_logits, 3.0, images, 7)
  patches = []
  for top, left in [(0, 0), (0, 3), (2, 0), (2, 3), (1, 1)]:
    crop = np.asarray(images[:, top:top + 7, left:left + 7])
    patches += [crop, crop[:, :, ::-1]]
  probs = np.mean([jax.nn.softmax(3.0 * p[:, 0, :6, 0]) for p in patches], axis=0)
  np.testing.assert_allclose(np.exp(got), probs, rtol=1e-5)
  np.testing.assert_allclose(views.central_crop(_first_row_logits, 3.0, images, 7),
                             jax.nn.log_softmax(3.0 * images[:, 1, 1:7, 0]), rtol=1e-5)


def test_dense_view_averages_space_then_posteriors_over_scales_and_flips():
  images = jax.random.uniform(jax.random.key(0), (2, 8, 12, 1))

  def score_map(params, x):  # [B, H, W, 1] -> [B, H/4, W/4, 6]
    return jnp.repeat(x[:, ::4, ::4, :] * params, 6, axis=-1) * jnp.arange(6.0)

  got = jax.jit(views.dense, static_argnums=(0, 3))(score_map, 2.0, images, (4, 8))
  posteriors = []
  for q in (4, 8):
    x = views.rescale_shorter_side(images, q)
    assert x.shape == (2, q, 3 * q // 2, 1)
    for v in (x, x[:, :, ::-1]):
      posteriors.append(jax.nn.softmax(score_map(2.0, v).mean(axis=(1, 2))))
  np.testing.assert_allclose(np.exp(got), np.mean(posteriors, axis=0), rtol=1e-5)


class _Fixed(nn.Module):
  """Logits read from the image: row b's first 7 (or num_classes) pixels."""
  num_classes: int = 7

  @nn.compact
  def __call__(self, x, *, train=False):
    return x[:, 0, :self.num_classes, 0], {}


def _eval(num_classes, logits, labels, mask):
  images = np.zeros((len(labels), 1, 8, 1), np.uint8)
  images[:, 0, :num_classes, 0] = logits
  state = steps.TrainState(step=0, params={}, batch_stats={}, opt_state=(), rng=None)
  step = steps.make_eval_step(_Fixed(num_classes), mean=(0.0,), std=(1 / 255,))
  return jax.jit(step)(state, {"image": images, "label": np.asarray(labels, np.int32),
                               "mask": np.asarray(mask, np.float32)})


def test_top5_is_exact_with_the_padding_mask():
  logits = [[7, 6, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1],
            [1, 2, 3, 4, 5, 6, 7]]
  # Label ranks: 1st, 6th (out of the top 5), 5th (in), and a padding row (in, not counted).
  sums = _eval(7, logits, [0, 1, 4, 6], [1, 1, 1, 0])
  assert float(sums["count"]) == 3
  assert float(sums["correct"]) == 1 and float(sums["correct5"]) == 2
  expected_loss = -sum(jax.nn.log_softmax(jnp.asarray(l, jnp.float32))[y]
                       for l, y in zip(logits[:3], [0, 1, 4]))
  np.testing.assert_allclose(sums["loss"], expected_loss, rtol=1e-5)
  assert "correct5" not in _eval(5, [[1, 2, 3, 4, 5]], [0], [1])   # Always 1: left out.


def test_config_errors_name_the_view(tiny_config):
  config = tiny_config()
  for bad, match in [(("tencrop(24)",), "unknown view"), ((), "at least one"),
                     (("central", "central"), "twice"),
                     (("dense(256)",), "needs a model whose FC layers run as convolutions")]:
    config.eval_views = bad
    with pytest.raises(ConfigError, match=r"config\.eval_views=.*" + match):
      classification.validate_config(config)
  config.model.name, config.model.kwargs = "vgg_small", {}
  config.eval_views = ("central", "dense(28,40)")
  classification.validate_config(config)


def test_a_view_the_eval_images_cannot_take_stops_before_any_work(data_dir, tmp_path,
                                                                  tiny_config):
  for bad in ("ten_crop(30)", "ten_crop(24)"):   # Larger than 28; LeNet-5 needs 28 x 28.
    with pytest.raises(ConfigError, match=r"config\.eval_views=.*" + re.escape(bad)):
      trainer.train(tiny_config(eval_views=("central", bad)), str(tmp_path))
    assert not os.path.exists(tmp_path / "config.json")


def test_views_and_top5_in_a_run(data_dir, tmp_path, tiny_config):
  config = tiny_config(total_steps=2, eval_views=("central", "ten_crop(28)"))
  metrics = trainer.train(config, str(tmp_path)).metrics
  for prefix in ("test/", "test/ten_crop(28)/"):
    assert 0 <= metrics[prefix + "accuracy"] <= metrics[prefix + "top5_accuracy"] <= 1
    assert metrics[prefix + "error"] == pytest.approx(1 - metrics[prefix + "accuracy"])
  with open(tmp_path / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert any("test/ten_crop(28)/top5_accuracy" in r for r in rows if r["step"] == rows[-1]["step"])
