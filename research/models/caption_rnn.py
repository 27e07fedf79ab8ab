"""Caption generators: Karpathy & Fei-Fei's multimodal RNN and an LSTM variant.

Karpathy & Fei-Fei 2015, "Deep Visual-Semantic Alignments for Generating Image
Descriptions", §3.2 (the multimodal RNN):

  b_v = W_hi [CNN_θc(I)]
  h_t = f(W_hx x_t + W_hh h_{t-1} + b_h + 1(t = 1) ⊙ b_v)
  y_t = softmax(W_oh h_t + b_o)

x_1 is the START vector, x_t (t > 1) the embedding of word t - 1; the network is
trained to predict word t (and END after the last word); the image enters as a
bias at the first step only ("we found that ... it works better" than at every
step); f = ReLU, hidden size 512. §3.3 (Optimization): "dropout regularization
in all layers except in the recurrent layers" (here: on the word vectors and on
h_t before W_oh), gradients clipped elementwise at 5, RMSprop for the generator
(the training setup is the experiment's).

The LSTM variant (the issue's) follows Vinyals, Toshev, Bengio & Erhan 2015,
"Show and Tell", §3.1 (eqs. 10-12): the image, projected to the word-vector
size, is the LSTM's input at a step before START (x_{-1} = W_e CNN(I)), and its
prediction there is not trained; the words follow as in the RNN. That is, the
image is an initial input, not a first-step bias.

Both generators share one interface:

  model.apply(variables, image, tokens, train=...) -> (logits, out)
    image: uint8 [B, H, W, 3] images when the model has an `encoder` (a Flax
      module images -> float [B, D]: `ConvEncoder` for the scenes, or any CNN),
      else precomputed features float [B, D];
    tokens: int32 [B, T] as research/data/vocab.py's Vocabulary.encode gives
      (<start> words <end>, then 0-padding);
    logits: float [B, T-1, V], position t predicting tokens[:, t + 1]
      (teacher forcing); out: {"image_features" [B, D], "hidden" [B, T-1, H]}.
  model.apply(variables, image, method="init_state") -> state (pytree, leaves [B, ...])
  model.apply(variables, state, token int32 [B], method="step") -> (state, logits [B, V])

`caption_loss` is the masked cross-entropy (padding ignored) and `decode`
runs greedy or beam search (research/ops/beam_search.py) on `step`.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from research.ops import beam_search as beam_ops

PAD_ID = 0  # research/data/vocab.py's ids: 0 <pad>, 1 <start>, 2 <end>, 3 <unk>.
START_ID = 1
END_ID = 2


class ConvEncoder(nn.Module):
  """A small CNN for the captioned scenes: uint8 [B, H, W, 3] -> float32 [B, features].

  Conv 3x3 + ReLU + 2x2 max-pool per width, global average pool, a ReLU
  dense layer (the paper's CNN is VGG-16's fc7, 4096-d; a scene needs less).
  """
  widths: tuple = (32, 64, 128)
  features: int = 256

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    del train  # No dropout or batch norm: the same in training and evaluation.
    x = images.astype(jnp.float32) / 255.0 - 0.5
    for i, width in enumerate(self.widths):
      x = nn.relu(nn.Conv(width, (3, 3), name=f"conv{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return nn.relu(nn.Dense(self.features, name="fc")(x.mean(axis=(1, 2))))


def _check_inputs(image, tokens, has_encoder: bool):
  """Shape checks before any work; one line naming the problem and the fix."""
  if has_encoder and image.ndim != 4:
    raise ValueError(f"The generator's encoder takes images [B, H, W, C]; got shape "
                     f"{tuple(image.shape)}. Pass images, or build the model with encoder=None "
                     "for precomputed features [B, D].")
  if not has_encoder and image.ndim != 2:
    raise ValueError(f"A generator without an encoder takes precomputed features [B, D]; got "
                     f"shape {tuple(image.shape)}. Pass features, or give it an encoder.")
  if tokens is None:
    return
  if tokens.ndim != 2 or tokens.shape[1] < 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f"tokens must be int [B, T] with T >= 2 (<start> ... <end>); got "
                     f"{tokens.dtype} {tuple(tokens.shape)}.")
  if tokens.shape[0] != image.shape[0]:
    raise ValueError(f"{image.shape[0]} images but {tokens.shape[0]} token rows; give one "
                     "caption per image (repeat the image for several captions).")


class _Generator(nn.Module):
  """What both generators share: word vectors, the output layer, the image features.

  Subclasses define `_image_state(features) -> state` and
  `_recur(state, pre) -> (state, h)`, `pre` being the input projection of the
  word vector ([B, G]: W_hx x_t + b_h, or the LSTM's four gates).
  """
  vocab_size: int
  hidden: int = 512
  embed: int = 512
  dropout: float = 0.0
  encoder: nn.Module | None = None

  def _setup_shared(self, input_size: int):
    self.embedding = nn.Embed(self.vocab_size, self.embed, name="embedding")
    self.input_proj = nn.Dense(input_size, name="W_hx")  # Its bias is b_h.
    self.output = nn.Dense(self.vocab_size, name="W_oh")  # Its bias is b_o.
    self.drop = nn.Dropout(self.dropout)

  def image_features(self, image, *, train: bool = False):
    """float [B, D]: the encoder's output, or the precomputed features as given."""
    if self.encoder is None:
      return image.astype(jnp.float32)
    return self.encoder(image, train=train)

  def init_state(self, image):
    """The state before START is fed: pytree with leaves [B, ...]."""
    _check_inputs(image, None, self.encoder is not None)
    return self._image_state(self.image_features(image))

  def step(self, state, token):
    """One decoding step: (state, int [B]) -> (state, logits float32 [B, V])."""
    pre = self.input_proj(self.embedding(token))
    state, h = self._recur(state, pre)
    return state, self.output(h)

  def __call__(self, image, tokens, *, train: bool = False):
    _check_inputs(image, tokens, self.encoder is not None)
    features = self.image_features(image, train=train)
    state = self._image_state(features)
    words = self.drop(self.embedding(tokens[:, :-1]), deterministic=not train)
    pre = self.input_proj(words)  # [B, T-1, G]: the input part of every step at once.
    # Only the recurrence is sequential: a scan of the pure update over time.
    _, hidden = jax.lax.scan(lambda s, p: self._recur(s, p), state, pre.swapaxes(0, 1))
    hidden = hidden.swapaxes(0, 1)
    logits = self.output(self.drop(hidden, deterministic=not train))
    return logits, {"image_features": features, "hidden": hidden}


class MultimodalRNN(_Generator):
  """Karpathy & Fei-Fei's multimodal RNN (§3.2): ReLU recurrence, the image as a
  bias at the first step only. State: (h [B, H], pending image bias [B, H]),
  the bias zeroed once used. See the module docstring for the interface."""

  def setup(self):
    self._setup_shared(self.hidden)
    self.image_bias = nn.Dense(self.hidden, use_bias=False, name="W_hi")
    # Orthogonal W_hh (singular values 1): the recurrence neither inflates nor shrinks h at init.
    self.w_hh = self.param("W_hh", nn.initializers.orthogonal(), (self.hidden, self.hidden))

  def _image_state(self, features):
    b_v = self.image_bias(features)
    return (jnp.zeros_like(b_v), b_v)

  def _recur(self, state, pre):
    h, pending = state
    h = nn.relu(pre + h @ self.w_hh + pending)
    return (h, jnp.zeros_like(pending)), h


class LSTMGenerator(_Generator):
  """An LSTM generator, the image as its first input (Show and Tell §3.1): state
  (c, h) [B, H] each, after the image step. See the module docstring."""

  def setup(self):
    self._setup_shared(4 * self.hidden)
    self.image_embed = nn.Dense(self.embed, name="W_e")  # x_{-1} = W_e CNN(I).
    self.w_hh = self.param("W_hh", nn.initializers.orthogonal(), (self.hidden, 4 * self.hidden))

  def _image_state(self, features):
    zeros = jnp.zeros((features.shape[0], self.hidden), jnp.float32)
    state, _ = self._recur((zeros, zeros), self.input_proj(self.image_embed(features)))
    return state

  def _recur(self, state, pre):
    c, h = state
    i, f, g, o = jnp.split(pre + h @ self.w_hh, 4, axis=-1)
    c = nn.sigmoid(f + 1.0) * c + nn.sigmoid(i) * jnp.tanh(g)  # +1: forget little at first.
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


GENERATORS = {"multimodal_rnn": MultimodalRNN, "lstm": LSTMGenerator}


def get_generator(name: str, vocab_size: int, **kwargs) -> _Generator:
  """Builds the generator registered as `name` ("multimodal_rnn" or "lstm").

  Raises:
    ValueError: unknown name.
  """
  if name not in GENERATORS:
    raise ValueError(f"Unknown caption generator {name!r}; known: {', '.join(GENERATORS)}.")
  return GENERATORS[name](vocab_size=vocab_size, **kwargs)


def caption_loss(logits, tokens):
  """Masked next-word cross-entropy: padding (id 0) targets are ignored.

  Args:
    logits: float [B, T-1, V], the generator's output for tokens.
    tokens: int [B, T], <start> words <end> then 0-padding.

  Returns:
    (mean over target tokens, nats, float32 scalar; number of target tokens,
    float32 scalar: words + END per caption). Sum-and-count, so the means of
    batches combine exactly.
  """
  targets = tokens[:, 1:]
  mask = (targets != PAD_ID).astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  count = mask.sum()
  return (losses * mask).sum() / jnp.maximum(count, 1.0), count


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "max_len",
                                             "length_normalise"))
