"""What the region-based detector experiments share (experiments/rcnn.py,
fast_rcnn.py, faster_rcnn.py; Girshick et al. 2014, Girshick 2015, Ren et al. 2015).

  - `train_and_measure`: Fast and Faster R-CNN's run: the one training loop,
    then, on process 0, the experiment's test-time measures on the unflipped
    test split, the compared runs' metrics (config.compare, research/report.py's
    `compared_metrics`) and the figure of test scenes with their detections;
  - `scenes_map_claim` and `paper_map_claim`: the mAP claim every detector
    makes, on our scenes (a floor fixed before the run: no VOC number applies)
    or at the paper's setting (within 1 point of the paper's VOC 2007 mAP);
    `map_versus_claim`: our mAP against another detector's run, at most 1
    point below it;
  - `cell`: a metric formatted for the report's tables, or "not measured".

Each experiment keeps its own claims' words and numbers; only their
mechanics are here.
"""

import os

import jax

from research import report
from research.eval import detection_plots
from research.report import Claim
from research.train import trainer

# A reproduction at the paper's setting counts within this of the paper's mAP.
PAPER_MAP_TOLERANCE = 0.01


def train_and_measure(config, workdir: str, objective_cls, measure, *, figure: str, title: str,
                      score_threshold: float = 0.5, num_figure_images: int = 8) -> dict:
  """Trains (or resumes) with the one loop, then measures on the test split; the metrics.

  Args:
    config, workdir: the run's.
    objective_cls: the objective's class (a region_detection.RegionObjective);
      its `open_split(config, config.data.eval_split, train=False)` is the test split.
    measure: (objective, state, split, metrics) -> dict of further metrics, on
      the test split with an objective of batch 1 (metrics: the loop's final ones).
    figure: the file name, in workdir, of the first `num_figure_images` test scenes
      with ground truth and the detections of score >= score_threshold.
    title: the figure's title.

  Returns:
    The loop's final metrics, and on process 0 measure's, and the compared
    runs' ("<name>/<metric>" and "compare/<name>", `compared_metrics`).
  """
  result = trainer.train(config, workdir)
  metrics = dict(result.metrics)
  if jax.process_index() == 0:
    split = objective_cls.open_split(config, config.data.eval_split, train=False)
    objective = objective_cls(config, split, 1, workdir)
    metrics.update(measure(objective, result.state, split, metrics))
    metrics.update(compared_metrics(config, workdir))
    detection_plots.detector_figure(objective.eval_step, result.state, split,
                                    os.path.join(workdir, figure), num=num_figure_images,
                                    score_threshold=score_threshold, title=title)
  return metrics


def compared_metrics(config, workdir: str) -> dict:
  """The metrics of the runs config.compare names ({experiment: workdir, "" = the
  sibling <dirname(workdir)>/<experiment>}), as report.compared_metrics gives them."""
  return report.compared_metrics(workdir, config.compare)


def scenes_map_claim(source: str, statement: str, paper: str, minimum: float) -> Claim:
  """The claim that a detector detects objects on our scenes: test/mAP (VOC 2007's
  11-point mAP@0.5) >= minimum, a floor set before the run (a detector that
  guesses scores about 0)."""
  return Claim(source=source, statement=statement, paper=paper, measure="test/mAP",
               check=lambda m: m >= minimum,
               check_text=f">= {minimum:.0%} mAP@0.5 on the test scenes", fmt="{:.1%}")


def paper_map_claim(source: str, statement: str, paper_map: float) -> Claim:
  """The claim of a paper's VOC 2007 test mAP (a fraction) at the paper's setting:
  ours within PAPER_MAP_TOLERANCE (1 point) below it or higher."""
  return Claim(source=source, statement=statement, paper=f"{paper_map:.1%} mAP",
               measure="test/mAP", check=lambda m: m >= paper_map - PAPER_MAP_TOLERANCE,
               check_text=f"within 1 point of {paper_map:.1%}", fmt="{:.1%}")


def map_versus_claim(source: str, statement: str, paper: str, name: str,
                     check_text: str) -> Claim:
  """The claim that our mAP is similar to or better than experiment `name`'s run
  (config.compare.<name>): test/mAP minus its test/mAP at least -PAPER_MAP_TOLERANCE
  (1 point); "not measured" without that run (report.versus)."""
  return Claim(source=source, statement=statement, paper=paper,
               measure=report.versus(name, lambda m, theirs: m["test/mAP"] - theirs("test/mAP")),
               check=lambda d: d >= -PAPER_MAP_TOLERANCE, check_text=check_text, fmt="{:+.1%}")


def cell(metrics: dict, key: str, fmt: str, missing: str = "not measured") -> str:
  """metrics[key] formatted by fmt for a report table; `missing` when it is absent
  or not a number."""
  value = metrics.get(key)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return missing
  return fmt.format(value)
