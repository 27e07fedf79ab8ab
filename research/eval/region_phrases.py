"""Region-phrase pairs inferred from the alignment model (Karpathy & Fei-Fei 2015, §3.1.4).

The paper turns its word-region scores into phrases with a Markov random field
that encourages neighbouring words to share a region (§3.1.4, eq. 10). With
beta = 0 (the alignment experiment's default), simplified, without the MRF:
each word goes to its best region (the argmax of eq. 8,
ops.captioning.word_region_alignment's rule) and a region's phrase is the
words aligned to it, in sentence order. With beta > 0, eq. 10's chain MRF
(`mrf_alignment`, exact by Viterbi): a word's unary term is its dot product
with the region, and consecutive words on the same region earn beta, so
phrases become runs of neighbouring words. `agreement` checks these phrases
against the objects' ground-truth phrases where the region is a detection
matching an object box (IoU >= 0.5), beside words given random regions.
`infer_split` runs a trained alignment model (its run folder) over a split and
`region_examples` groups the pairs into one example per (image, detection) for
the region generator (experiments/caption_regions.py).
"""

import functools
import os

import jax
import numpy as np

from research import models
from research.data import vocab as vocab_lib
from research.train import checkpoint
from research.train.objectives import caption_alignment as alignment_lib

METHOD = ("Each word of a test sentence is aligned to its best region (argmax of eq. 8); a "
          "region's phrase is its words in sentence order: §3.1.4 simplified, without the MRF.")
MATCH_IOU = 0.5


def method(beta: float) -> str:
  """The phrase rule in words (METHOD for beta = 0)."""
  if not beta:
    return METHOD
  return (f"Each sentence's words are aligned to regions by §3.1.4's chain MRF (eq. 10, beta "
          f"{beta:g}, solved exactly by Viterbi); a region's phrase is its words in sentence "
          "order.")


def mrf_alignment(scores: np.ndarray, beta: float) -> np.ndarray:
  """§3.1.4, eq. 10: argmax over a of sum_j scores[j, a_j] + beta * sum_j 1[a_j = a_j+1].

  scores: float [N words, R regions] (-inf for regions that are not real);
  beta >= 0 (0: each word's own argmax). Returns int [N], the region of each
  word; exact (Viterbi, ties kept on the same region, then the lowest index).
  """
  n, _ = scores.shape
  if n == 0:
    return np.zeros((0,), np.int64)
  best = np.asarray(scores[0], np.float64)
  back = np.zeros(scores.shape, np.int64)
  for j in range(1, n):
    prev = int(np.argmax(best))
    stay = best + beta
    back[j] = np.where(stay >= best[prev], np.arange(len(best)), prev)
    best = np.asarray(scores[j], np.float64) + np.maximum(stay, best[prev])
  out = np.zeros((n,), np.int64)
  out[-1] = int(np.argmax(best))
  for j in range(n - 1, 0, -1):
    out[j - 1] = back[j, out[j]]
  return out


def _iou(box, boxes) -> np.ndarray:
  """IoU of one box [4] with boxes [K, 4], pixels [ymin, xmin, ymax, xmax]."""
  y0, x0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
  y1, x1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
  inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
  return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def infer(outputs, split, beta: float = 0.0) -> list[dict]:
  """Per (image, sentence) of `split` (an alignment_inputs.AlignmentInputSplit),
  from its eval outputs in order (objectives.caption_alignment.embed_batch, host
  arrays), each word aligned by `mrf_alignment` (beta 0: its best region):
  {"row", "index" (the example of split.split), "image_id", "sentence" (its
  words as encoded), "regions"
  (pixel boxes [R][4] of the real regions; 0 the whole image), "word_region"
  (each word's region index), "phrases": [{"region", "box", "phrase"}]}."""
  pairs, row = [], 0
  for out in outputs:
    for b in range(len(out["mask"])):
      if out["mask"][b] <= 0:
        continue
      real = out["region_mask"][b] > 0
      v = np.asarray(out["regions"][b], np.float32)
      boxes = split.regions[split.indices[row]]
      image_id = int(split.split.annotation(int(split.indices[row])).image_id)
      for c, tokens in enumerate(split.sentence_tokens(row)[:out["word_mask"].shape[1]]):
        is_word = out["word_mask"][b, c] > 0
        dots = np.asarray(out["words"][b, c], np.float32)[is_word] @ v.T  # [words, R]
        best = mrf_alignment(np.where(real[None], dots, -np.inf), beta)
        words = [split.vocabulary.words[i] for i in tokens[is_word[:len(tokens)]]]
        phrases = [{"region": int(r), "box": [float(x) for x in boxes[r]],
                    "phrase": " ".join(w for w, a in zip(words, best) if a == r)}
                   for r in sorted(set(best.tolist()))]
        pairs.append({"row": row, "index": int(split.indices[row]), "image_id": image_id, "sentence_index": c,
                      "sentence": " ".join(words),
                      "regions": [[float(x) for x in boxes[r]] for r in np.flatnonzero(real)],
                      "word_region": best.tolist(), "phrases": phrases})
      row += 1
  return pairs


