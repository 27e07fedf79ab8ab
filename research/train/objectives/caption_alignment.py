"""Karpathy & Fei-Fei's alignment model trained on its ranking objective (issue 17).

"Deep Visual-Semantic Alignments for Generating Image Descriptions" (CVPR
2015), §3.1: images (regions, §3.1.1) and sentences (a BRNN's words, §3.1.2)
in one space, the image-sentence score eq. 8 (each word's best region), and
the structured max-margin objective eq. 9 over a batch of true pairs: each
image's sentence above the batch's other sentences and each sentence's image
above the other images (research/ops/captioning.py). The model is
research/models/captioning.py's AlignmentModel (config.model.name
"alignment"); `model.kwargs.whole_image_only=True` is the paper's baseline
that embeds the whole image alone.

Inputs (research/data/alignment_inputs.py): a captions split (config.data.name,
caption_scenes or a prepared coco_captions), the vocabulary of the training
split's captions (words seen >= objective.min_count times; saved to
<workdir>/vocab.json and checked on resume: vocab.VocabularyMismatch), and per
image objective.num_regions regions: "detector" (the whole image and the top
num_regions - 1 detections of the Faster R-CNN run in
objective.detector_workdir, cached in objective.regions_cache:
research/train/caption_regions.py) or "ground_truth" (the whole image and the
objects' boxes). One sentence per image per batch, drawn by (seed, step, row);
no image twice in a batch.

Keys, in config.objective: regions, detector_workdir, regions_cache,
num_regions (20: "the top 19 detected locations in addition to the whole
image", §3.1.1), init_from_detector (copy the detector's convs, fc6 and fc7
into the region CNN, as the paper's CNN is a detection R-CNN's), max_len,
min_count, margin (1 in eq. 9), reduction ("sum" as eq. 9, or "mean"),
captions_per_image (5 at test) and sentence_chunk (sentences scored at once
in the retrieval evaluation).

Evaluation (config.data.eval_split, and eval_train_examples training images):
the paper's retrieval protocol (§4.1, Table 1): every image against every
sentence of the split (captions_per_image each), images and sentences
embedded separately (AlignmentModel.embed_image / embed_sentence) and scored
with eq. 8; `<split>/image_annotation/R@1`, `R@5`, `R@10` (percent of images
whose first own sentence ranks within K) and `median_rank`, and the same under
`<split>/image_search/` (sentence -> image), plus `<split>/loss` (eq. 9 on the
image-sentence diagonal pairs, per image, with the first sentence of each).
"""

import functools
import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research import models
from research.data import alignment_inputs, captions, datasets, vocab
from research.errors import require
from research.models import captioning as caption_models
from research.models import summary as summary_lib
from research.ops import captioning as caption_ops
from research.train import caption_regions, checkpoint, optim, precision, steps, transfer
from research.train.objectives import base

VOCAB_FILE = "vocab.json"
REGION_SOURCES = ("detector", "ground_truth")
# The detector's layers that become the region CNN (models.captioning.from_detector).
DETECTOR_LAYERS = "^image_encoder/(convs|fc6|fc7)/"


