"""Region-phrase pairs inferred from the alignment model (Karpathy & Fei-Fei 2015, §3.1.4).

The paper turns its word-region scores into phrases with a Markov random field
that encourages neighbouring words to share a region (§3.1.4, eq. 10). Here,
simplified, without the MRF: each word goes to its best region (the argmax of
eq. 8, ops.captioning.word_region_alignment's rule) and a region's phrase is the
words aligned to it, in sentence order. `agreement` checks these phrases
against the objects' ground-truth phrases where the region is a detection
matching an object box (IoU >= 0.5), beside words given random regions.
"""

import numpy as np

from research.data import vocab as vocab_lib

METHOD = ("Each word of a test sentence is aligned to its best region (argmax of eq. 8); a "
          "region's phrase is its words in sentence order: §3.1.4 simplified, without the MRF.")
MATCH_IOU = 0.5


def _iou(box, boxes) -> np.ndarray:
  """IoU of one box [4] with boxes [K, 4], pixels [ymin, xmin, ymax, xmax]."""
  y0, x0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
  y1, x1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
  inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
  return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def infer(outputs, split) -> list[dict]:
  """Per (image, sentence) of `split` (an alignment_inputs.AlignmentInputSplit),
  from its eval outputs in order (objectives.caption_alignment.embed_batch, host
  arrays): {"row", "image_id", "sentence" (its words as encoded), "regions"
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
        best = np.argmax(np.where(real[None], dots, -np.inf), axis=1)
        words = [split.vocabulary.words[i] for i in tokens[is_word[:len(tokens)]]]
        phrases = [{"region": int(r), "box": [float(x) for x in boxes[r]],
                    "phrase": " ".join(w for w, a in zip(words, best) if a == r)}
                   for r in sorted(set(best.tolist()))]
        pairs.append({"row": row, "image_id": image_id, "sentence_index": c,
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