def agreement(pairs: list[dict], split, seed: int = 0) -> dict[str, float]:
  """How well the inferred phrases of detection regions (region index >= 1)
  that match an object (IoU >= 0.5) agree with that object's phrase.

  Returns {"pairs": phrases scored, "word_precision": fraction of their words in
  the object's phrase, "word_recall": fraction of the objects' phrase words
  found in them, "random_word_precision": word_precision with every word given
  a uniformly random real region of its image instead (same words)}."""
  rng = np.random.default_rng(seed)
  hits = words = found = wanted = scored = 0
  random_hits = random_words = 0

  def matched_words(row, box):
    annotation = split.split.annotation(int(split.indices[row]))
    h, w = split.image_shape[:2]
    gt = annotation.boxes * np.array([h, w, h, w], np.float32)
    if not len(gt):
      return None
    ious = _iou(np.asarray(box, np.float32), gt)
    k = int(np.argmax(ious))
    if ious[k] < MATCH_IOU:
      return None
    return set(vocab_lib.tokenize(split.split.phrases(int(split.indices[row]))[k]))

  for pair in pairs:
    sentence = pair["sentence"].split()
    for phrase in pair["phrases"]:
      if phrase["region"] == 0:
        continue
      truth = matched_words(pair["row"], phrase["box"])
      if truth is None:
        continue
      said = phrase["phrase"].split()
      scored += 1
      hits += sum(w in truth for w in said)
      words += len(said)
      found += len(truth & set(said))
      wanted += len(truth)
    n_regions = len(pair["regions"])
    for w in sentence:
      r = int(rng.integers(n_regions))
      if r == 0:
        continue
      truth = matched_words(pair["row"], pair["regions"][r])
      if truth is not None:
        random_hits += w in truth
        random_words += 1
  return {"pairs": float(scored), "word_precision": hits / max(words, 1),
          "word_recall": found / max(wanted, 1),
          "random_word_precision": random_hits / max(random_words, 1)}


def saved_vocabulary(run_dir: str) -> vocab_lib.Vocabulary:
  """The vocabulary an alignment run trained with (<run_dir>/vocab.json)."""
  with open(os.path.join(run_dir, alignment_lib.VOCAB_FILE)) as f:
    return vocab_lib.Vocabulary.from_json(f.read())


def embed_split(config, run_dir: str, split_name: str, *, num_images: int = 0,
                batch_size: int = 50):
  """(the alignment model's eval outputs of each batch, host arrays; the
  AlignmentInputSplit) of config.data's split_name (its first num_images images;
  0: all), by the model of `run_dir` (its newest checkpoint and vocab.json;
  config: that run's config)."""
  split, _ = alignment_lib.open_split(config, split_name, saved_vocabulary(run_dir))
  _, arrays = checkpoint.load_arrays(run_dir)
  kwargs = {**config.model.kwargs.to_dict(), "vocab_size": len(split.vocabulary)}
  model = models.get_model(config.model.name, **kwargs)
  norm = alignment_lib.datasets.normalization(config.data.name, config.data.mean,
                                             config.data.std)
  embed = jax.jit(functools.partial(alignment_lib.embed_batch, model, arrays["params"],
                                    norm=norm, compute_dtype=config.compute_dtype))
  split = split.take(num_images or len(split))
  return [jax.device_get(embed(batch=b)) for b in split.eval_batches(batch_size)], split


def infer_split(config, run_dir: str, split_name: str, *, num_images: int = 0,
                beta: float = 0.0, batch_size: int = 50):
  """(`infer`'s pairs, the AlignmentInputSplit) of `embed_split`'s outputs."""
  outputs, split = embed_split(config, run_dir, split_name, num_images=num_images,
                               batch_size=batch_size)
  return infer(outputs, split, beta), split


def region_examples(pairs: list[dict]) -> list[dict]:
  """The region-phrase training examples of `infer`'s pairs (§3.1.4 -> §3.2's
  region generator): one per (image, detection region) with a phrase, in order
  of appearance, {"index": the example of the captions split, "box": pixel box
  [4] of the stored image, "phrases": its phrases, one per sentence that put a
  word on it}. The whole image (region 0) is left out: its "phrase" is the
  rest of a sentence, not a region's."""
  out = {}
  for pair in pairs:
    for phrase in pair["phrases"]:
      if phrase["region"] == 0 or not phrase["phrase"]:
        continue
      key = (pair["index"], phrase["region"])
      entry = out.setdefault(key, {"index": pair["index"], "box": phrase["box"], "phrases": []})
      entry["phrases"].append(phrase["phrase"])
  return list(out.values())

