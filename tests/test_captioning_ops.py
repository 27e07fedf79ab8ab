"""research/ops/captioning.py (issue 17): Karpathy & Fei-Fei's eq. 8 scores, eq. 9
ranking loss and Table 1's retrieval ranks, against hand-computed cases and loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.ops import captioning as co


# --- ranking_loss (eq. 9) ---

def test_ranking_loss_2x2_by_hand():
  s = jnp.asarray([[2.0, 0.5],
                   [1.8, 1.0]])
  # Image terms (rows): image 0: max(0, 0.5 - 2 + 1) = 0; image 1: max(0, 1.8 - 1 + 1) = 1.8.
  # Sentence terms (columns): sentence 0: max(0, 1.8 - 2 + 1) = 0.8; sentence 1: 0.5 - 1 + 1 = 0.5.
  assert float(co.ranking_loss(s)) == pytest.approx(3.1, abs=1e-6)
  assert float(co.ranking_loss(s, reduction="mean")) == pytest.approx(1.55, abs=1e-6)
  # margin 0.1: only image 1 (1.8 - 1 + 0.1 = 0.9) and nothing else.
  assert float(co.ranking_loss(s, margin=0.1)) == pytest.approx(0.9, abs=1e-6)


def test_ranking_loss_3x3_by_hand():
  s = jnp.asarray([[3.0, 1.0, 2.5],
                   [0.0, 1.0, 0.2],
                   [2.0, 0.5, 2.0]])
  # Rows: 0.5 (S02) + 0.2 (S12) + 1.0 (S20) = 1.7; all other row terms are clipped at 0
  # (S10: 0 - 1 + 1 = 0 exactly). Columns: 1.0 (S01) + 0.5 (S21) + 1.5 (S02) = 3.0
  # (S20: 2 - 3 + 1 = 0 exactly).
  assert float(co.ranking_loss(s)) == pytest.approx(4.7, abs=1e-6)


def test_ranking_loss_is_zero_when_every_true_pair_wins_by_the_margin():
  s = jnp.asarray([[5.0, 3.9, 1.0], [0.0, 5.0, 4.0], [-2.0, 2.0, 5.0]])
  assert float(co.ranking_loss(s)) == 0.0
  # S12 = 4.25 violates the margin by 0.25 twice: in image 1's row (against S11 = 5)
  # and in sentence 2's column (against S22 = 5).
  assert float(co.ranking_loss(s.at[1, 2].set(4.25))) == pytest.approx(0.5, abs=1e-6)


def test_ranking_loss_refuses_bad_input():
  with pytest.raises(ValueError, match="must be square"):
    co.ranking_loss(jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="reduction='avg'"):
    co.ranking_loss(jnp.zeros((2, 2)), reduction="avg")


# --- alignment_scores (eq. 8) ---

def _loop_scores(v, vm, s, sm):
  out = np.zeros((len(v), len(s)))
  for k in range(len(v)):
    for l in range(len(s)):
      for t in range(s.shape[1]):
        if sm[l, t]:
          out[k, l] += max(float(v[k, i] @ s[l, t]) for i in range(v.shape[1]) if vm[k, i])
  return out


def _random_embeddings(rng, k=3, r=4, l=5, t=6, d=8):
  v = rng.normal(size=(k, r, d)).astype(np.float32)
  s = rng.normal(size=(l, t, d)).astype(np.float32)
  vm = (rng.uniform(size=(k, r)) < 0.7).astype(np.float32)
  vm[:, 0] = 1  # The whole image is always a region.
  sm = (rng.uniform(size=(l, t)) < 0.7).astype(np.float32)
  return v, vm, s, sm


def test_alignment_scores_match_a_loop():
  v, vm, s, sm = _random_embeddings(np.random.default_rng(0))
  ours = jax.jit(co.alignment_scores)(v, vm, s, sm)
  assert ours.shape == (3, 5) and ours.dtype == jnp.float32
  np.testing.assert_allclose(ours, _loop_scores(v, vm, s, sm), rtol=1e-5, atol=1e-5)
  # Two sentences at a time (the last chunk one): the same scores.
  chunked = jax.jit(co.alignment_scores, static_argnames="sentence_chunk")(v, vm, s, sm,
                                                                           sentence_chunk=2)
  np.testing.assert_allclose(chunked, ours, rtol=1e-6, atol=1e-6)


def test_padded_regions_and_words_change_no_score():
  rng = np.random.default_rng(1)
  v, vm, s, sm = _random_embeddings(rng)
  base = co.alignment_scores(v, vm, s, sm)
  # Padding with huge values, masked: a padded region would win every max, a
  # padded word would add 1e6.
  big_v = np.concatenate([v, np.full((3, 2, 8), 1e3, np.float32)], axis=1)
  big_vm = np.concatenate([vm, np.zeros((3, 2), np.float32)], axis=1)
  big_s = np.concatenate([s, np.full((5, 3, 8), 1e3, np.float32)], axis=1)
  big_sm = np.concatenate([sm, np.zeros((5, 3), np.float32)], axis=1)
  np.testing.assert_allclose(co.alignment_scores(big_v, big_vm, big_s, big_sm), base,
                             rtol=1e-6, atol=1e-6)
  # Changing masked entries in place changes nothing either.
  v2 = np.where(vm[..., None] > 0, v, 50.0).astype(np.float32)
  s2 = np.where(sm[..., None] > 0, s, -50.0).astype(np.float32)
  np.testing.assert_array_equal(co.alignment_scores(v2, vm, s2, sm), base)


def test_scores_and_loss_have_finite_gradients_with_padding():
  v, vm, s, sm = _random_embeddings(np.random.default_rng(2), k=4, l=4)

  def loss(v, s):
    return co.ranking_loss(co.alignment_scores(v, vm, s, sm))
  gv, gs = jax.grad(loss, argnums=(0, 1))(v, s)
  assert np.isfinite(gv).all() and np.isfinite(gs).all()
  assert np.abs(gv).sum() > 0 and np.abs(gs).sum() > 0
  # Padding gets no gradient.
  assert not np.any(gv[vm == 0]) and not np.any(gs[sm == 0])


# --- word_region_alignment ---

def test_word_region_alignment_by_hand():
  # Image 0: regions along the axes; region 2 is padding and would win every word.
  v = np.asarray([[[1, 0], [0, 1], [9, 9]]], np.float32)
  vm = np.asarray([[1, 1, 0]], np.float32)
  s = np.asarray([[[2, 1], [0.5, 3], [1, 1], [7, 7]]], np.float32)
  sm = np.asarray([[1, 1, 0, 1]], np.float32)
  index, score = co.word_region_alignment(v, vm, s, sm)
  np.testing.assert_array_equal(index, [[0, 1, -1, 0]])  # A tie (7, 7) goes to the first region.
  np.testing.assert_allclose(score, [[2.0, 3.0, 0.0, 7.0]])
  assert index.dtype == jnp.int32


# --- retrieval_ranks and retrieval_metrics (Table 1) ---

# 3 images with 2 sentences each (sentences 0, 1 of image 0; 2, 3 of image 1; 4, 5 of image 2).
SCORES = np.asarray([[0.9, 0.1, 0.95, 0.2, 0.3, 0.0],
                     [0.5, 0.6, 0.4, 0.7, 0.1, 0.2],
                     [0.3, 0.8, 0.9, 0.2, 0.1, 0.05]], np.float32)
IMAGE_OF_SENTENCE = np.asarray([0, 0, 1, 1, 2, 2])


def test_retrieval_ranks_by_hand():
  image_ranks, sentence_ranks = co.retrieval_ranks(jnp.asarray(SCORES),
                                                   jnp.asarray(IMAGE_OF_SENTENCE))
  # Image 0: its best sentence (0.9) is behind sentence 2 (0.95): rank 2. Image 1: its
  # 0.7 is first. Image 2: its best (0.1) is behind 0.3, 0.8, 0.9, 0.2: rank 5.
  np.testing.assert_array_equal(image_ranks, [2, 1, 5])
  # Sentence 4: image 2 scores 0.1, image 0 0.3 and image 1 0.1 (a tie counts
  # against the truth): rank 3.
  np.testing.assert_array_equal(sentence_ranks, [1, 3, 3, 1, 3, 2])
  assert image_ranks.dtype == sentence_ranks.dtype == jnp.int32

  m = co.retrieval_metrics(image_ranks)
  assert m == pytest.approx({"R@1": 100 / 3, "R@5": 100.0, "R@10": 100.0, "median_rank": 2.0})
  m = co.retrieval_metrics(sentence_ranks, ks=(1, 2))
  assert m == pytest.approx({"R@1": 100 / 3, "R@2": 50.0, "median_rank": 2.5})


def test_retrieval_ranks_match_sorting():
  rng = np.random.default_rng(3)
  n_img, per = 7, 3
  owner = np.repeat(np.arange(n_img), per)
  rng.shuffle(owner)
  s = rng.normal(size=(n_img, n_img * per)).astype(np.float32)
  image_ranks, sentence_ranks = jax.jit(co.retrieval_ranks)(s, owner)
  for k in range(n_img):
    order = np.argsort(-s[k])
    assert image_ranks[k] == 1 + np.flatnonzero(owner[order] == k)[0]
  for l in range(len(owner)):
    assert sentence_ranks[l] == 1 + np.flatnonzero(np.argsort(-s[:, l]) == owner[l])[0]


def test_constant_scores_rank_last_and_square_default():
  image_ranks, sentence_ranks = co.retrieval_ranks(jnp.zeros((4, 4)))
  np.testing.assert_array_equal(image_ranks, [4, 4, 4, 4])
  np.testing.assert_array_equal(sentence_ranks, [4, 4, 4, 4])
  image_ranks, sentence_ranks = co.retrieval_ranks(jnp.eye(3))
  np.testing.assert_array_equal(image_ranks, [1, 1, 1])


def test_retrieval_refuses_bad_input():
  with pytest.raises(ValueError, match="not square; pass image_of_sentence"):
    co.retrieval_ranks(jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"shape \(3,\)"):
    co.retrieval_ranks(jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32))
  with pytest.raises(ValueError, match="non-empty"):
    co.retrieval_metrics(np.zeros((0,), np.int32))
  with pytest.raises(ValueError, match="minimum 0"):
    co.retrieval_metrics(np.asarray([1, 0]))