def default_objective() -> ml_collections.ConfigDict:
  o = ml_collections.ConfigDict()
  o.name = "caption_alignment"
  o.regions = "detector"
  o.detector_workdir = ""     # A Faster R-CNN run (experiments/faster_rcnn.py).
  o.regions_cache = ""        # Folder of the cached regions ("": not cached).
  o.num_regions = 20          # §3.1.1: the top 19 detections + the whole image.
  o.init_from_detector = True
  o.max_len = 24              # <start> + 22 words + <end>.
  o.min_count = 1
  o.margin = 1.0              # Eq. 9.
  o.reduction = "sum"         # Eq. 9 sums over the batch.
  o.captions_per_image = 5
  o.sentence_chunk = 200
  return o


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops impossible settings before any work, naming the key."""
  o = config.objective
  for key in default_objective():
    require(key in o, f"objective.{key}", None,
            "the caption_alignment objective needs it (caption_alignment.default_objective()).")
  optim.validate_config(config.optimizer)
  datasets.normalization(config.data.name, config.data.mean, config.data.std)  # Raises.
  require(config.model.name == "alignment", "model.name", config.model.name,
          "the caption_alignment objective trains the 'alignment' model.")
  require(o.regions in REGION_SOURCES, "objective.regions", o.regions,
          f"choose one of {REGION_SOURCES}.")
  if o.regions == "detector" or o.init_from_detector:
    require(bool(o.detector_workdir), "objective.detector_workdir", o.detector_workdir,
            "give the workdir of a Faster R-CNN run (python launch.py "
            "--config=experiments/faster_rcnn.py --workdir=DIR), or set objective.regions="
            "'ground_truth' and objective.init_from_detector=False.")
    caption_regions.check_detector(o.detector_workdir)
  require(o.num_regions >= 1, "objective.num_regions", o.num_regions,
          "must be >= 1 (the whole image).")
  require(o.max_len >= 3, "objective.max_len", o.max_len, "must be >= 3 (<start>, a word, <end>).")
  require(o.min_count >= 1, "objective.min_count", o.min_count, "must be >= 1.")
  require(o.margin > 0, "objective.margin", o.margin, "must be > 0.")
  require(o.reduction in ("sum", "mean"), "objective.reduction", o.reduction,
          "choose 'sum' (eq. 9) or 'mean'.")
  require(o.captions_per_image >= 1, "objective.captions_per_image", o.captions_per_image,
          "must be >= 1.")
  require(o.sentence_chunk >= 1, "objective.sentence_chunk", o.sentence_chunk, "must be >= 1.")
  require(config.batch_size >= 2, "batch_size", config.batch_size,
          "the ranking loss needs at least 2 pairs per batch (the others are the negatives).")


def split_regions(config, split: captions.CaptionSplit, split_name: str):
  """(regions float32 [N, R, 4], region_mask [N, R]) of a split, as config.objective says."""
  o = config.objective
  if o.regions == "ground_truth":
    return alignment_inputs.ground_truth_regions(split, o.num_regions)
  cache = (caption_regions.cache_path(o.regions_cache, config.data.name, split_name,
                                      o.num_regions) if o.regions_cache else "")
  if not cache:
    logging.warning("objective.regions_cache is empty: the regions of %s are not cached.",
                    split.what)
  return caption_regions.detector_regions(split, o.detector_workdir, cache or os.devnull,
                                          o.num_regions)


def open_split(config, split_name: str, vocabulary=None):
  """(AlignmentInputSplit of config.data's split_name, its vocabulary: the given
  one, or built from this split's captions)."""
  o, data = config.objective, config.data
  split = captions.open_captions(data.name, split_name, data.data_dir, download=data.download)
  if vocabulary is None:
    vocabulary = captions.build_vocabulary(split, o.min_count)
  regions, mask = split_regions(config, split, split_name)
  return alignment_inputs.AlignmentInputSplit(split, vocabulary, o.max_len, regions, mask,
                                              o.captions_per_image), vocabulary


class Objective(base.Objective):
  """config.model ("alignment") on config.data's captions; state: steps.TrainState."""

  progress_keys = ("loss", "batch_r1")
  has_eval_split = True

  @classmethod
  def open_inputs(cls, config, train_data=None):
    train = train_data
    if train is None:
      train, _ = open_split(config, config.data.train_split)
    require(isinstance(train, alignment_inputs.AlignmentInputSplit), "data.name",
            config.data.name, "the caption_alignment objective reads a captions dataset.")
    test, _ = open_split(config, config.data.eval_split, train.vocabulary)
    evals = {"test": test}
    if config.eval_train_examples:
      evals["train_eval"] = train.take(config.eval_train_examples)
    return train, evals

  def __init__(self, config, train_data, total_steps, workdir):
    super().__init__(config, train_data, total_steps, workdir)
    self.vocabulary = train_data.vocabulary
    check_vocabulary(self.vocabulary, workdir, write=jax.process_index() == 0)
    kwargs = {**config.model.kwargs.to_dict(), "vocab_size": len(self.vocabulary)}
    self.model = models.get_model(config.model.name, **kwargs)
    self.image_shape = tuple(train_data.image_shape)
    self.num_regions = train_data.num_regions
    tx, self.schedule = optim.make_optimizer(config.optimizer, total_steps)
    self.tx = transfer.with_frozen(tx, config.freeze)
    self.norm = datasets.normalization(config.data.name, config.data.mean, config.data.std)
    self._scores = jax.jit(functools.partial(caption_ops.alignment_scores,
                                             sentence_chunk=config.objective.sentence_chunk))

  def summary(self):
    summary = summary_lib.summarize(self.model, self.image_shape, train=False)
    logging.info("Model %s: %s parameters.", self.config.model.name, f"{summary.total_params:,}")
    return summary.table(), summary.total_params

  def _pixels(self, images):
    return steps.standardize(steps.to_unit_range(images), *self.norm)

  def init_state(self):
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(self.config.seed))
    b, r, t = 1, self.num_regions, self.config.objective.max_len
    params = self.model.init(init_rng, jnp.zeros((b, *self.image_shape)),
                             jnp.ones((b, t), jnp.int32), jnp.zeros((b, r, 4)),
                             jnp.ones((b, r)))["params"]
    return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                            opt_state=self.tx.init(params), rng=train_rng)

  def start(self, state):
    """A new run: the region CNN from the detector (§3.1.1), when configured."""
    o = self.config.objective
    if not o.init_from_detector:
      return state
    _, source = checkpoint.load_arrays(o.detector_workdir)
    params, copied = transfer.copy_matching(
        jax.device_get(state.params), caption_models.from_detector(source["params"]),
        DETECTOR_LAYERS)
    sharding = jax.tree.leaves(state)[0].sharding
    params = jax.device_put(params, sharding)
    opt_state = jax.jit(self.tx.init, out_shardings=sharding)(params)
    logging.info("Region CNN from %s: %d arrays (%s ...).", o.detector_workdir, len(copied),
                 ", ".join(copied[:3]))
    return state.replace(params=params, opt_state=opt_state)

  def _apply(self, params, *args, **kwargs):
    return precision.apply(self.model, {"params": params}, *args,
                           compute_dtype=self.config.compute_dtype, **kwargs)

  def train_step(self, state, batch):
    o = self.config.objective
    x = self._pixels(batch["image"])

    def loss_fn(params):
      scores, _ = self._apply(params, x, tokens=batch["tokens"], regions=batch["regions"],
                              region_mask=batch["region_mask"], train=True)
      loss = caption_ops.ranking_loss(scores, o.margin, o.reduction)
      # Images whose own sentence scores highest of the batch's (a training-set R@1).
      r1 = jnp.mean(jnp.argmax(scores, axis=1) == jnp.arange(scores.shape[0]))
      return loss, {"batch_r1": r1, "true_score": jnp.mean(jnp.diagonal(scores))}

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    return state, {"loss": loss, **metrics}

  def train_extras(self, step):
    return {"learning_rate": float(self.schedule(step - 1))}

  def eval_step(self, state, batch):
    """The batch's image and sentence embeddings (scored on the host side of the split)."""
    return embed_batch(self.model, state.params, batch, self.norm, self.config.compute_dtype)

  def eval_accumulate(self, sums, out):
    """The batches' embeddings, fetched to the host in order (ranks are not sums)."""
    return (sums or []) + [jax.device_get(out)]

  def eval_metrics(self, sums):
    return retrieval(sums, self._scores, self.config.objective)


