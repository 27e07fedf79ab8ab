"""Image-sentence alignment ops (Karpathy & Fei-Fei 2015, "Deep Visual-Semantic
Alignments for Generating Image Descriptions", CVPR, §3.1 and §4.1).

Pure and jittable. An image is a set of region embeddings v_i (float [R, D],
the detector's top regions and the whole image, padded to R with a mask); a
sentence is a sequence of word embeddings s_t (float [T, D], padded to T with a
mask). The score of image k and sentence l is eq. 8, every word's best region:

    S_kl = sum_{t in g_l} max_{i in g_k} v_i^T s_t,

the structured max-margin objective eq. 9 ranks each image's sentence above the
other sentences of the batch and each sentence's image above the other images,
and the retrieval ranks and R@K / median rank are the protocol of Table 1.
"""

import jax
import jax.numpy as jnp
import numpy as np


def alignment_scores(regions: jax.Array, region_mask: jax.Array, words: jax.Array,
                     word_mask: jax.Array, sentence_chunk: int | None = None) -> jax.Array:
  """The image-sentence scores of §3.1.3 eq. 8: S_kl = sum_t max_i v_i^T s_t.

  Every word of sentence l is aligned to its best region of image k; padded
  regions (mask 0) never win the max and padded words (mask 0) add 0, so
  padding either changes nothing.

  Args:
    regions: float [K, R, D], the region embeddings v of K images.
    region_mask: float or bool [K, R], 1 for real regions; every image needs at
      least one (the whole image always is one), else its scores are -inf.
    words: float [L, T, D], the word embeddings s of L sentences.
    word_mask: float or bool [L, T], 1 for real words.
    sentence_chunk: static; None scores all pairs at once (memory K x L x R x T
      float32, right for a training batch); n scores n sentences at a time
      (K x n x R x T), for a test set of images against all its sentences.

  Returns:
    float32 [K, L]: row k the image, column l the sentence.
  """
  def scores(words, word_mask):
    dots = jnp.einsum("krd,ltd->klrt", regions.astype(jnp.float32), words.astype(jnp.float32))
    best = jnp.max(jnp.where(region_mask[:, None, :, None] > 0, dots, -jnp.inf), axis=2)
    return jnp.sum(jnp.where(word_mask[None] > 0, best, 0.0), axis=-1)  # [K, L]

  if sentence_chunk is None:
    return scores(words, word_mask)
  one = lambda wm: scores(wm[0][None], wm[1][None])[:, 0]  # noqa: E731  [K]
  return jax.lax.map(one, (words, word_mask), batch_size=sentence_chunk).T


def ranking_loss(scores: jax.Array, margin: float = 1.0, reduction: str = "sum") -> jax.Array:
  """The structured max-margin objective of §3.1.3 eq. 9 on a batch's scores.

      C = sum_k [ sum_{l != k} max(0, S_kl - S_kk + margin)     (image k: rank its sentence)
                + sum_{l != k} max(0, S_lk - S_kk + margin) ]   (sentence k: rank its image)

  Pair k (image k with sentence k) is the true one. The l = k terms of the
  paper's sums are left out: each is the constant margin, with no gradient,
  so with them C would be 2 K margin higher and never 0.

  Args:
    scores: float [K, K], S[k, l] = score of image k and sentence l (as
      alignment_scores gives for a batch of K true pairs).
    margin: the margin, 1 in the paper.
    reduction: "sum" (the paper: C grows with K) or "mean" (C / K: per pair,
      so the learning rate does not depend on the batch size).

  Returns:
    float32 scalar.

  Raises:
    ValueError: scores not square, or an unknown reduction.
  """
  if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
    raise ValueError(f"ranking_loss: scores of shape {scores.shape} must be square [K, K], "
                     "image k's true sentence being sentence k.")
  if reduction not in ("sum", "mean"):
    raise ValueError(f"ranking_loss: reduction={reduction!r}; choose 'sum' (the paper) or 'mean'.")
  s = scores.astype(jnp.float32)
  k = s.shape[0]
  diag = jnp.diagonal(s)
  off = 1.0 - jnp.eye(k, dtype=jnp.float32)
  rank_sentences = jnp.maximum(0.0, s - diag[:, None] + margin) * off  # Row k: image k.
  rank_images = jnp.maximum(0.0, s - diag[None, :] + margin) * off     # Column k: sentence k.
  total = jnp.sum(rank_sentences) + jnp.sum(rank_images)
  return total if reduction == "sum" else total / k


