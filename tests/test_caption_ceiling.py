"""research/eval/caption_ceiling.py (issue 17): the truth oracle's scores against
scene_facts itself, and its random tie-breaking on a hand-worked case."""

import numpy as np
import pytest

from research.data import caption_scenes
from research.data import scene_facts as sf
from research.eval import caption_ceiling
from tests.test_caption_data import _scenes


def test_truth_scores_are_the_fraction_of_facts_that_hold(data_dir):
  made = _scenes(data_dir, "train", 12)
  texts, owner = [], []
  for i, scene in enumerate(made):
    sentences = caption_scenes.describe(scene, [0, 0, i, 2]).sentences
    texts += sentences
    owner += [i] * len(sentences)
  facts = [sf.parse(t) for t in texts]
  scores = caption_ceiling.truth_scores(made, facts)
  assert scores.shape == (12, 60)
  np.testing.assert_array_equal(scores[owner, np.arange(60)], 1.0)  # True of its own scene.
  for k in range(12):
    for l in range(0, 60, 7):
      expected = np.mean([sf.holds(made[k], f) for f in facts[l]])
      assert scores[k, l] == pytest.approx(expected), (k, texts[l])
  assert (scores < 1).any()  # Some sentences are false of other scenes...
  assert ((scores >= 1).sum(0) > 1).any()  # ... and some are true of several.
  specific = caption_ceiling.specific_scores(scores)
  rare, common = np.argmin((scores >= 1).sum(0)), np.argmax((scores >= 1).sum(0))
  k = owner[rare]
  if scores[k, common] >= 1:  # Both true of scene k: the rarer sentence first.
    assert specific[k, rare] > specific[k, common]
  np.testing.assert_array_equal(specific < 1, scores < 1)
  with pytest.raises(ValueError, match="at least one fact"):
    caption_ceiling.truth_scores(made[:1], [frozenset()])
  with pytest.raises(ValueError, match=r"split='test\[:10\]': caption_scenes has the splits"):
    caption_ceiling.split_ceiling("test[:10]")


def test_ties_are_broken_at_random():
  # Sentence l is image l's. Annotation: image 0 ties its sentence 0 with sentence 1 (rank 1
  # half the time), image 1 ranks its own first. Search: sentence 0 ranks image 0 first,
  # sentence 1 ties images 0 and 1. Expected R@1 both ways: 75%.
  scores = np.array([[1.0, 1.0], [0.0, 1.0]], np.float32)
  m = caption_ceiling.ceiling(scores, np.array([0, 1]), seeds=100)
  assert m["image_annotation/R@1"] == pytest.approx(75, abs=10)
  assert m["image_search/R@1"] == pytest.approx(75, abs=10)
  assert m["image_annotation/R@5"] == m["image_search/R@5"] == 100
  # Without ties the oracle is exact.
  exact = caption_ceiling.ceiling(np.eye(3, dtype=np.float32), np.arange(3), seeds=2)
  assert exact["image_annotation/R@1"] == exact["image_search/R@1"] == 100