def embed_batch(model, params, batch, norm, compute_dtype: str = "float32") -> dict:
  """An eval batch (alignment_inputs: C sentences per image) embedded: {"regions"
  v [B, R, D], "region_mask" [B, R], "words" s [B, C, T, D], "word_mask" [B, C, T],
  "sentence_mask" [B, C], "mask" [B]}; each side alone (embed_image / embed_sentence)."""
  apply = functools.partial(precision.apply, model, {"params": params},
                            compute_dtype=compute_dtype)
  x = steps.standardize(steps.to_unit_range(batch["image"]), *norm)
  v, region_mask = apply(x, regions=batch["regions"], region_mask=batch["region_mask"],
                         method=caption_models.AlignmentModel.embed_image)
  b, c, t = batch["tokens"].shape
  s, word_mask = apply(batch["tokens"].reshape(b * c, t),
                       method=caption_models.AlignmentModel.embed_sentence)
  return {"regions": v, "region_mask": region_mask, "words": s.reshape(b, c, t, -1),
          "word_mask": word_mask.reshape(b, c, t), "sentence_mask": batch["sentence_mask"],
          "mask": batch["mask"]}


def retrieval(outputs: list[dict], scores_fn, o) -> dict[str, float]:
  """Table 1's metrics from eval_step outputs: every image against every sentence."""
  cat = {k: np.concatenate([np.asarray(out[k]) for out in outputs]) for k in outputs[0]}
  keep = cat["mask"] > 0
  regions, region_mask = cat["regions"][keep], cat["region_mask"][keep]
  words, word_mask, sentence_mask = (cat["words"][keep], cat["word_mask"][keep],
                                     cat["sentence_mask"][keep])
  n, c = sentence_mask.shape
  real = sentence_mask.reshape(-1) > 0
  image_of_sentence = np.repeat(np.arange(n), c)[real]
  words = words.reshape(n * c, *words.shape[2:])[real]
  word_mask = word_mask.reshape(n * c, -1)[real]
  s = np.asarray(scores_fn(regions, region_mask, words, word_mask))  # [N_img, N_sent]
  image_ranks, sentence_ranks = caption_ops.retrieval_ranks(s, jnp.asarray(image_of_sentence))
  metrics = {}
  for prefix, ranks in (("image_annotation", image_ranks), ("image_search", sentence_ranks)):
    metrics.update({f"{prefix}/{k}": v
                    for k, v in caption_ops.retrieval_metrics(np.asarray(ranks)).items()})
  first = np.concatenate([[0], np.cumsum(sentence_mask.sum(1))[:-1]]).astype(int)
  diagonal = s[:, first]  # Image k with its first sentence: eq. 9 per image.
  metrics["loss"] = float(caption_ops.ranking_loss(diagonal, o.margin, "mean"))
  metrics["images"], metrics["sentences"] = float(n), float(len(image_of_sentence))
  return metrics


def check_vocabulary(vocabulary: vocab.Vocabulary, workdir: str, write: bool = True) -> None:
  """Saves the vocabulary to <workdir>/vocab.json on a new run; on a resumed one
  (the file exists), raises vocab.VocabularyMismatch unless it is the same."""
  path = os.path.join(workdir, VOCAB_FILE)
  if os.path.exists(path):
    with open(path) as f:
      vocab.Vocabulary.from_json(f.read()).check_same(vocabulary, path)
    return
  if write:
    os.makedirs(workdir, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
      f.write(vocabulary.to_json())
    os.replace(tmp, path)
