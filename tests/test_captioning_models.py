"""research/models/captioning.py (issue 17): Karpathy & Fei-Fei's alignment model.

The BRNN against the paper's equations written out in NumPy, padding that changes
nothing, region masking, the whole-image baseline, finite gradients and a few
optimizer steps lowering the ranking loss. Tiny widths and one set of shapes.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import models
from research.models import captioning as cm
from research.models import summary
from research.ops import captioning as co
from research.train import transfer

VOCAB = 12
MODEL = cm.AlignmentModel(vocab_size=VOCAB, word_dim=8, hidden=8, embed_dim=16)
IMAGE_HW = (24, 32)


def _batch(seed=0, b=4):
  rng = np.random.default_rng(seed)
  images = rng.normal(size=(b, *IMAGE_HW, 3)).astype(np.float32)
  tokens = np.zeros((b, 7), np.int32)
  for i in range(b):
    n = 1 + i % 4  # 1 to 4 words.
    tokens[i, :n + 2] = [cm.START, *rng.integers(cm.UNK, VOCAB, n), cm.END]
  h, w = IMAGE_HW
  regions = np.asarray([[0, 0, h, w], [2, 3, 14, 20], [10, 12, 24, 30]], np.float32)
  regions = np.broadcast_to(regions, (b, 3, 4)).copy()
  mask = np.ones((b, 3), np.float32)
  mask[0, 2] = mask[2, 1:] = 0
  return jnp.asarray(images), jnp.asarray(tokens), jnp.asarray(regions), jnp.asarray(mask)


@pytest.fixture(scope="module")
def variables():
  """Parameters of MODEL's shapes drawn in NumPy (fan-in scaled normals, an
  orthogonal recurrence at 0.5): compiling flax's random initialisers takes
  ~20 s here, the tests' whole budget. MODEL.init itself is traced by the
  summary test (summarize runs it under eval_shape)."""
  shapes = jax.eval_shape(MODEL.init, jax.random.key(0), *_batch())
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = path[-1].key
    if name == "bias":
      return np.zeros(leaf.shape, np.float32)
    if name == "kernel" and path[-2].key in ("forward", "backward"):
      q, _ = np.linalg.qr(rng.normal(size=leaf.shape))
      return (0.5 * q).astype(np.float32)
    fan_in = 1 if name == "embedding" else int(np.prod(leaf.shape[:-1]))
    return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


_apply = jax.jit(MODEL.apply)
_embed_sentence = jax.jit(lambda v, t: MODEL.apply(v, t, method="embed_sentence"))


def _brnn_reference(p, words):
  """§3.1.2's equations on one sentence's words (ids), in NumPy float64."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  relu = lambda z: np.maximum(z, 0.0)  # noqa: E731
  x = p["word_embed"]["embedding"][words]
  e = relu(x @ p["word_in"]["kernel"] + p["word_in"]["bias"])
  n, hid = len(words), e.shape[1]
  hf, hb = np.zeros((n, hid)), np.zeros((n, hid))
  prev = np.zeros(hid)
  for t in range(n):
    prev = hf[t] = relu(e[t] + prev @ p["forward"]["kernel"] + p["forward"]["bias"])
  prev = np.zeros(hid)
  for t in reversed(range(n)):
    prev = hb[t] = relu(e[t] + prev @ p["backward"]["kernel"] + p["backward"]["bias"])
  return relu((hf + hb) @ p["word_out"]["kernel"] + p["word_out"]["bias"])


def test_brnn_shapes_and_the_papers_equations(variables):
  _, tokens, _, _ = _batch()
  s, mask = _embed_sentence(variables, tokens)
  assert s.shape == (4, 7, 16) and mask.shape == (4, 7)
  np.testing.assert_array_equal(mask, (np.asarray(tokens) >= cm.UNK).astype(np.float32))
  assert not np.any(np.asarray(s)[np.asarray(mask) == 0])  # Non-words embed to 0.
  p = variables["params"]["sentence_encoder"]
  for i in range(4):
    words = np.asarray(tokens[i])[np.asarray(mask[i]) > 0]
    # Each sentence's backward RNN starts at its own last word, whatever the others' lengths.
    np.testing.assert_allclose(np.asarray(s[i])[np.asarray(mask[i]) > 0],
                               _brnn_reference(p, words), rtol=1e-4, atol=1e-5)


def test_padding_changes_no_word_embedding(variables):
  _, tokens, _, _ = _batch()
  s, _ = _embed_sentence(variables, tokens)
  longer = jnp.pad(tokens, ((0, 0), (0, 5)))  # Five more <pad> after each sentence.
  s_long, mask_long = _embed_sentence(variables, longer)
  np.testing.assert_allclose(s_long[:, :7], s, rtol=1e-6, atol=1e-6)
  assert not np.any(np.asarray(s_long[:, 7:])) and not np.any(np.asarray(mask_long[:, 7:]))
  # One sentence alone gives what it gave in the batch.
  s_one, _ = _embed_sentence(variables, longer[3:4])
  np.testing.assert_allclose(s_one[0, :7], s[3], rtol=1e-6, atol=1e-6)


