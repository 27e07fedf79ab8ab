"""Analysis code moved out of the paper modules (research/eval/), checked on
its own: small inputs, no training."""

import math
import time

import numpy as np
import pytest

from research.eval import gan_eval, paper_tables, stn_analysis, timing


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


def test_stn_failure_reason_tells_noise_from_a_real_gap():
  # 5.2% vs 5.0% on 1,000 images: 0.2 points, two standard errors are about 2 points.
  assert "within two standard errors (2.0%) of 1,000 test images" in (
      stn_analysis.failure_reason(0.052, 0.05, 1000))
  assert "short training" in stn_analysis.failure_reason(0.09, 0.05, 1000)
  assert "short training" in stn_analysis.failure_reason(0.052, 0.05, None)  # No test count.


def test_best_mean_seconds_takes_turns_and_keeps_each_best_pass():
  calls = []

  def slow(x):  # 100 ms on its first timed call (another process's load), else 5 ms.
    calls.append(("slow", x))
    time.sleep(0.1 if calls.count(("slow", 1)) == 2 else 0.005)

  def fast(x):
    calls.append(("fast", x))
  seconds = timing.best_mean_seconds({"slow": (slow, [(1,), (2,)]), "fast": (fast, [(3,)])})
  assert calls == [("slow", 1), ("fast", 3),                 # Warm-up, once each,
                   ("slow", 1), ("slow", 2), ("fast", 3),    # then passes, taking turns.
                   ("slow", 1), ("slow", 2), ("fast", 3)]
  assert 0.005 <= seconds["slow"] < 0.04 and seconds["fast"] < 0.005  # The second pass.
  with pytest.raises(ValueError, match=r"without inputs \['fast'\]"):
    timing.best_mean_seconds({"slow": (slow, [(1,)]), "fast": (fast, [])})


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
