"""The landmark CNNs at full scale: parameter counts, shapes and MACs pinned
against the papers and torchvision (via `summary.summarize`, which only traces),
then real forward passes.

Forward passes use parameters filled from NumPy rather than `model.init`:
`init` compiles the random generation of every parameter, tens of seconds
per ImageNet model on two CPU cores, and a shape-and-finiteness check does
not care which random values the weights hold.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models import AUX_LOGITS, common, get_model, summary
from research.models.googlenet import aux_parameter_count
from research.models.resnet import Block

IMAGENET = (224, 224, 3)
CIFAR = (32, 32, 3)

# name: (input shape, parameters). Published exact counts: torchvision's
# (alexnet, vgg11-19, googlenet_bn, resnet18-152) and Caffe's bvlc_alexnet
# (alexnet_paper). The others are our counts of the papers' layouts, which the
# papers give rounded if at all (VGG Table 2, ResNet Table 6, checked below).
PARAMS = {
    "alexnet": (IMAGENET, 61_100_840),
    "alexnet_paper": ((227, 227, 3), 60_965_224),
    "zfnet": (IMAGENET, 62_357_608),
    "vgg11": (IMAGENET, 132_863_336),
    "vgg11_lrn": (IMAGENET, 132_863_336),   # LRN has no parameters.
    "vgg13": (IMAGENET, 133_047_848),
    "vgg16_c": (IMAGENET, 133_638_952),     # Table 2: 134M.
    "vgg16": (IMAGENET, 138_357_544),
    "vgg19": (IMAGENET, 143_667_240),
    "googlenet": (IMAGENET, 6_998_552),     # Paper: no BN, 5x5 branch.
    "googlenet_bn": (IMAGENET, 6_624_904),  # torchvision googlenet(aux_logits=False).
    "resnet18": (IMAGENET, 11_689_512),
    "resnet34": (IMAGENET, 21_797_672),
    "resnet50": (IMAGENET, 25_557_032),
    "resnet101": (IMAGENET, 44_549_160),
    "resnet152": (IMAGENET, 60_192_808),
    "resnet20": (CIFAR, 269_722),
    "resnet32": (CIFAR, 464_154),
    "resnet44": (CIFAR, 658_586),
    "resnet56": (CIFAR, 853_018),
    "resnet110": (CIFAR, 1_727_962),
    "nin_cifar10": (CIFAR, 966_986),
}

SMALL = ["alexnet_small", "zfnet_small", "vgg_small", "googlenet_small", "resnet20", "plain20",
         "resnet18", "nin_small"]


@functools.cache
def _summary(name: str, shape: tuple, train: bool = False) -> summary.Summary:
  return summary.summarize(get_model(name), shape, train=train)


def _row(s: summary.Summary, path: str) -> summary.LayerRow:
  return next(r for r in s.rows if r.path == path)


def _feature_shapes(model, shape, train=False) -> dict:
  """Feature name -> shape without the batch axis, traced only."""
  (_, features), _ = jax.eval_shape(
      lambda x: model.init_with_output({"params": jax.random.key(0),
                                        "dropout": jax.random.key(1)}, x, train=train),
      jax.ShapeDtypeStruct((1, *shape), jnp.float32))
  return {k: jax.tree.map(lambda v: tuple(v.shape[1:]), v) for k, v in features.items()}


def _numpy_variables(model, x, train=False):
  """Variables shaped as `model.init` makes them: He-scaled kernels (uniform,
  cheaper to draw than normal), unit BN scales and variances, zeros elsewhere."""
  shapes = jax.eval_shape(functools.partial(model.init, train=train),
                          {"params": jax.random.key(0), "dropout": jax.random.key(1)}, x)
  rng = np.random.default_rng(0)

  def fill(path, s):
    name = path[-1].key
    if name == "kernel":
      bound = np.float32(math.sqrt(6.0 / math.prod(s.shape[:-1])))   # Variance 2 / fan_in.
      return jnp.asarray((rng.random(s.shape, np.float32) * 2 - 1) * bound)
    return jnp.ones(s.shape) if name in ("scale", "var") else jnp.zeros(s.shape)

  return jax.tree_util.tree_map_with_path(fill, shapes)


# Parameter counts.

@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count(name):
  shape, count = PARAMS[name]
  assert _summary(name, shape).total_params == count


@pytest.mark.parametrize("depth, millions", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85),
                                             (110, 1.7)])
def test_cifar_resnets_match_paper_table6(depth, millions):
  count = _summary(f"resnet{depth}", CIFAR).total_params
  assert round(count / 1e6, 2 if millions < 1 else 1) == millions
  # Plain nets are the same layers: option-A shortcuts have no parameters.
  assert _summary(f"plain{depth}", CIFAR).total_params == count


def test_resnet_stride_placement_keeps_counts():
  for name in ("resnet50", "resnet152"):
    paper = summary.summarize(get_model(name, stride_on_1x1=True), IMAGENET)
    assert paper.total_params == PARAMS[name][1]
    assert paper.total_macs < _summary(name, IMAGENET).total_macs   # 1x1 stride: fewer MACs.


# Shapes and arithmetic.

def test_alexnet_paper_shapes_and_groups():
  s = _summary("alexnet_paper", (227, 227, 3))
  assert _row(s, "conv1").output_shape == (55, 55, 96)
  assert _row(s, "pool1").output_shape == (27, 27, 96)
  assert _row(s, "pool2").output_shape == (13, 13, 256)
  assert _row(s, "pool5").output_shape == (6, 6, 256)
  # Two GPUs: conv2, conv4 and conv5 see half of their input maps.
  assert [r.path for r in s.rows if r.kind.endswith(" g2")] == ["conv2", "conv4", "conv5"]
  assert _row(s, "conv2").params == 5 * 5 * 48 * 256 + 256
  assert [r.path for r in s.rows if r.kind == "LocalResponseNorm"] == ["norm1", "norm2"]


def test_alexnet_paper_needs_227():
  with pytest.raises(ValueError, match=r"conv1.*54\.25"):
    summary.summarize(get_model("alexnet_paper"), IMAGENET)


def test_torchvision_alexnet_at_224():
  s = _summary("alexnet", IMAGENET)
  assert _row(s, "conv1").output_shape == (55, 55, 64)   # floor(55.25), as PyTorch.
  assert _row(s, "avgpool").output_shape == (6, 6, 256)


def test_zfnet_figure3_shapes():
  s = _summary("zfnet", IMAGENET)
  expected = {"conv1": (110, 110, 96), "pool1": (55, 55, 96), "conv2": (26, 26, 256),
              "pool2": (13, 13, 256), "conv3": (13, 13, 384), "conv4": (13, 13, 384),
              "conv5": (13, 13, 256), "pool5": (6, 6, 256)}
  assert {p: _row(s, p).output_shape for p in expected} == expected
  assert not any(" g" in r.kind for r in s.rows)   # Dense connections throughout.
  features = _feature_shapes(get_model("zfnet"), IMAGENET)
  # Pre-pool activations for the deconvnet.
  assert features["layer1"] == (110, 110, 96) and features["layer5"] == (13, 13, 256)


def test_vgg16_macs_and_activations():
  s = _summary("vgg16", IMAGENET)
  assert abs(s.total_macs / 15.5e9 - 1) < 0.02
  assert s.total_macs == 15_470_264_320
  # The cs231n notes' per-layer rows (input, conv, pool and FC outputs) sum
  # to 15.2M; their stated "24M" total does not follow from those rows.
  assert s.total_activations == 15_237_608
  assert _row(s, "pool5").output_shape == (7, 7, 512)


def test_vgg_configurations():
  c = _summary("vgg16_c", IMAGENET)
  assert [r.path for r in c.rows if r.kind == "Conv 1x1/1"] == ["conv3_3", "conv4_3", "conv5_3"]
  assert sum(r.kind.startswith("Conv") for r in _summary("vgg19", IMAGENET).rows) == 16
  assert _row(_summary("vgg11_lrn", IMAGENET), "norm1").output_shape == (224, 224, 64)


def test_resnet50_macs_and_stages():
  s = _summary("resnet50", IMAGENET)
  assert abs(s.total_macs / 4.1e9 - 1) < 0.02
  assert s.total_macs == 4_089_184_256
  features = _feature_shapes(get_model("resnet50"), IMAGENET)
  assert [features[f"stage{i}"] for i in range(1, 5)] == [
      (56, 56, 256), (28, 28, 512), (14, 14, 1024), (7, 7, 2048)]


def test_cifar_resnet_stages_at_28():
  features = _feature_shapes(get_model("resnet56"), (28, 28, 1))
  assert [features[f"stage{i}"] for i in (1, 2, 3)] == [(28, 28, 16), (14, 14, 32), (7, 7, 64)]


def test_option_a_shortcut_is_subsampled_zero_padded_identity():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 8, 8, 16), np.float32))
  block = Block(32, stride=2, shortcut="A")
  variables = jax.tree.map(jnp.zeros_like, _numpy_variables(block, x))
  variables["batch_stats"] = jax.tree.map(jnp.ones_like, variables["batch_stats"])
  y = block.apply(variables, x)   # Zero kernels: only the shortcut is left.
  expected = jnp.pad(jax.nn.relu(x[:, ::2, ::2]), ((0, 0), (0, 0), (0, 0), (0, 16)))
  np.testing.assert_allclose(y, expected, atol=1e-6)


def test_googlenet_table1_shapes_and_macs():
  features = _feature_shapes(get_model("googlenet"), IMAGENET)
  assert features["stem"] == (28, 28, 192)
  widths = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832,
            "5a": 832, "5b": 1024}
  sizes = {"3": 28, "4": 14, "5": 7}
  assert {k: features[f"inception_{k}"] for k in widths} == {
      k: (sizes[k[0]], sizes[k[0]], w) for k, w in widths.items()}
  assert abs(_summary("googlenet", IMAGENET).total_macs / 1.5e9 - 1) < 0.06   # §5: 1.5 G.


@pytest.mark.parametrize("name, aux", [("googlenet", 6_379_728), ("googlenet_bn", 6_379_984)])
def test_googlenet_aux_heads_only_in_training(name, aux):
  eval_summary, train_summary = _summary(name, IMAGENET), _summary(name, IMAGENET, True)
  assert not any(r.path.startswith("aux") for r in eval_summary.rows)
  assert _row(train_summary, "aux1/pool").output_shape == (4, 4, 512)
  assert _row(train_summary, "aux2/pool").output_shape == (4, 4, 528)
  assert train_summary.total_params - eval_summary.total_params == aux
  params = jax.eval_shape(functools.partial(get_model(name).init, train=True),
                          {"params": jax.random.key(0), "dropout": jax.random.key(1)},
                          jnp.zeros((1, *IMAGENET)))["params"]
  assert aux_parameter_count(params) == aux
  assert AUX_LOGITS not in _feature_shapes(get_model(name), IMAGENET)
  train_features = _feature_shapes(get_model(name), IMAGENET, train=True)
  assert train_features[AUX_LOGITS] == {"aux1": (1000,), "aux2": (1000,)}
  if name == "googlenet_bn":   # torchvision's googlenet with its aux heads.
    assert train_summary.total_params == 13_004_888


def test_nin_has_no_fully_connected_layers():
  s = _summary("nin_cifar10", CIFAR)
  assert not any(r.kind == "Dense" for r in s.rows)
  assert _row(s, "block3/mlp2").output_shape == (8, 8, 10)
  assert _row(s, "pool1").output_shape == (16, 16, 96)   # ceil((32 - 3) / 2) + 1.


def test_window_padding_modes():
  # PyTorch: floor((224 + 6 - 7) / 2) + 1 = 112; the unused last pad row is dropped.
  assert common.window_padding((224, 224), 7, 2, 3, "floor") == [(3, 2)] * 2
  assert common.window_padding((56, 56), 1, 2, 0, "floor") == [(0, -1)] * 2
  # Caffe / ceil_mode: ceil((112 - 3) / 2) + 1 = 56.
  assert common.window_padding((112, 112), 3, 2, 0, "ceil") == [(0, 1)] * 2
  assert common.window_padding((13, 13), 3, 2, 0, "ceil") == [(0, 0)] * 2
  with pytest.raises(ValueError, match="mode"):
    common.window_padding((8, 8), 3, 2, 0, "round")


def test_adaptive_avg_pool_bins():
  x = jnp.arange(2 * 7 * 5 * 3, dtype=jnp.float32).reshape(2, 7, 5, 3)
  pool = common.AdaptiveAvgPool(3)
  y = pool.apply({}, x)
  # PyTorch's bins for 7 -> 3: [0, 3), [2, 5), [4, 7); for 5 -> 3: [0, 2), [1, 4), [3, 5).
  rows, cols = [(0, 3), (2, 5), (4, 7)], [(0, 2), (1, 4), (3, 5)]
  expected = jnp.stack([jnp.stack([x[:, a:b, c:d].mean(axis=(1, 2)) for c, d in cols], 1)
                        for a, b in rows], 1)
  np.testing.assert_allclose(y, expected, rtol=1e-6)
  # Output size = input size is the identity (torchvision AlexNet at 224: 6x6 -> 6x6).
  x = x[:, :5, :5]
  np.testing.assert_allclose(common.AdaptiveAvgPool(5).apply({}, x), x)


# Forward passes.

_SLOW = {"vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg19", "resnet34", "resnet101", "resnet152"}
_IMAGENET_MODELS = [n for n, (shape, _) in PARAMS.items() if shape != CIFAR]


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in _IMAGENET_MODELS])
def test_full_resolution_forward(name):
  model = get_model(name)
  shape = PARAMS[name][0]
  x = jnp.asarray(np.random.default_rng(1).standard_normal((1, *shape), np.float32))
  logits, features = jax.jit(model.apply)(_numpy_variables(model, x), x)
  assert logits.shape == (1, 1000)
  assert bool(jnp.isfinite(logits).all())
  assert features


@pytest.mark.parametrize("name", SMALL)
def test_small_variant_forward(name):
  model = get_model(name, num_classes=10)
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 28, 28, 1), np.float32))
  variables = _numpy_variables(model, x, train=True)

  @jax.jit
  def forward(variables, x):
    eval_logits, _ = model.apply(variables, x)
    (train_logits, features), updates = model.apply(
        variables, x, train=True, rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"])
    return eval_logits, train_logits, features, updates

  eval_logits, train_logits, features, updates = forward(variables, x)
  assert eval_logits.shape == train_logits.shape == (2, 10)
  assert bool(jnp.isfinite(eval_logits).all() & jnp.isfinite(train_logits).all())
  assert ("batch_stats" in updates) == ("batch_stats" in variables)
  if name == "googlenet_small":
    aux = features[AUX_LOGITS]
    assert aux["aux1"].shape == aux["aux2"].shape == (2, 10)
