"""Caption scores (BLEU-1..4, CIDEr-D) and the nearest-neighbour caption baseline.

The scores are those of the COCO caption evaluator behind Karpathy & Fei-Fei
2015's generation tables (Table 2), through `pycocoevalcap`, using only its
scorers that need no Java (here in research/train, beside detection_metrics.py,
because the caption_generation objective scores its evaluations with it):

- BLEU-n (Papineni et al. 2002): corpus-level, clipped n-gram precisions up to
  n combined by their geometric mean, times the brevity penalty exp(1 - r/c)
  when the candidates' total length c is below r, the sum over images of the
  reference length closest to each candidate's.
- CIDEr-D (Vedantam, Zitnick & Parikh 2015, §3 and §4.2; pycocoevalcap's
  `Cider` is the -D variant): TF-IDF n-gram vectors (n = 1..4, IDF over the
  evaluated images' references), clipped candidate counts, a Gaussian length
  penalty (sigma 6), cosine similarity averaged over n and references, x 10.
  Its IDF needs more than one image: with one, every weight is log 1 = 0.

Sentences are tokenised our way, not with the evaluator's PTBTokenizer (Java):
lowercase, words are runs of [a-z0-9'], all other characters (punctuation)
dropped: the vocabulary's rule (research/data/vocab.py `tokenize`), so the
scores count the words the models see.
"""

from collections.abc import Mapping, Sequence

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from research.data.vocab import tokenize


def _as_lists(references, candidates):
  """{index: [tokenised refs]}, {index: [tokenised candidate]}; checks the input."""
  if isinstance(references, Mapping) or isinstance(candidates, Mapping):
    raise ValueError("Give references and candidates as sequences in the same image order, "
                     "not dicts.")
  if len(candidates) == 0:
    raise ValueError("No candidate captions to score: pass one caption per image.")
  if len(references) != len(candidates):
    raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists; "
                     "give one list of reference captions per candidate, in the same order.")
  gts, res = {}, {}
  for i, (refs, cand) in enumerate(zip(references, candidates)):
    if isinstance(refs, str) or not isinstance(cand, str):
      raise ValueError(f"Image {i}: references must be a list of strings and the candidate a "
                       f"string; got {type(refs).__name__} and {type(cand).__name__}.")
    refs = [" ".join(tokenize(r)) for r in refs]
    if not refs or not all(refs):
      raise ValueError(f"Image {i} has an empty reference caption (or none): {references[i]!r}; "
                       "drop empty captions when preparing the data.")
    gts[i], res[i] = refs, [" ".join(tokenize(cand))]
  return gts, res


def caption_scores(references: Sequence[Sequence[str]], candidates: Sequence[str]) -> dict:
  """BLEU-1..4 and CIDEr-D of one candidate caption per image (corpus level).

  Args:
    references: per image, its reference captions (raw text; at least one,
      none empty): e.g. the five captions of a COCO or scenes image.
    candidates: per image, the generated caption (raw text; may be empty).

  Returns:
    {"bleu1", "bleu2", "bleu3", "bleu4", "cider"}: floats, BLEU in [0, 1],
    CIDEr-D in [0, 10] (the paper's tables print BLEU x 100 and CIDEr x 100).

  Raises:
    ValueError: no candidates, a count mismatch, wrong types, or an empty reference.
  """
  gts, res = _as_lists(references, candidates)
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  cider, _ = Cider().compute_score(gts, res)
  return {**{f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)}, "cider": float(cider)}


def nearest_neighbours(train_features, query_features, metric: str = "euclidean",
                       chunk: int = 1024) -> np.ndarray:
  """For each query, the index of its nearest training row (ties: the lowest index).

  Args:
    train_features: float [N, D], N >= 1.
    query_features: float [M, D].
    metric: "euclidean" or "cosine" (features L2-normalised first).
    chunk: queries per block, bounding memory to chunk x N distances.

  Returns:
    int64 [M].

  Raises:
    ValueError: shapes that are not [N, D] and [M, D] with the same D, N = 0,
      or an unknown metric.
  """
  train = np.asarray(train_features, np.float64)
  query = np.asarray(query_features, np.float64)
  if train.ndim != 2 or query.ndim != 2 or train.shape[1] != query.shape[1] or not len(train):
    raise ValueError(f"Features must be [N, D] (N >= 1) and [M, D]; got {train.shape} and "
                     f"{query.shape}.")
  if metric not in ("euclidean", "cosine"):
    raise ValueError(f"Unknown metric {metric!r}; use 'euclidean' or 'cosine'.")
  if metric == "cosine":
    normalise = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    train, query = normalise(train), normalise(query)
  train_sq = (train ** 2).sum(1)
  out = np.empty(len(query), np.int64)
  for start in range(0, len(query), chunk):
    q = query[start:start + chunk]
    # |q - t|^2 up to |q|^2, which does not change the argmin.
    out[start:start + chunk] = np.argmin(train_sq[None] - 2.0 * q @ train.T, axis=1)
  return out


def nearest_neighbour_captions(train_features, train_captions: Sequence[Sequence[str]],
                               query_features, metric: str = "euclidean") -> list[str]:
  """The nearest-neighbour baseline of Karpathy & Fei-Fei's Table 2: each query
  image gets a caption of its nearest training image in CNN-feature space.

  The caption is that image's first one (an image's captions are in no
  particular order).

  Args:
    train_features: float [N, D], the CNN features of the training images.
    train_captions: N lists of captions (raw text), in the same order.
    query_features: float [M, D], the test images' features.
    metric: see `nearest_neighbours`.

  Returns:
    M captions.

  Raises:
    ValueError: as `nearest_neighbours`; len(train_captions) != N; a training
      image without captions.
  """
  if len(train_captions) != len(train_features):
    raise ValueError(f"{len(train_features)} training feature rows but {len(train_captions)} "
                     "caption lists; give each training image's captions in feature order.")
  index = nearest_neighbours(train_features, query_features, metric)
  empty = [int(i) for i in index if not len(train_captions[i])]
  if empty:
    raise ValueError(f"Training image {empty[0]} has no captions; drop it from the baseline's "
                     "training set.")
  return [train_captions[i][0] for i in index]