def decode(model: _Generator, variables, image, *, beam_size: int = 7, max_len: int = 20,
           length_normalise: bool = False) -> beam_ops.Decoded:
  """Captions for a batch: beam search (greedy when beam_size is 1) on `model.step`.

  Args:
    model, variables: a generator and its variables.
    image: as the model takes (images or features), batch B.
    beam_size: static int (neuraltalk's default 7; 1: greedy).
    max_len: static int, the most tokens generated, END included.
    length_normalise: rank by mean log-probability (off in the paper).

  Returns:
    beam_search's Decoded: tokens int32 [B, K, max_len] (no START; END, then
    padding), scores [B, K], best first; K = beam_size. With beam_size 1 it runs
    greedy_search (the same result, tests/test_beam_search.py; no top-k over the
    vocabulary) and adds the K = 1 axis.
  """
  state = model.apply(variables, image, method="init_state")
  step = lambda s, t: model.apply(variables, s, t, method="step")
  kwargs = dict(start_id=START_ID, end_id=END_ID, max_len=max_len, pad_id=PAD_ID)
  if beam_size == 1:
    greedy = beam_ops.greedy_search(step, state, image.shape[0], **kwargs)
    return beam_ops.Decoded(*(x[:, None] for x in greedy))
  return beam_ops.beam_search(step, state, image.shape[0], beam_size=beam_size,
                              length_normalise=length_normalise, **kwargs)
