"""The caption generators (research/models/cr.py; issue 17, Karpathy & Fei-Fei §3.2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.models import caption_rnn as cr

V, H, E, D = 11, 16, 8, 12
# Two captions: <start> words <end> then padding (Vocabulary.encode's layout), T = 7.
TOKENS = jnp.array([[1, 5, 6, 7, 2, 0, 0],
                    [1, 8, 9, 4, 10, 2, 0]], jnp.int32)


def _features(seed=0, batch=2):
  return jax.random.normal(jax.random.key(seed), (batch, D))


def _model(kind, **kwargs):
  return cr.get_generator(kind, V, hidden=H, embed=E, **kwargs)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, variables, inputs, tokens):
  return model.apply(variables, inputs, tokens)


@pytest.fixture(scope="module")
def built():
  """{kind: (model, variables)} on precomputed features."""
  out = {}
  for kind in cr.GENERATORS:
    model = _model(kind)
    out[kind] = model, model.init(jax.random.key(1), _features(), TOKENS)
  return out


def test_shapes_with_a_cnn_encoder_and_with_features():
  images = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.uint8)
  for kind in cr.GENERATORS:
    for encoder, inputs in ((cr.ConvEncoder(widths=(4, 8), features=D), images),
                            (None, jax.ShapeDtypeStruct((2, D), jnp.float32))):
      model = _model(kind, encoder=encoder)
      variables = jax.eval_shape(model.init, jax.random.key(1), inputs, TOKENS)
      logits, out = jax.eval_shape(model.apply, variables, inputs, TOKENS)
      assert logits.shape == (2, 6, V) and logits.dtype == jnp.float32
      assert out["image_features"].shape == (2, D) and out["hidden"].shape == (2, 6, H)
      assert ("encoder" in variables["params"]) == (encoder is not None)


def test_the_multimodal_rnn_is_the_papers_recurrence_with_the_image_bias_at_step_one(built):
  # §3.2 by hand: b_v = W_hi CNN(I); h_t = relu(W_hx x_t + W_hh h_{t-1} + b_h + 1(t=1) b_v);
  # y_t = W_oh h_t + b_o.
  model, variables = built["multimodal_rnn"]
  p = jax.tree.map(np.asarray, variables["params"])
  feats = np.asarray(_features())
  b_v = feats @ p["W_hi"]["kernel"]
  h = np.zeros((2, H))
  expected = []
  for t in range(TOKENS.shape[1] - 1):
    x = p["embedding"]["embedding"][np.asarray(TOKENS[:, t])]
    h = np.maximum(x @ p["W_hx"]["kernel"] + p["W_hx"]["bias"] + h @ p["W_hh"]
                   + (b_v if t == 0 else 0.0), 0.0)
    expected.append(h @ p["W_oh"]["kernel"] + p["W_oh"]["bias"])
  logits, _ = model.apply(variables, feats, TOKENS)
  np.testing.assert_allclose(logits, np.stack(expected, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(cr.GENERATORS))
def test_decoding_steps_reproduce_teacher_forcing(built, kind):
  model, variables = built[kind]
  logits, _ = _apply(model, variables, _features(), TOKENS)
  state = model.apply(variables, _features(), method="init_state")
  for t in range(TOKENS.shape[1] - 1):
    state, step_logits = model.apply(variables, state, TOKENS[:, t], method="step")
    np.testing.assert_allclose(step_logits, logits[:, t], rtol=1e-5, atol=1e-5)


def test_after_the_first_step_the_image_acts_only_through_h1(built):
  # Image B's logits at t >= 2 come from stepping the (image-free) recurrence from
  # h_1(B): nothing of the image is added after step 1.
  model, variables = built["multimodal_rnn"]
  logits_a, _ = model.apply(variables, _features(0), TOKENS)
  logits_b, out_b = model.apply(variables, _features(5), TOKENS)
  assert np.abs(logits_a - logits_b).min() > 0  # The image does change every step ...
  state = model.apply(variables, _features(5), method="init_state")
  state, _ = model.apply(variables, state, TOKENS[:, 0], method="step")
  np.testing.assert_array_equal(state[1], 0.0)  # ... the pending bias is spent ...
  np.testing.assert_allclose(state[0], out_b["hidden"][:, 0], rtol=1e-6)
  # ... and from h_1 on, a state holding only h_1 gives image B's logits.
  state = (out_b["hidden"][:, 0], jnp.zeros_like(state[1]))
  for t in range(1, TOKENS.shape[1] - 1):
    state, step_logits = model.apply(variables, state, TOKENS[:, t], method="step")
    np.testing.assert_allclose(step_logits, logits_b[:, t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(cr.GENERATORS))
def test_padding_changes_nothing(built, kind):
  model, variables = built[kind]
  loss, count = cr.caption_loss(_apply(model, variables, _features(), TOKENS)[0], TOKENS)
  assert count == 4 + 5  # Words and END: 3 + 1 and 4 + 1.
  # Other ids in the padded positions, and more padding columns: the same loss.
  pad = TOKENS == 0
  noise = jax.random.randint(jax.random.key(3), TOKENS.shape, 3, V)
  garbled = jnp.where(pad, noise, TOKENS)
  garbled_logits = _apply(model, variables, _features(), garbled)[0]
  valid = ~pad[:, 1:]
  np.testing.assert_allclose(garbled_logits[valid],
                             _apply(model, variables, _features(), TOKENS)[0][valid], rtol=1e-6)
  longer = jnp.pad(TOKENS, ((0, 0), (0, 3)))
  loss_longer, count_longer = cr.caption_loss(_apply(model, variables, _features(), longer)[0],
                                              longer)
  assert count_longer == count
  np.testing.assert_allclose(loss_longer, loss, rtol=1e-6)
  # The loss by hand: mean over the 9 targets of -log p(target).
  logp = jax.nn.log_softmax(_apply(model, variables, _features(), TOKENS)[0])
  targets = TOKENS[:, 1:]
  picked = jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(loss, -picked[targets != 0].mean(), rtol=1e-6)


def _fit(model, inputs, tokens, steps, lr=1e-2):
  variables = model.init(jax.random.key(2), inputs, tokens)
  opt = optax.adam(lr)
  opt_state = opt.init(variables)

  @jax.jit
  def train_step(variables, opt_state, key):
    def loss_fn(v):
      logits, _ = model.apply(v, inputs, tokens, train=True, rngs={"dropout": key})
      return cr.caption_loss(logits, tokens)[0]
    loss, grads = jax.value_and_grad(loss_fn)(variables)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(variables, updates), opt_state, loss

  losses = []
  for i in range(steps):
    variables, opt_state, loss = train_step(variables, opt_state, jax.random.key(i))
    losses.append(float(loss))
  return variables, losses


def test_a_few_adam_steps_on_scenes_lower_the_loss():
  images = jax.random.randint(jax.random.key(0), (2, 16, 16, 3), 0, 256).astype(jnp.uint8)
  model = _model("multimodal_rnn", dropout=0.1, encoder=cr.ConvEncoder(widths=(4, 8), features=D))
  _, losses = _fit(model, images, TOKENS, steps=12)
  assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("kind", sorted(cr.GENERATORS))
def test_trained_generators_decode_each_images_own_caption(kind):
  # Two images, two captions: after fitting, greedy and beam search write each
  # image's caption (so the image conditions the words), END included, then padding.
  model = _model(kind)
  variables, losses = _fit(model, _features(), TOKENS, steps=60)
  assert losses[-1] < 0.2, losses[-1]
  greedy = cr.decode(model, variables, _features(), beam_size=1, max_len=8)
  beam = cr.decode(model, variables, _features(), beam_size=3, max_len=8)
  expected = np.zeros((2, 8), np.int32)
  expected[:, :6] = np.asarray(TOKENS[:, 1:])
  assert greedy.tokens.shape == (2, 1, 8)
  np.testing.assert_array_equal(greedy.tokens[:, 0], expected)
  np.testing.assert_array_equal(beam.tokens[:, 0], expected)
  np.testing.assert_array_equal(beam.lengths[:, 0], [4, 5])
  assert beam.tokens.shape == (2, 3, 8) and (np.diff(beam.scores, axis=1) <= 0).all()


def test_bad_inputs_name_the_problem():
  model, feats = _model("multimodal_rnn"), _features()
  with pytest.raises(ValueError, match="tokens must be int"):
    model.init(jax.random.key(0), feats, TOKENS.astype(jnp.float32))
  with pytest.raises(ValueError, match="T >= 2"):
    model.init(jax.random.key(0), feats, TOKENS[:, :1])
  with pytest.raises(ValueError, match="2 images but 1 token rows"):
    model.init(jax.random.key(0), feats, TOKENS[:1])
  with pytest.raises(ValueError, match="takes images"):
    _model("lstm", encoder=cr.ConvEncoder()).init(jax.random.key(0), feats, TOKENS)
  with pytest.raises(ValueError, match="Unknown caption generator 'gru'"):
    cr.get_generator("gru", V)


def test_the_generators_token_ids_are_the_vocabularys():
  # Models may not import data (layer order), so caption_rnn holds the ids as constants.
  from research.data import vocab
  v = vocab.Vocabulary.build(["a red cube"], min_count=1)
  assert v.encode("a", 4).tolist()[:3] == [cr.START_ID, v.encode("a", 4)[1], cr.END_ID]
  assert vocab.SPECIALS[cr.PAD_ID] == "<pad>" and v.encode("a", 4)[3] == cr.PAD_ID
