"""Analysis code moved out of the paper modules (research/eval/), checked on
its own: small inputs, no training."""

import math

import numpy as np
import pytest

from research.eval import gan_eval, paper_tables


def test_error_grid_and_markdown_put_ours_beside_the_papers():
  metrics = {"cnn/r/test/error": 0.087, "st_cnn/r/test/error": 0.062}
  paper = {"cnn": {"r": 1.2, "rts": 0.8}, "st_cnn": {"r": 0.7}}
  ours, theirs = paper_tables.error_grid(["cnn", "st_cnn"], ["r", "rts"], metrics, paper)
  np.testing.assert_allclose(ours, [[8.7, np.nan], [6.2, np.nan]])
  np.testing.assert_allclose(theirs, [[1.2, 0.8], [0.7, np.nan]])
  assert np.isnan(paper_tables.error_grid(["cnn"], ["r"], metrics, None)[1]).all()
  text = paper_tables.markdown(["CNN", "ST-CNN"], ["R", "RTS"], ours, theirs)
  assert text.splitlines() == ["| model | R | RTS |", "|---|---|---|",
                               "| CNN | 8.7 (1.2) | — (0.8) |", "| ST-CNN | 6.2 (0.7) | — (—) |"]


def test_difference_standard_error():
  # Two 2% error rates on 1,000 images each: sqrt(2 * 0.02 * 0.98 / 1000).
  assert paper_tables.difference_standard_error(0.02, 0.02, 1000) == pytest.approx(
      math.sqrt(2 * 0.02 * 0.98 / 1000))


def test_sample_judge_scores_samples_against_the_test_images():
  rng = np.random.default_rng(0)
  test_x = rng.uniform(size=(200, 4, 4, 1)).astype(np.float32)
  validation_x = rng.uniform(size=(50, 4, 4, 1)).astype(np.float32)
  features = lambda x: np.asarray(x).reshape(len(x), -1)[:, :6]  # A fixed "feature map".
  judge = gan_eval.SampleJudge(features, test_x, validation_x, (0.1, 0.3))
  alike = rng.uniform(size=(200, 4, 4, 1)).astype(np.float32)
  scores = judge(alike)
  assert set(scores) == {"frechet", "parzen", "parzen_se", "parzen_sigma"}
  assert scores["parzen_sigma"] in (0.1, 0.3)
  # Samples from the test distribution are closer than a constant gray image.
  assert judge.frechet(alike) < judge.frechet(np.full_like(alike, 0.5))
