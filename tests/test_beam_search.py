"""Greedy and beam search (research/ops/beam_search.py) against exhaustive search (issue 17)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.ops import beam_search as bs

PAD, START, END = 0, 1, 2


def _table_step(table):
  """A fixed random step function whose logits depend on the whole prefix fed so far.

  State: (item, code) int32 [N]; code encodes the tokens fed (base V + 1), so
  each prefix of each batch item has its own row of `table` [B, C, V].
  """
  v = table.shape[-1]

  def step(state, tokens):
    item, code = state
    code = code * (v + 1) + tokens + 1
    return (item, code), table[item, code]
  return step


def _exhaustive(table, item, max_len, length_normalise=False):
  """Every sequence the decoders can produce for `item`, best first: (tokens, score)."""
  v = table.shape[-1]
  logp = np.asarray(jax.nn.log_softmax(table, axis=-1))
  out = []
  for n in range(1, max_len + 1):
    for words in itertools.product(range(v), repeat=n):
      if END in words[:-1] or (words[-1] != END and n < max_len):
        continue  # Decoding stops at END; only max_len truncates a sequence without it.
      code, score = 0, 0.0
      for fed, word in zip((START,) + words[:-1], words):
        code = code * (v + 1) + fed + 1
        score += logp[item, code, word]
      tokens = list(words) + [PAD] * (max_len - n)
      out.append((tokens, score / n if length_normalise else score))
  return sorted(out, key=lambda ts: -ts[1])


@pytest.fixture(scope="module")
def table():
  v, max_len, batch = 4, 3, 2
  rng = np.random.default_rng(0)
  return jnp.asarray(2.0 * rng.standard_normal((batch, (v + 1) ** (max_len + 1), v)), jnp.float32)


def _init(batch):
  return (jnp.arange(batch, dtype=jnp.int32), jnp.zeros((batch,), jnp.int32))


@pytest.mark.parametrize("length_normalise", [False, True])
def test_beam_search_with_a_beam_over_every_sequence_is_exhaustive_search(table, length_normalise):
  # V=4, length 3: 1 + 3 + 9 sequences end with END, 27 reach the limit: 40 in all.
  max_len, batch = 3, table.shape[0]
  search = jax.jit(lambda state: bs.beam_search(
      _table_step(table), state, batch, beam_size=40, start_id=START, end_id=END,
      max_len=max_len, pad_id=PAD, length_normalise=length_normalise))
  out = search(_init(batch))
  assert out.tokens.shape == (batch, 40, max_len) and out.scores.shape == (batch, 40)
  for item in range(batch):
    expected = _exhaustive(table, item, max_len, length_normalise)
    assert len(expected) == 40
    np.testing.assert_array_equal(np.asarray(out.tokens[item]), [t for t, _ in expected])
    np.testing.assert_allclose(out.scores[item], [s for _, s in expected], rtol=1e-5)
    lengths = [t.index(END) + 1 if END in t else max_len for t, _ in expected]
    np.testing.assert_array_equal(out.lengths[item], lengths)
  if length_normalise:
    np.testing.assert_allclose(out.scores, out.log_probs / out.lengths, rtol=1e-6)
  else:
    np.testing.assert_array_equal(out.scores, out.log_probs)


def test_empty_beam_slots_score_minus_inf_instead_of_copying_the_live_beam(table):
  # Beam 5, one step of 4 words: 4 hypotheses and an empty slot (-inf), not copies of
  # the live beam's words.
  out = bs.beam_search(_table_step(table), _init(2), 2, beam_size=5, start_id=START,
                       end_id=END, max_len=1, pad_id=PAD)
  assert np.isneginf(out.scores[:, 4]).all() and np.isfinite(out.scores[:, :4]).all()
  assert sorted(np.asarray(out.tokens[0, :4, 0]).tolist()) == [0, 1, 2, 3]


def test_beam_one_equals_greedy_search():
  v, max_len, batch = 6, 5, 3
  rng = np.random.default_rng(1)
  table = jnp.asarray(rng.standard_normal((batch, (v + 1) ** (max_len + 1), v)), jnp.float32)
  kwargs = dict(start_id=START, end_id=END, max_len=max_len, pad_id=PAD)
  greedy = bs.greedy_search(_table_step(table), _init(batch), batch, **kwargs)
  beam = bs.beam_search(_table_step(table), _init(batch), batch, beam_size=1, **kwargs)
  np.testing.assert_array_equal(greedy.tokens, beam.tokens[:, 0])
  np.testing.assert_allclose(greedy.log_probs, beam.log_probs[:, 0], rtol=1e-6)
  np.testing.assert_array_equal(greedy.lengths, beam.lengths[:, 0])
  # Greedy is the argmax at every step: check by hand for item 0.
  logp = np.asarray(jax.nn.log_softmax(table, axis=-1))
  code, fed, expected = 0, START, []
  for _ in range(max_len):
    code = code * (v + 1) + fed + 1
    fed = int(np.argmax(logp[0, code]))
    expected.append(fed)
    if fed == END:
      break
  assert np.asarray(greedy.tokens[0, :len(expected)]).tolist() == expected


def test_bad_arguments_fail_before_tracing():
  with pytest.raises(ValueError, match="beam_size=0"):
    bs.beam_search(None, None, 1, beam_size=0, start_id=1, end_id=2, max_len=3)
  with pytest.raises(ValueError, match="max_len=0"):
    bs.greedy_search(None, None, 1, start_id=1, end_id=2, max_len=0)
