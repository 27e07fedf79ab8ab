"""How fast networks train: the steps each needs to reach a training error
(Krizhevsky et al. 2012, §3.1, Fig. 1: ReLU reaches 25% training error six
times faster than tanh).

Each arm (e.g. an activation) is trained at several constant learning rates
and keeps its fastest ("chosen independently to make training as fast as
possible"). The target is the lowest error the reference arm (the slower
one, tanh) reaches at any of its rates, so both arms are measured at an error
both can reach; the speed-up is the ratio of the steps they need.
"""

import os

from research.train import metrics as metrics_lib


def steps_to_target(runs: dict[tuple[str, float], str], reference: str, key: str,
                    budget: int, *, paper_target: float | None = None) -> dict:
  """Per arm, the steps its fastest learning rate needs to reach the target.

  Args:
    runs: {(arm, learning rate): run workdir} holding metrics.jsonl with `key`
      (an error, lower is better).
    reference: the arm whose lowest error over its rates is the target.
    key: the logged error, e.g. "train_eval/error".
    budget: the runs' total steps: the count of a run that never reaches the
      target (a lower bound).
    paper_target: also report the steps to this error ("steps_to_<pct>pct").

  Returns:
    (metrics, curves): metrics {"target_error", "<arm>/steps_to_target",
    "<arm>/reached_target" (1.0 or 0.0), "<arm>/learning_rate",
    "<arm>/final_train_error", "speedup" (reference / the other arm, with two
    arms)}; curves {arm: (steps, errors)} of each arm's fastest run.
  """
  error = {run: metrics_lib.series(workdir, key) for run, workdir in runs.items()}
  arms = list(dict.fromkeys(arm for arm, _ in runs))
  target = min(min(errors) for (arm, _), (_, errors) in error.items() if arm == reference)
  metrics, curves = {"target_error": target}, {}
  for arm in arms:
    rates = [lr for a, lr in runs if a == arm]
    steps = {lr: metrics_lib.steps_to_reach(runs[arm, lr], key, target) for lr in rates}
    # Not reached in the budget: count the whole budget, a lower bound.
    reached = {lr: budget if s is None else s for lr, s in steps.items()}
    lr = min(reached, key=reached.get)
    curves[arm] = error[arm, lr]
    metrics.update({f"{arm}/steps_to_target": reached[lr],
                    f"{arm}/reached_target": float(steps[lr] is not None),
                    f"{arm}/learning_rate": lr,
                    f"{arm}/final_train_error": error[arm, lr][1][-1]})
    if paper_target is not None:
      to_paper = metrics_lib.steps_to_reach(runs[arm, lr], key, paper_target)
      metrics[f"{arm}/steps_to_{round(100 * paper_target)}pct"] = (
          float("nan") if to_paper is None else to_paper)
  if len(arms) == 2:
    other = next(a for a in arms if a != reference)
    metrics["speedup"] = metrics[f"{reference}/steps_to_target"] / metrics[
        f"{other}/steps_to_target"]
  return metrics, curves


def run_dirs(names: dict[tuple[str, float], str], workdir: str) -> dict:
  """{(arm, lr): run name} -> {(arm, lr): workdir/run name}."""
  return {run: os.path.join(workdir, name) for run, name in names.items()}
