"""Grain input pipelines whose data order is a pure function of (seed, step).

The training stream is a grain `MapDataset` of index batches: the example
indices are shuffled (differently each epoch), repeated forever and batched,
so the batch of step `s` is `index_batches[s]`, whatever happened before.
A run that is killed and resumed at step `s` therefore sees exactly the
batches an uninterrupted run would have seen.

Images leave the pipeline as uint8 (4x less to copy than float32); scaling
and normalisation happen inside the jitted step.
"""

from collections.abc import Iterator

import grain
import numpy as np

from research.data.tfds_source import ArraySplit


def index_batches(num_examples: int, batch_size: int, seed: int) -> grain.MapDataset:
  """Shuffled, repeated, batched example indices: `ds[step]` is int [batch_size]."""
  if batch_size > num_examples:
    raise ValueError(f"batch_size={batch_size} is larger than the dataset "
                     f"({num_examples} examples); lower config.batch_size.")
  return (grain.MapDataset.range(num_examples)
          .shuffle(seed=seed)
          .repeat()
          .batch(batch_size, drop_remainder=True, batch_fn=np.asarray))


def _process_slice(batch_size: int, process_index: int, process_count: int) -> slice:
  """The rows of a global batch that this process reads (multi-host)."""
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} is not divisible by the "
                     f"{process_count} processes.")
  per_process = batch_size // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)


def train_batches(data: ArraySplit, batch_size: int, seed: int, start_step: int = 0,
                  *, process_index: int = 0, process_count: int = 1,
                  prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
  """Yields this process's share of the global batch for steps start_step, ...

  Each item: {"image": uint8 [B/P, H, W, C], "label": int32 [B/P]}.
  """
  rows = _process_slice(batch_size, process_index, process_count)
  indices = index_batches(len(data), batch_size, seed)

  def gather(step: int) -> dict[str, np.ndarray]:
    # Sort the global batch, then take this process's rows: the same example lands
    # in the same row (and dropout mask) whatever the process count.
    idx = np.sort(indices[step])[rows]
    return {"image": data.images[idx], "label": data.labels[idx]}

  steps = grain.MapDataset.range(start_step, 2**62).map(gather)
  if prefetch:
    read = grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)
    yield from steps.to_iter_dataset(read_options=read)
  else:
    for step in range(start_step, 2**62):
      yield gather(step)


def eval_batches(data: ArraySplit, batch_size: int, *, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `data` in order, the last batch padded.

  Each item also has "mask": float32 [B/P], 1 for real examples and 0 for
  padding, so metrics are exact whatever the batch size and device count.
  """
  rows = _process_slice(batch_size, process_index, process_count)
  n = len(data)
  for lo in range(0, n, batch_size):
    idx = np.arange(lo, lo + batch_size)[rows]
    mask = (idx < n).astype(np.float32)
    idx = np.minimum(idx, n - 1)
    yield {"image": data.images[idx], "label": data.labels[idx], "mask": mask}
