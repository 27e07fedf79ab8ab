"""Caption generation: Karpathy & Fei-Fei 2015's multimodal RNN (or an LSTM) on full images.

Training (§3.2, §3.3): teacher forcing, the masked next-word cross-entropy
(`caption_rnn.caption_loss`: padding ignored, END predicted after the last
word) of one caption per image per step (research/data/caption_inputs.py
draws which from (seed, step, row)); gradients clipped elementwise at
`objective.grad_clip` (§3.3: "clip gradients elementwise at 5 (important)")
before config.optimizer (the paper's generator uses RMSprop: optimizer.name
"rmsprop", its decay optimizer.b2). Dropout (`objective.dropout`) on the word
vectors and on h_t, none in the recurrence (§3.3).

Evaluation of a split (`<split>/...`): every image's caption decoded by beam
search (`objective.beam_size`; 1 is greedy; at most `objective.decode_len`
tokens, END included) and scored against all of the image's reference
captions (raw text) with BLEU-1..4 and CIDEr-D (research/train/caption_metrics.py,
pycocoevalcap's scorers: `bleu1`..`bleu4`, `cider`), and the perplexity of the
split's captions, exp of the mean cross-entropy over all their target tokens
(`loss`, `perplexity`, teacher-forced, every caption of every image).

Keys, in config.objective (`default_objective()`): generator
("multimodal_rnn" | "lstm"), hidden, embed, dropout, encoder ("conv": the
scenes' `ConvEncoder` with encoder_widths and encoder_features; or a
registered classifier such as "vgg16", whose `encoder_feature` output, e.g.
"fc7", is the image vector, its input standardised with the dataset's
statistics), min_count (the vocabulary's, from the training split), max_len
(tokens per training caption with <start> and <end>; longer ones are cut,
counted in the log), image_size (0: as stored), beam_size, decode_len,
grad_clip (0: none). config.freeze and config.init_from as for the
classifiers (research/train/transfer.py): the encoder's parameters are named
encoder/... (encoder/net/conv1_1/... for a registered classifier).

The vocabulary is written to <workdir>/vocab.json by a new run and checked
by a resumed one (`vocab.VocabularyMismatch`, one line, before any work):
the checkpoints' word ids mean that vocabulary's words.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research import models
from research.data import caption_inputs, datasets, vocab
from research.errors import require
from research.train import caption_metrics
from research.models import caption_rnn
from research.models import summary as summary_lib
from research.train import optim, precision, steps, transfer
from research.train.objectives import base, classification

VOCAB_FILE = "vocab.json"


def default_objective() -> ml_collections.ConfigDict:
  """config.objective for caption generation (the scenes' scale; see the module docstring)."""
  o = ml_collections.ConfigDict()
  o.name = "caption_generation"
  o.generator = "multimodal_rnn"
  o.hidden = 256
  o.embed = 256
  o.dropout = 0.5          # §3.3; neuraltalk's drop_prob_encoder/decoder 0.5.
  o.encoder = "conv"
  o.encoder_widths = (32, 64, 128)
  o.encoder_features = 256
  o.encoder_feature = "fc7"  # A registered classifier's feature used as the image vector.
  o.min_count = 5          # §4: "words that occur at least 5 times" (the paper's threshold).
  o.max_len = 20
  o.image_size = 0
  o.beam_size = 7          # neuraltalk's default beam.
  o.decode_len = 19        # Tokens generated at most, END included (max_len minus <start>).
  o.grad_clip = 5.0        # §3.3, elementwise.
  return o


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops impossible generator, vocabulary and decoding settings, naming the key."""
  o = config.objective
  for key in default_objective():
    require(key in o, f"objective.{key}", None,
            "the caption_generation objective needs it (default_objective()).")
  optim.validate_config(config.optimizer)
  require(o.generator in caption_rnn.GENERATORS, "objective.generator", o.generator,
          f"choose one of {sorted(caption_rnn.GENERATORS)}.")
  for key in ("hidden", "embed", "min_count", "beam_size", "decode_len"):
    require(o[key] >= 1, f"objective.{key}", o[key], "must be >= 1.")
  require(0 <= o.dropout < 1, "objective.dropout", o.dropout, "must be in [0, 1).")
  require(o.max_len >= 3, "objective.max_len", o.max_len,
          "must be >= 3 (<start>, a word, <end>).")
  require(o.image_size >= 0, "objective.image_size", o.image_size, "must be >= 0 (0: as stored).")
  require(o.grad_clip >= 0, "objective.grad_clip", o.grad_clip, "must be >= 0 (0: no clipping).")
  require(o.encoder == "conv" or o.encoder in models.registry(), "objective.encoder", o.encoder,
          "use 'conv' (ConvEncoder) or a registered model, e.g. 'vgg16'.")
  if o.encoder != "conv":
    datasets.normalization(config.data.name, config.data.mean, config.data.std)  # Raises.


class ClassifierEncoder(nn.Module):
  """A registered classifier as an image encoder: uint8 [B, H, W, 3] -> float32
  [B, D], its `feature` output (e.g. VGG-16's fc7, 4096-d, the paper's §3.1
  image vector), flattened; the input standardised with (mean, std)."""
  net: nn.Module
  feature: str
  mean: tuple
  std: tuple

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    x = steps.standardize(steps.to_unit_range(images), self.mean, self.std)
    _, features = self.net(x, train=train)
    if self.feature not in features:
      raise ValueError(f"objective.encoder_feature={self.feature!r}: the encoder's outputs are "
                       f"{sorted(features)}; pick one of them.")
    y = features[self.feature]
    return y.reshape(y.shape[0], -1)


def build_encoder(config) -> nn.Module:
  """The image encoder of config.objective (see the module docstring)."""
  o = config.objective
  if o.encoder == "conv":
    return caption_rnn.ConvEncoder(widths=tuple(o.encoder_widths), features=o.encoder_features)
  mean, std = datasets.normalization(config.data.name, config.data.mean, config.data.std)
  net = models.get_model(o.encoder, **config.model.kwargs.to_dict())
  return ClassifierEncoder(net, o.encoder_feature, tuple(mean), tuple(std))


def build_generator(config, vocab_size: int):
  """(the generator with its encoder: images -> logits, the same without encoder:
  features -> logits; both read the same parameters, the encoder's under "encoder")."""
  o = config.objective
  model = caption_rnn.get_generator(o.generator, vocab_size, hidden=o.hidden, embed=o.embed,
                                    dropout=o.dropout, encoder=build_encoder(config))
  return model, model.clone(encoder=None)


def _vocab_path(workdir: str) -> str:
  return os.path.join(workdir, VOCAB_FILE)


class Objective(base.Objective):
  """config.objective's generator on config.data's captions; state: steps.TrainState."""

  progress_keys = ("loss",)
  has_eval_split = True

  @classmethod
  def open_inputs(cls, config, train_data=None):
    """Caption splits (caption_inputs.CaptionInputSplit); the vocabulary is the
    training split's. The training split keeps the eval splits (`eval_splits`)
    for their reference captions. A caller's train_data that carries its own
    `eval_splits` ({"test": CaptionInputSplit, ...}) is evaluated on those
    (experiments/caption_regions.py: the test images' regions)."""
    o, data = config.objective, config.data
    kwargs = dict(max_len=o.max_len, image_size=o.image_size)
    train = train_data if train_data is not None else caption_inputs.open_caption_inputs(
        data, data.train_split, min_count=o.min_count, **kwargs)
    require(isinstance(train, caption_inputs.CaptionInputSplit), "data.name", data.name,
            "the caption_generation objective reads captions datasets (caption_scenes, "
            "coco_captions).")
    evals = dict(getattr(train, "eval_splits", None) or {
        "test": caption_inputs.open_caption_inputs(data, data.eval_split, train.vocabulary,
                                                   **kwargs)})
    if config.eval_train_examples:
      evals["train_eval"] = train.take(config.eval_train_examples)
    train.eval_splits = evals
    return train, evals

  def __init__(self, config, train_data, total_steps, workdir):
    super().__init__(config, train_data, total_steps, workdir)
    self.vocabulary = train_data.vocabulary
    path = _vocab_path(workdir)
    if os.path.exists(path):  # A resumed run: its word ids must mean the same words.
      with open(path) as f:
        vocab.Vocabulary.from_json(f.read()).check_same(self.vocabulary, path)
    self.model, self.head = build_generator(config, len(self.vocabulary))
    self.image_shape = tuple(train_data.image_shape)
    tx, self.schedule = optim.make_optimizer(config.optimizer, total_steps)
    clip = config.objective.grad_clip
    tx = optax.chain(optax.clip(clip), tx) if clip else tx
    self.tx = transfer.with_frozen(tx, config.freeze)  # Frozen parameters: zero updates.
    # Reference captions (raw text) by image id, for every split evaluated.
    self._references = {}
    for split in (train_data, *getattr(train_data, "eval_splits", {}).values()):
      for i in range(len(split.split)):
        image_id, texts = split.split.annotation(i).image_id, split.split.captions(i)
        if self._references.setdefault(image_id, texts) != texts:
          raise ValueError(f"image/id {image_id} names two images with other captions "
                           f"({split.split.what} example {i}); the evaluation looks references "
                           "up by image/id: give every image of the dataset its own id.")

  def summary(self):
    tokens = jnp.zeros((1, self.config.objective.max_len), jnp.int32)
    s = summary_lib.summarize(self.model, self.image_shape, tokens=tokens, train=False)
    return (f"{s.table()}\n\nVocabulary: {len(self.vocabulary)} tokens (words seen >= "
            f"{self.vocabulary.min_count} times in training).", s.total_params)

  def init_state(self):
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(self.config.seed))
    tokens = jnp.zeros((1, self.config.objective.max_len), jnp.int32)
    params = self.model.init({"params": init_rng}, jnp.zeros((1, *self.image_shape), jnp.uint8),
                             tokens)["params"]
    return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                            opt_state=self.tx.init(params), rng=train_rng)

  def start(self, state):
    """A new run: writes the vocabulary beside its checkpoints, and copies
    config.init_from's parameters (classification's rule: same names)."""
    if jax.process_index() == 0:
      with open(_vocab_path(self.workdir), "w") as f:
        f.write(self.vocabulary.to_json())
    return classification.Objective.start(self, state)

  def train_extras(self, step: int) -> dict[str, float]:
    return {"learning_rate": float(self.schedule(step))}

  def train_step(self, state, batch):
    # Step s (state.step = s - 1 before it) draws its dropout from fold_in(rng, s).
    key = jax.random.fold_in(state.rng, state.step + 1)

    def loss_fn(params):
      logits, _ = precision.apply(self.model, {"params": params}, batch["image"],
                                  tokens=batch["tokens"], train=True, rngs={"dropout": key},
                                  compute_dtype=self.config.compute_dtype)
      loss, count = caption_rnn.caption_loss(logits, batch["tokens"])
      return loss, count

    (loss, count), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    return state, {"loss": loss, "tokens": count}

  def image_features(self, params, images):
    """float32 [B, D]: the encoder's image vectors (e.g. for the nearest-neighbour baseline)."""
    return self.model.apply({"params": params}, images, method="image_features")

  def eval_step(self, state, batch):
    """Decoded captions of the batch's images, and the cross-entropy sums of all their captions."""
    o = self.config.objective
    features = self.image_features(state.params, batch["image"])
    tokens = batch["tokens"] * batch["mask"].astype(jnp.int32)[:, None, None]
    b, c, t = tokens.shape
    logits, _ = self.head.apply({"params": state.params}, jnp.repeat(features, c, axis=0),
                                tokens.reshape(b * c, t))
    loss, count = caption_rnn.caption_loss(logits, tokens.reshape(b * c, t))
    decoded = caption_rnn.decode(self.head, {"params": state.params}, features,
                                 beam_size=o.beam_size, max_len=o.decode_len)
    return {"tokens": decoded.tokens[:, 0], "image_id": batch["image_id"], "mask": batch["mask"],
            "loss_sum": loss * count, "count": count}

  def eval_accumulate(self, sums, out):
    """The batches' outputs, fetched to the host in order (BLEU and CIDEr are not sums)."""
    return (sums or []) + [jax.device_get(out)]

  def eval_metrics(self, sums):
    ids, candidates = [], []
    for out in sums:
      for r in np.flatnonzero(np.asarray(out["mask"]) > 0):
        ids.append(int(out["image_id"][r]))
        candidates.append(self.vocabulary.decode(out["tokens"][r]))
    references = [self._references[i] for i in ids]
    scores = caption_metrics.caption_scores(references, candidates)
    loss = sum(float(o["loss_sum"]) for o in sums) / max(sum(float(o["count"]) for o in sums), 1.0)
    self.last_captions = dict(zip(ids, candidates))
    return {**scores, "loss": loss, "perplexity": float(np.exp(loss)),
            "mean_length": float(np.mean([len(c.split()) for c in candidates]))}


def decoded_captions(objective: Objective, params, split: caption_inputs.CaptionInputSplit,
                     batch_size: int, *, beam_size: int | None = None,
                     length_normalise: bool = False) -> list[str]:
  """The generated caption of every image of `split`, in order.

  beam_size: default objective.beam_size (1: greedy); length_normalise: rank
  the beam by mean instead of summed log-probability (off in the paper).
  """
  o = objective.config.objective

  @jax.jit
  def generate(params, images):
    features = objective.image_features(params, images)
    return caption_rnn.decode(objective.head, {"params": params}, features,
                              beam_size=beam_size or o.beam_size, max_len=o.decode_len,
                              length_normalise=length_normalise).tokens[:, 0]

  out = []
  for batch in split.eval_batches(batch_size):
    tokens = np.asarray(jax.device_get(generate(params, batch["image"])))
    out += [objective.vocabulary.decode(tokens[r]) for r in np.flatnonzero(batch["mask"] > 0)]
  return out
