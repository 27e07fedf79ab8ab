"""Wall-clock timing of jitted functions, as the detection papers time their
detectors at test time (Girshick 2015, Table 4; Ren et al. 2015, Table 5): one
image at a time, after compilation.

`best_mean_seconds` times several functions, each over its own inputs, taking
turns within each pass (so all of them see the same load), and keeps each
one's best pass: on a shared machine the slower pass measures the other
processes. Used by fast_rcnn_measures (the detector with and without truncated
SVD) and faster_rcnn_measures (the whole detector and its proposal part), on
`one_image_batches`.
"""

from collections.abc import Callable, Sequence
import itertools
import time

import jax


def best_mean_seconds(timed: dict[str, tuple[Callable, Sequence[tuple]]],
                      passes: int = 2) -> dict[str, float]:
  """Mean wall seconds per call of each function, the best of `passes` passes.

  Args:
    timed: {name: (fn, inputs)}: fn(*args) for each args in inputs is timed,
      waiting for its result (jax.block_until_ready). One call of each fn on
      its first inputs comes before the timed ones (compilation, warm-up).
    passes: how many times each fn runs over all its inputs; in each pass the
      functions take turns, in the order of `timed`.

  Returns:
    {name: float seconds}: the pass's wall time over all inputs / their count,
    the lowest over the passes.

  Raises:
    ValueError: passes < 1 or a function without inputs.
  """
  empty = [name for name, (_, inputs) in timed.items() if not inputs]
  if passes < 1 or empty:
    raise ValueError(f"best_mean_seconds: passes={passes} (>= 1 needed), functions without "
                     f"inputs {empty}: time at least one call of each, once or more.")
  for fn, inputs in timed.values():
    jax.block_until_ready(fn(*inputs[0]))
  best = {name: float("inf") for name in timed}
  for _ in range(passes):
    for name, (fn, inputs) in timed.items():
      start = time.perf_counter()
      for args in inputs:
        jax.block_until_ready(fn(*args))
      best[name] = min(best[name], (time.perf_counter() - start) / len(inputs))
  return best


def one_image_batches(split, n: int) -> list[dict]:
  """The first n eval batches of one image each of `split` (an input split with
  eval_batches(batch_size)), on the device: read before any timing, so reading
  and rescaling images is not timed."""
  return [jax.device_put(batch) for batch in itertools.islice(split.eval_batches(1), n)]
