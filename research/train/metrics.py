"""Metric writers (JSON lines + TensorBoard, no TensorFlow) and progress lines."""

import json
import os
import time

from absl import logging
import numpy as np


class MetricWriter:
  """Appends {"step": s, **scalars} to metrics.jsonl and to TensorBoard files.

  Only process 0 writes (multi-host runs would otherwise write N copies).
  """

  def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    if tensorboard:
      from tensorboardX import SummaryWriter  # Imported lazily: optional at read time.
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)
      self._tb.flush()

  def close(self):
    if self._jsonl:
      self._jsonl.close()
    if self._tb:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """The rows of a run's metrics.jsonl (a resumed run appends: later rows win)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class Progress:
  """Formats 'step 1200/4680 (26%) | loss 0.41 | 5,310 img/s | ETA 1m05s'."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int):
    self.total_steps, self.batch_size = total_steps, batch_size
    self._t0, self._step0 = time.time(), start_step

  def restart_clock(self, step: int):
    """Call after the first step, so compilation does not count as throughput."""
    self._t0, self._step0 = time.time(), step

  def steps_per_second(self, step: int) -> float:
    elapsed, done = time.time() - self._t0, step - self._step0
    return done / elapsed if elapsed > 0 and done > 0 else float("nan")

  def images_per_second(self, step: int) -> float:
    return self.steps_per_second(step) * self.batch_size

  def line(self, step: int, scalars: dict[str, float]) -> str:
    rate = self.steps_per_second(step)
    eta = (self.total_steps - step) / rate if rate == rate and rate > 0 else float("nan")
    shown = " | ".join(f"{k} {v:.4g}" for k, v in scalars.items())
    return (f"step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%) | "
            f"{shown} | {rate * self.batch_size:,.0f} img/s | ETA {_duration(eta)}")

  def log(self, step: int, scalars: dict[str, float]):
    logging.info("%s", self.line(step, scalars))


def _duration(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  minutes, s = divmod(int(seconds), 60)
  hours, m = divmod(minutes, 60)
  return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


def series(workdir: str, key: str) -> tuple[list[int], list[float]]:
  """(steps, values) of `key` in a run's metrics.jsonl, one value per step.

  A resumed run appends rows for steps it repeats; the later row wins.
  """
  by_step = {}
  for row in read_metrics(workdir):
    if key in row:
      by_step[row["step"]] = row[key]
  steps = sorted(by_step)
  return steps, [by_step[s] for s in steps]


def steps_to_reach(workdir: str, key: str, target: float) -> int | None:
  """The first logged step at which `key` is <= target (an error), or None."""
  for step, value in zip(*series(workdir, key)):
    if value <= target:
      return step
  return None