def retrieval_ranks(scores: jax.Array, image_of_sentence: jax.Array | None = None
                    ) -> tuple[jax.Array, jax.Array]:
  """The ranks of Table 1's retrieval protocol (§4.1), 1 = retrieved first.

  Image annotation (image -> sentence): the sentences sorted by score for image
  k; image k's rank is the position of the first of its own sentences (with
  five sentences per image, its best one). Image search (sentence -> image): the
  images sorted by score for sentence l; its rank is its image's position.
  Ties count against the truth (a candidate scoring equal to the true one is
  ranked before it), so constant scores give the worst ranks, never R@1 = 100%.

  Args:
    scores: float [N_img, N_sent], S[k, l] = score of image k and sentence l.
    image_of_sentence: int [N_sent], the image each sentence describes (values
      in [0, N_img)); None: sentence l describes image l (N_img == N_sent).
      An image with no sentence gets rank N_sent + 1 (never a hit).

  Returns:
    (image ranks int32 [N_img] in [1, N_sent + 1], sentence ranks int32
    [N_sent] in [1, N_img]).

  Raises:
    ValueError: image_of_sentence None with a non-square score matrix, or of
      the wrong length.
  """
  n_img, n_sent = scores.shape
  if image_of_sentence is None:
    if n_img != n_sent:
      raise ValueError(f"retrieval_ranks: scores {scores.shape} are not square; pass "
                       "image_of_sentence (the image index of each sentence).")
    image_of_sentence = jnp.arange(n_sent)
  if image_of_sentence.shape != (n_sent,):
    raise ValueError(f"retrieval_ranks: image_of_sentence of shape {image_of_sentence.shape} "
                     f"needs one image index per sentence, shape ({n_sent},).")
  s = scores.astype(jnp.float32)
  own = image_of_sentence[None, :] == jnp.arange(n_img)[:, None]  # [N_img, N_sent]
  best_own = jnp.max(jnp.where(own, s, -jnp.inf), axis=1)          # [N_img]
  image_ranks = 1 + jnp.sum(~own & (s >= best_own[:, None]), axis=1)
  true_score = jnp.sum(jnp.where(own, s, 0.0), axis=0)             # [N_sent]: S[image(l), l].
  sentence_ranks = 1 + jnp.sum(~own & (s >= true_score[None, :]), axis=0)
  return image_ranks.astype(jnp.int32), sentence_ranks.astype(jnp.int32)


def retrieval_metrics(ranks, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
  """Table 1's columns from ranks: R@K (percent of queries whose truth ranks
  within the first K, the paper's unit) and the median rank ("Med r").

  Args:
    ranks: int array [N] of 1-based ranks (one half of retrieval_ranks), N >= 1.
    ks: the K of each R@K.

  Returns:
    {"R@1": percent, "R@5": ..., "R@10": ..., "median_rank": float}.

  Raises:
    ValueError: no ranks, or a rank below 1.
  """
  r = np.asarray(ranks)
  if r.size == 0 or r.min() < 1:
    raise ValueError(f"retrieval_metrics: ranks must be a non-empty array of ranks >= 1; got "
                     f"{r.size} ranks" + (f", minimum {r.min()}" if r.size else "") + ".")
  out = {f"R@{k}": float(100.0 * np.mean(r <= k)) for k in ks}
  out["median_rank"] = float(np.median(r))
  return out


def word_region_alignment(regions: jax.Array, region_mask: jax.Array, words: jax.Array,
                          word_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Each word's best region in its own image (the argmax of eq. 8; Fig. 5's picture).

  Args:
    regions: float [B, R, D] and region_mask [B, R]: image b's regions.
    words: float [B, T, D] and word_mask [B, T]: sentence b, of image b.

  Returns:
    (index int32 [B, T]: the region (in [0, R)) each word aligns to, -1 for
    padded words; score float32 [B, T]: its v_i^T s_t, 0 for padded words).
  """
  dots = jnp.einsum("brd,btd->brt", regions.astype(jnp.float32), words.astype(jnp.float32))
  dots = jnp.where(region_mask[:, :, None] > 0, dots, -jnp.inf)
  real = word_mask > 0
  index = jnp.where(real, jnp.argmax(dots, axis=1), -1).astype(jnp.int32)
  return index, jnp.where(real, jnp.max(dots, axis=1), 0.0)
