"""BLEU, CIDEr-D by hand; the nearest-neighbour baseline (research/train/caption_metrics.py, #17)."""

import math

import numpy as np
import pytest

from research.train import caption_metrics as cm

REFS = ["a red cube is left of the blue ball", "A blue ball."]
CANDIDATE = "A red cube, left of a blue ball."


def test_tokenize_lowercases_and_drops_punctuation():
  assert cm.tokenize("A red cube, left of a blue ball.") == \
      "a red cube left of a blue ball".split()
  assert cm.tokenize("It's 2 cubes!") == ["it's", "2", "cubes"]


def test_bleu_by_hand():
  # Candidate (8 words): a red cube left of a blue ball. Clipped matches against the
  # references' maximum counts: unigrams 7/8 ("a" twice, at most once per reference);
  # bigrams 5/7 (a red, red cube, left of, a blue, blue ball); trigrams 2/6 (a red cube,
  # a blue ball); 4-grams 0/5. Closest reference length 9 > 8: brevity penalty exp(1 - 9/8).
  scores = cm.caption_scores([REFS], [CANDIDATE])
  bp = math.exp(1 - 9 / 8)
  p1, p2, p3 = 7 / 8, 5 / 7, 2 / 6
  assert scores["bleu1"] == pytest.approx(p1 * bp, rel=1e-6)
  assert scores["bleu2"] == pytest.approx((p1 * p2) ** 0.5 * bp, rel=1e-6)
  assert scores["bleu3"] == pytest.approx((p1 * p2 * p3) ** (1 / 3) * bp, rel=1e-6)
  assert scores["bleu4"] < 1e-3  # No 4-gram matches.


def test_an_identical_candidate_scores_bleu_one_and_cider_ten():
  refs = [["a red cube left of a blue ball"], ["two green spheres above the box"]]
  scores = cm.caption_scores(refs, ["A red cube left of a blue ball.", "two green spheres "
                                    "above the box"])
  for n in range(1, 5):
    assert scores[f"bleu{n}"] == pytest.approx(1.0, rel=1e-6)
  assert scores["cider"] == pytest.approx(10.0, rel=1e-6)


def test_cider_d_by_hand():
  # Two images, one reference each, no shared words: every n-gram's IDF is
  # log(2 images / max(1, df)) = log 2, so the TF-IDF vectors are the counts times log 2
  # and each n-gram order's score is a cosine of counts (candidate counts clipped by the
  # reference's). Image 1: "red cube left box" vs "red cube left ball": unigrams 3/4,
  # bigrams 2/3, trigrams 1/2, 4-grams 0; same length, no penalty; x 10 -> 4.7917.
  # Image 2 is identical to its reference: 10.
  refs = [["red cube left ball"], ["two green spheres above"]]
  scores = cm.caption_scores(refs, ["red cube left box", "two green spheres above"])
  image1 = 10 * (3 / 4 + 2 / 3 + 1 / 2 + 0) / 4
  assert scores["cider"] == pytest.approx((image1 + 10) / 2, rel=1e-6)
  # One image alone: IDF log(1) = 0, CIDEr-D is 0 whatever the candidate.
  assert cm.caption_scores(refs[:1], ["red cube left ball"])["cider"] == 0.0


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="2 candidates but 1 reference lists"):
    cm.caption_scores([REFS], [CANDIDATE, CANDIDATE])
  with pytest.raises(ValueError, match="No candidate captions"):
    cm.caption_scores([], [])
  with pytest.raises(ValueError, match="Image 0 has an empty reference"):
    cm.caption_scores([["a cube", "..."]], [CANDIDATE])
  with pytest.raises(ValueError, match="references must be a list of strings"):
    cm.caption_scores(["a cube"], [CANDIDATE])


def test_nearest_neighbours_euclidean_and_cosine():
  train = np.array([[1.0, 0.0], [10.0, 1.0]])
  query = np.array([[9.0, 0.0]])
  assert cm.nearest_neighbours(train, query).tolist() == [1]  # Distances 8 and 1.41.
  assert cm.nearest_neighbours(train, query, "cosine").tolist() == [0]  # Cosines 1 and 0.995.
  rng = np.random.default_rng(0)
  train, query = rng.standard_normal((50, 6)), rng.standard_normal((23, 6))
  brute = np.argmin(((query[:, None] - train[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(cm.nearest_neighbours(train, query, chunk=4), brute)
  with pytest.raises(ValueError, match="Unknown metric 'l1'"):
    cm.nearest_neighbours(train, query, "l1")
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    cm.nearest_neighbours(train, query[:, :3])


def test_nearest_neighbour_captions_copy_the_nearest_training_images_first_caption():
  train = np.array([[0.0, 0.0], [5.0, 5.0]])
  captions = [["a red cube", "one red cube"], ["two blue balls", "a pair of blue balls"]]
  out = cm.nearest_neighbour_captions(train, captions, np.array([[4.0, 6.0], [0.5, -1.0]]))
  assert out == ["two blue balls", "a red cube"]
  with pytest.raises(ValueError, match="2 training feature rows but 1 caption lists"):
    cm.nearest_neighbour_captions(train, captions[:1], train)