def test_scores_shapes_and_region_masking(variables):
  images, tokens, regions, mask = _batch()
  scores, f = _apply(variables, images, tokens, regions, mask)
  assert scores.shape == (4, 4) and scores.dtype == jnp.float32
  assert f["regions"].shape == (4, 3, 16) and f["words"].shape == (4, 7, 16)
  np.testing.assert_allclose(scores, co.alignment_scores(f["regions"], mask, f["words"],
                                                         f["word_mask"]), rtol=1e-6)
  # Masked regions can be anywhere: moving them changes no score.
  moved = regions.at[0, 2].set(jnp.asarray([5.0, 5.0, 9.0, 30.0])).at[2, 1:].set(0.0)
  np.testing.assert_allclose(_apply(variables, images, tokens, moved, mask)[0], scores,
                             rtol=1e-6, atol=1e-6)
  # uint8 images are accepted (mapped to [-1, 1]).
  u8 = jnp.asarray(np.random.default_rng(4).integers(0, 256, (4, *IMAGE_HW, 3)), jnp.uint8)
  assert np.isfinite(_apply(variables, u8, tokens, regions, mask)[0]).all()


def test_whole_image_baseline_uses_the_whole_image_only(variables):
  images, tokens, regions, mask = _batch()
  baseline = cm.AlignmentModel(vocab_size=VOCAB, word_dim=8, hidden=8, embed_dim=16,
                               whole_image_only=True)
  scores, f = jax.jit(baseline.apply)(variables, images, tokens, regions, mask)  # Same params.
  assert f["regions"].shape == (4, 1, 16)
  whole = cm.whole_image_boxes(4, *IMAGE_HW)
  expected, _ = _apply(variables, images, tokens, whole, jnp.ones((4, 1)))
  np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-6)


def test_gradients_finite_and_a_few_adam_steps_lower_the_ranking_loss(variables):
  images, tokens, regions, mask = _batch(seed=1)
  tx = optax.adam(1e-3)

  def loss_fn(params):
    scores, _ = MODEL.apply({"params": params}, images, tokens, regions, mask)
    return co.ranking_loss(scores, reduction="mean")

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, grads

  params = variables["params"]
  opt_state = tx.init(params)
  losses = []
  for i in range(30):
    params, opt_state, loss, grads = step(params, opt_state)
    if i == 0:
      flat = flax.traverse_util.flatten_dict(grads)
      assert all(np.isfinite(g).all() for g in flat.values())
      # Both sides learn: the region CNN's first conv and the backward RNN get gradient.
      assert np.abs(flat[("image_encoder", "convs", "conv1_1", "kernel")]).sum() > 0
      assert np.abs(flat[("sentence_encoder", "backward", "kernel")]).sum() > 0
    losses.append(float(loss))
  # Measured: 6.09 at the first step, 0.28-0.61 over the last five.
  assert losses[0] > 1.0 and np.mean(losses[-5:]) < 0.25 * losses[0], losses


def test_a_detectors_convs_and_fc_layers_fit_the_region_cnn(variables):
  detector = models.get_model("fast_rcnn_small", num_classes=3)
  shapes = jax.eval_shape(detector.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  source = jax.tree.map(lambda a: np.full(a.shape, 0.5, a.dtype), shapes["params"])
  new, copied = transfer.copy_matching(variables["params"], cm.from_detector(source),
                                       "^image_encoder/(convs|fc)")
  # Six convs and fc6, fc7, each a kernel and a bias; same shapes or copy_matching refuses.
  assert len(copied) == 16, copied
  assert np.all(new["image_encoder"]["fc6"]["kernel"] == 0.5)
  kept = variables["params"]["image_encoder"]["region_embed"]["kernel"]
  assert new["image_encoder"]["region_embed"]["kernel"] is kept  # W_m is new.


def test_registered_summarised_and_bad_input_refused(variables):
  assert models.get_model("alignment", vocab_size=VOCAB).vocab_size == VOCAB
  table = summary.summarize(MODEL, (*IMAGE_HW, 3)).table()
  assert "sentence_encoder/backward" in table and "image_encoder/region_embed" in table
  # Crops twice the RoI grid are max-pooled to it (VGG-16's pool5 at 224), so fc6 keeps
  # the detector's input size.
  assert cm.pooled_grid("small", 32) == 1 and cm.pooled_grid("vgg16", 224) == 2
  big = summary.summarize(cm.AlignmentModel(vocab_size=VOCAB, crop_size=64), (*IMAGE_HW, 3))
  fc6 = next(r for r in big.rows if r.path == "image_encoder/fc6")
  assert "image_encoder/pool" in big.table() and fc6.params == 4 * 4 * 128 * 256 + 256
  for bad in (40, 16):
    with pytest.raises(ValueError, match=f"crop_size={bad}: .* give a multiple of 32"):
      cm.AlignmentModel(vocab_size=VOCAB, crop_size=bad).init(jax.random.key(0), *_batch()[:2])
  images, tokens, regions, mask = _batch()
  with pytest.raises(ValueError, match="must be int"):
    MODEL.apply(variables, images, tokens.astype(jnp.float32), regions, mask)
  with pytest.raises(ValueError, match=r"must be \[B, R, 4\]"):
    MODEL.apply(variables, images, tokens, regions[..., :2], mask)
  with pytest.raises(ValueError, match="one entry per region"):
    MODEL.apply(variables, images, tokens, regions, mask[:, :2])
  with pytest.raises(ValueError, match="3 sentences for 4 images"):
    MODEL.apply(variables, images, tokens[:3], regions, mask)
