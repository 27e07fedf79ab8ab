"""The retrieval ceiling of the captioned scenes (issue 17; Karpathy & Fei-Fei 2015, Table 1).

A generated sentence of `caption_scenes` ("a bag", "two digits", "a photo of a
coffee cup") is often true of many scenes, so even a model that read every
sentence and every image perfectly could not always rank an image's own
sentences first. This module measures that ceiling with an oracle that knows
the truth: the score of scene k and sentence l is the fraction of l's facts
(research/data/scene_facts.parse) that hold in scene k (scene_facts.holds),
1 for every scene the sentence is true of. Its ties (all the scenes a sentence
is true of) are broken at random, as an ideal model without the generator's
habits would have to, and the retrieval ranks are §4.1's protocol
(ops.captioning.retrieval_ranks), averaged over `seeds` tie-breaks. A second
oracle (`specific_scores`, metrics under "specific/") also knows how many
scenes each sentence is true of and puts an image's rarer true sentences
first, which lifts image annotation (image search is the same).

Command (the 1,000 test scenes; their scenes are rendered again from the
prepared sources; 1 to 3.3 minutes here on shared cores):

  python -m research.eval.caption_ceiling [--split=test] [--data_dir=DIR]
"""

import numpy as np

from research.data import captions, reader, scene_builders, scenes
from research.data import scene_facts as sf
from research.ops import captioning as caption_ops


def truth_scores(scene_list, sentence_facts) -> np.ndarray:
  """float32 [N_scenes, N_sentences]: the fraction of each sentence's facts
  (a frozenset of scene_facts facts, non-empty) that hold in each scene.

  Raises:
    ValueError: a sentence without a fact.
  """
  if any(not facts for facts in sentence_facts):
    raise ValueError("truth_scores: every sentence needs at least one fact (scene_facts.parse).")
  distinct = sorted({f for facts in sentence_facts for f in facts}, key=repr)
  index = {f: i for i, f in enumerate(distinct)}
  holds = np.array([[sf.holds(s, f) for s in scene_list] for f in distinct], np.float32)
  incidence = np.zeros((len(sentence_facts), len(distinct)), np.float32)
  for l, facts in enumerate(sentence_facts):
    incidence[l, [index[f] for f in facts]] = 1
  return (incidence @ holds / incidence.sum(1, keepdims=True)).T


def specific_scores(truth: np.ndarray) -> np.ndarray:
  """The truth oracle's scores [N_img, N_sent] with each true pair (score 1)
  raised by 1 / (the number of scenes the sentence is true of): among an
  image's true sentences, the rarer ones first, as Bayes would rank them if a
  sentence's owner were any scene it is true of, alike. Image search is
  unchanged (a per-sentence constant), image annotation improves."""
  true = truth >= 1
  return np.where(true, 1.0 + 1.0 / np.maximum(true.sum(0, keepdims=True), 1), truth)


def ceiling(scores: np.ndarray, image_of_sentence: np.ndarray, seeds: int = 10) -> dict:
  """Table 1's metrics of oracle scores [N_img, N_sent] (at most 2^24 pairs)
  with ties broken at random, the mean over `seeds` draws:
  {"image_annotation/R@1": percent, ..., "image_search/median_rank"}.

  Each draw replaces the scores by their positions in one random order
  consistent with them (integers, exact in float32), so no two are equal."""
  if scores.size > 2 ** 24:
    raise ValueError(f"ceiling: {scores.size} pairs; at most 2^24 fit float32's integers.")
  out = {}
  for seed in range(seeds):
    tie_break = np.random.default_rng(seed).random(scores.size)
    order = np.lexsort((tie_break, scores.reshape(-1)))
    position = np.empty(scores.size, np.float32)
    position[order] = np.arange(scores.size, dtype=np.float32)
    image_ranks, sentence_ranks = caption_ops.retrieval_ranks(
        position.reshape(scores.shape), np.asarray(image_of_sentence))
    for prefix, ranks in (("image_annotation", image_ranks), ("image_search", sentence_ranks)):
      for k, v in caption_ops.retrieval_metrics(np.asarray(ranks)).items():
        out[f"{prefix}/{k}"] = out.get(f"{prefix}/{k}", 0.0) + v / seeds
  return {k: round(v, 3) for k, v in out.items()}


def split_scenes(split: str, data_dir: str | None = None) -> list[scenes.Scene]:
  """caption_scenes' `split` rendered again (seed 0, as its builder made them)."""
  config = scene_builders.SceneBuilder.CONFIG
  data_dir = data_dir or reader.default_data_dir()
  pools = {name: scene_builders.open_pool(name, *scene_builders.POOLS[split][name], data_dir)
           for name in scenes.SOURCES}
  n = scene_builders.SceneBuilder.SPLITS[split]
  return scene_builders.make_scenes(range(n), scene_builders.SPLIT_NUMBERS[split],
                                    scene_builders.SceneBuilder.SEED, pools,
                                    scenes.load_backgrounds(config.background_short_side), config)


def split_ceiling(split: str = "test", data_dir: str | None = None, seeds: int = 10) -> dict:
  """The oracle's retrieval metrics on caption_scenes' `split` (every image
  against all its sentences), and how many scenes a sentence is true of.

  Raises:
    ValueError: an unknown split, or a stored sentence not true of its own
      scene (the data and the scenes rendered here disagree).
  """
  if split not in scene_builders.SceneBuilder.SPLITS:
    raise ValueError(f"split={split!r}: caption_scenes has the splits "
                     f"{tuple(scene_builders.SceneBuilder.SPLITS)} (whole splits only).")
  data = captions.open_captions("caption_scenes", split, data_dir)
  scene_list = split_scenes(split, data_dir)
  texts, owner = [], []
  for i in range(len(data)):
    texts += data.captions(i)
    owner += [i] * len(data.captions(i))
  owner = np.asarray(owner)
  scores = truth_scores(scene_list, [sf.parse(t) for t in texts])
  own = scores[owner, np.arange(len(texts))]
  if np.any(own < 1):
    bad = int(np.argmin(own))
    raise ValueError(f"caption_scenes[{split}] sentence {bad} ({texts[bad]!r}) is not true of its "
                     "own rendered scene: the prepared data and the scene code disagree. To fix: "
                     "prepare caption_scenes again (delete its folder in the data dir).")
  true_of = (scores >= 1).sum(0)
  specific = ceiling(specific_scores(scores), owner, seeds)
  return {**ceiling(scores, owner, seeds), **{f"specific/{k}": v for k, v in specific.items()},
          "images": len(data), "sentences": len(texts),
          "scenes_a_sentence_is_true_of_median": float(np.median(true_of)),
          "scenes_a_sentence_is_true_of_mean": float(np.mean(true_of))}


if __name__ == "__main__":
  import argparse
  import json
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--split", default="test")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--seeds", type=int, default=10)
  args = parser.parse_args()
  print(json.dumps(split_ceiling(args.split, args.data_dir, args.seeds), indent=1))
