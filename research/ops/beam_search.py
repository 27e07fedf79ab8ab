"""Greedy and beam-search decoding over a generic step function, jittable.

Karpathy & Fei-Fei 2015 §3.2 ("Deep Visual-Semantic Alignments for Generating
Image Descriptions"): at test time the multimodal RNN is fed the START vector,
then "we compute the distribution over the first word y_1. We sample a word
from the distribution (or pick the argmax), set its embedding vector as x_2,
and repeat this process until the END token is generated"; their released code
(neuraltalk) decodes with a beam (size 7 by default) ranked by the sum of the
words' log-probabilities, with no length normalisation.

The decoders here run a fixed number of steps (`max_len`, static), so they
compile once: a hypothesis that has emitted `end_id` is finished and is carried
along unchanged (its later tokens are `pad_id`, its score fixed), and one that
reaches `max_len` words without END stops there (truncated, scored by the words
it has). The step function is any

  step_fn(state, tokens int32 [N]) -> (state, logits float [N, V])

with `state` a pytree whose leaves have leading dimension N (the batch for
greedy search; batch x beam, batch-major, for beam search). The first call
gets `start_id`.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

StepFn = Callable[[object, jax.Array], tuple[object, jax.Array]]


class Decoded(NamedTuple):
  """Decoded sequences, best first along the beam axis.

  tokens: int32 [B, K, max_len] (greedy: [B, max_len]): the generated words,
    then `end_id` if it was generated, then `pad_id`; START is not included.
  scores: float32 [B, K]: what the hypotheses are ranked by: `log_probs`, or
    `log_probs / lengths` with length normalisation. -inf marks an empty slot
    (fewer possible sequences than K).
  log_probs: float32 [B, K]: the sum of the generated tokens' log-probabilities
    (END included when generated).
  lengths: int32 [B, K]: generated tokens, END included.
  """
  tokens: jax.Array
  scores: jax.Array
  log_probs: jax.Array
  lengths: jax.Array


def _check(max_len: int, beam_size: int = 1):
  if max_len < 1:
    raise ValueError(f"max_len={max_len}: decoding needs at least one step; use max_len >= 1.")
  if beam_size < 1:
    raise ValueError(f"beam_size={beam_size}: use beam_size >= 1 (1 is greedy search).")


def greedy_search(step_fn: StepFn, state, batch_size: int, *, start_id: int, end_id: int,
                  max_len: int, pad_id: int = 0) -> Decoded:
  """The argmax word at each step (ties: the lowest id), until END or max_len.

  Args:
    step_fn: see the module docstring; called max_len times on N = batch_size rows.
    state: the initial state pytree, leaves [batch_size, ...].
    batch_size: static int, the leading dimension of the state.
    start_id, end_id, pad_id: token ids (static ints).
    max_len: static int >= 1, the most tokens generated (END included).

  Returns:
    Decoded with tokens int32 [B, max_len] and scores, log_probs, lengths [B]
    (scores == log_probs).

  Raises:
    ValueError: max_len < 1.
  """
  _check(max_len)

  def body(carry, _):
    state, token, done, log_prob, length = carry
    state, logits = step_fn(state, token)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    word = jnp.argmax(logp, axis=-1).astype(jnp.int32)
    gained = jnp.take_along_axis(logp, word[:, None], axis=-1)[:, 0]
    word = jnp.where(done, pad_id, word)
    log_prob = log_prob + jnp.where(done, 0.0, gained)
    length = length + (~done).astype(jnp.int32)
    done = done | (word == end_id)
    return (state, word, done, log_prob, length), word

  init = (state, jnp.full((batch_size,), start_id, jnp.int32), jnp.zeros((batch_size,), bool),
          jnp.zeros((batch_size,), jnp.float32), jnp.zeros((batch_size,), jnp.int32))
  (_, _, _, log_prob, length), words = jax.lax.scan(body, init, None, length=max_len)
  return Decoded(words.T, log_prob, log_prob, length)


def beam_search(step_fn: StepFn, state, batch_size: int, *, beam_size: int, start_id: int,
                end_id: int, max_len: int, pad_id: int = 0,
                length_normalise: bool = False) -> Decoded:
  """Beam search: the `beam_size` best hypotheses by summed log-probability.

  At each step every live hypothesis is extended by every word and the best
  beam_size (hypothesis, word) pairs by total log-probability are kept,
  finished hypotheses competing with their fixed score (ties: the lower
  beam then the lower word id, as top_k keeps the first). With a beam at
  least as large as the number of possible sequences, this is exhaustive
  search (tests/test_beam_search.py checks that). Length normalisation
  (off by default, as in the paper's code) only re-ranks the final beam by
  log_prob / length; the search itself prunes on the summed log-probability.

  Args:
    step_fn: see the module docstring; called max_len times on
      N = batch_size * beam_size rows (row b * beam_size + k is beam k of item b).
    state: the initial state pytree, leaves [batch_size, ...] (copied to each beam).
    batch_size: static int.
    beam_size: static int >= 1 (neuraltalk: 7); 1 equals greedy search.
    start_id, end_id, pad_id: token ids (static ints).
    max_len: static int >= 1, the most tokens generated (END included).
    length_normalise: rank the final hypotheses by log_prob / length.

  Returns:
    Decoded, [B, K, ...], best first.

  Raises:
    ValueError: max_len < 1 or beam_size < 1.
  """
  _check(max_len, beam_size)
  b, k = batch_size, beam_size
  state = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), state)
  # One live hypothesis per item at the start: the other beams are empty (-inf),
  # so the first step does not fill the beam with copies of the same words.
  log_prob = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf), (b, 1))

  def body(carry, t):
    state, token, done, log_prob, length, seqs = carry
    state, logits = step_fn(state, token.reshape(b * k))
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    v = logp.shape[-1]
    logp = logp.reshape(b, k, v)
    # A finished hypothesis has one continuation, pad_id at no cost.
    carried = jnp.where(jnp.arange(v) == pad_id, 0.0, -jnp.inf)
    logp = jnp.where(done[..., None], carried, logp)
    total = (log_prob[..., None] + logp).reshape(b, k * v)
    log_prob, flat = jax.lax.top_k(total, k)
    parent, word = flat // v, (flat % v).astype(jnp.int32)
    pick = lambda x: jnp.take_along_axis(x, parent, axis=1)
    was_done = pick(done)
    length = pick(length) + (~was_done).astype(jnp.int32)
    done = was_done | (word == end_id)
    seqs = jnp.take_along_axis(seqs, parent[..., None], axis=1)
    seqs = seqs.at[:, :, t].set(word)
    rows = (jnp.arange(b)[:, None] * k + parent).reshape(-1)
    state = jax.tree.map(lambda x: x[rows], state)
    return (state, word, done, log_prob, length, seqs), None

  init = (state, jnp.full((b, k), start_id, jnp.int32), jnp.zeros((b, k), bool), log_prob,
          jnp.zeros((b, k), jnp.int32), jnp.full((b, k, max_len), pad_id, jnp.int32))
  (_, _, _, log_prob, length, seqs), _ = jax.lax.scan(body, init, jnp.arange(max_len))
  scores = log_prob
  if length_normalise:
    scores = jnp.where(jnp.isfinite(log_prob), log_prob / jnp.maximum(length, 1), -jnp.inf)
    order = jnp.argsort(-scores, axis=1, stable=True)
    take = lambda x: jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)),
                                         axis=1)
    seqs, scores, log_prob, length = take(seqs), take(scores), take(log_prob), take(length)
  return Decoded(seqs, scores, log_prob, length)
