"""Grain input pipelines whose batches are a pure function of (seed, step).

The training stream is a grain `MapDataset` of index batches: the example
indices are shuffled (differently each epoch), repeated forever and batched,
so the batch of step `s` is `index_batches[s]`, whatever happened before.
CPU-side preprocessing (`config.data.train_pp`, research/data/preprocess.py)
draws from one generator per example seeded with (seed, step, row), `row`
being the example's place in the sorted global batch. A run that is killed
and resumed at step `s` therefore sees exactly the batches an uninterrupted
one would have seen, crops and flips included, whatever the number of
processes or worker processes; no iterator state is checkpointed.

Two kinds of split give the trainer one interface (`InputSplit`): the
in-memory `MemorySplit` here (a decoded `ArraySplit`) and the
`streaming.StreamingSplit` (records read and decoded per batch, in grain
worker processes). Both assemble batches with `train_stream` / `eval_stream`
from a `read(indices) -> (images, labels)` function, so for the same
records and preprocessing they give the same batches.

Images leave the pipeline as uint8 (4x less to copy than float32); scaling
and normalisation happen inside the jitted step.
"""

from collections.abc import Callable, Iterator, Sequence
import ctypes
import functools
import math
import os
import signal
import sys

from absl import flags
import grain
import numpy as np

from research.data import preprocess
from research.data.reader import ArraySplit

# read(indices int [n]) -> (images: uint8 [n, H, W, C] or a sequence of uint8
# [H_i, W_i, C], labels: int32 [n]).
ReadFn = Callable[[np.ndarray], tuple[Sequence[np.ndarray], np.ndarray]]
PPFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]
_FOREVER = 2**62


def index_batches(num_examples: int, batch_size: int, seed: int) -> grain.MapDataset:
  """Shuffled, repeated, batched example indices: `ds[step]` is int [batch_size]."""
  if batch_size > num_examples:
    raise ValueError(f"batch_size={batch_size} is larger than the dataset "
                     f"({num_examples} examples); lower config.batch_size.")
  return (grain.MapDataset.range(num_examples)
          .shuffle(seed=seed)
          .repeat()
          .batch(batch_size, drop_remainder=True, batch_fn=np.asarray))


def distinct_batch_indices(num_examples: int, batch_size: int, seed: int, step: int
                           ) -> np.ndarray:
  """int [batch_size]: the examples of `step`, all distinct: epoch e = step //
  (num_examples // batch_size) is a permutation of the examples drawn from
  (seed, e), cut into whole batches (its last num_examples % batch_size
  examples wait for the next epoch's draw). `index_batches` lets a batch straddle
  two epochs, so one example can appear twice in it; a ranking loss whose
  negatives are the other rows of the batch cannot have that."""
  per_epoch = num_examples // batch_size
  if per_epoch < 1:
    raise ValueError(f"batch_size={batch_size} is larger than the dataset "
                     f"({num_examples} examples); lower config.batch_size.")
  epoch, i = divmod(int(step), per_epoch)
  order = np.random.default_rng([2, seed, epoch]).permutation(num_examples)
  return order[i * batch_size:(i + 1) * batch_size]


def process_slice(batch_size: int, process_index: int, process_count: int) -> slice:
  """The rows of a global batch that this process reads (multi-host)."""
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} is not divisible by the "
                     f"{process_count} processes.")
  per_process = batch_size // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)


def example_rng(seed: int, step: int, row: int) -> np.random.Generator:
  """The generator of the training example in `row` of the global batch of `step`."""
  return np.random.default_rng([0, seed, step, row])


def eval_rng(index: int) -> np.random.Generator:
  """The generator of example `index` of an evaluation split (fixed per example)."""
  return np.random.default_rng([1, index])


def preprocess_batch(pp: PPFn | None, images, rngs) -> np.ndarray:
  """uint8 [n, h, w, C]: `pp` applied to each of `images` with its generator of
  `rngs` (in order); `images` stacked as they are when `pp` is None."""
  if pp is None:
    return images if isinstance(images, np.ndarray) and images.dtype != object else np.stack(
        list(images))
  return np.stack([pp(np.asarray(image), rng) for image, rng in zip(images, rngs)])


def _die_with_parent(parent_pid: int, worker_index: int, worker_count: int) -> None:
  """Runs in each grain worker: end it when the training process ends.

  A training process killed outright (SIGKILL, out of memory) runs no
  clean-up, and grain's workers would otherwise live on, holding memory and
  the parent's output pipes. Linux: the kernel sends SIGKILL on the parent's
  death (prctl PR_SET_PDEATHSIG); elsewhere nothing is done.
  """
  del worker_index, worker_count
  if not sys.platform.startswith("linux"):
    return
  libc = ctypes.CDLL(None, use_errno=True)
  libc.prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG.
  if os.getppid() != parent_pid:  # The parent died before prctl took effect.
    os._exit(1)


def _iterate(steps: grain.MapDataset, load, first: int, prefetch: int,
             num_workers: int) -> Iterator:
  """The elements of `steps` (= load(first), load(first + 1), ...) in order:
  read in this process (prefetch 0), by one background thread, or by
  `num_workers` grain worker processes, each building whole batches."""
  if num_workers > 0:
    if not flags.FLAGS.is_parsed():
      # Grain's workers read absl flags; a program that parsed none (a notebook,
      # pytest) runs them with the defaults.
      flags.FLAGS.mark_as_parsed()
    read = grain.ReadOptions(num_threads=1, prefetch_buffer_size=max(prefetch, 1))
    options = grain.MultiprocessingOptions(num_workers=num_workers,
                                           per_worker_buffer_size=max(prefetch, 1))
    yield from steps.to_iter_dataset(read_options=read).mp_prefetch(
        options, worker_init_fn=functools.partial(_die_with_parent, os.getpid()))
  elif prefetch:
    read = grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)
    yield from steps.to_iter_dataset(read_options=read)
  else:
    step = first
    while True:
      yield load(step)
      step += 1


def step_batches(load_rows: Callable[[np.ndarray, list], dict], num_examples: int,
                 batch_size: int, seed: int, start_step: int = 0, *, process_index: int = 0,
                 process_count: int = 1, prefetch: int = 2, num_workers: int = 0,
                 batch_indices: Callable[[int], np.ndarray] | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Yields load_rows(idx, rngs) for steps start_step, ...: this process's share
  of each global batch, for any kind of example (classification, detection).

  idx: int [B/P], the examples of this process's rows r of the global batch of
  step s, sort(index_batches[s])[r]; rngs: their generators example_rng(seed,
  s, r). Sorting first, then slicing, puts the same example in the same row (and
  dropout mask, and crop) whatever the process count. batch_indices(step) -> int
  [batch_size] replaces index_batches[step] (e.g. epochs that never straddle a
  batch, `distinct_batch_indices`).

  Raises ValueError when batch_size exceeds num_examples or is not divisible
  by process_count.
  """
  rows = process_slice(batch_size, process_index, process_count)
  if batch_indices is None:
    batch_indices = index_batches(num_examples, batch_size, seed).__getitem__
  elif batch_size > num_examples:
    raise ValueError(f"batch_size={batch_size} is larger than the dataset "
                     f"({num_examples} examples); lower config.batch_size.")
  global_rows = np.arange(batch_size)[rows]

  def load(step: int) -> dict[str, np.ndarray]:
    rngs = [example_rng(seed, step, int(r)) for r in global_rows]
    return load_rows(np.sort(batch_indices(step))[rows], rngs)

  steps = grain.MapDataset.range(start_step, _FOREVER).map(load)
  return _iterate(steps, load, start_step, prefetch, num_workers)


def train_stream(read: ReadFn, num_examples: int, batch_size: int, seed: int,
                 start_step: int = 0, *, pp: PPFn | None = None, process_index: int = 0,
                 process_count: int = 1, prefetch: int = 2,
                 num_workers: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """Yields this process's share of the global batch for steps start_step, ...

  Each item: {"image": uint8 [B/P, H, W, C], "label": int32 [B/P]}, where row
  r of the global batch of step s holds example sort(index_batches[s])[r],
  preprocessed by `pp` with `example_rng(seed, s, r)` (see `step_batches`).
  """
  def load_rows(idx: np.ndarray, rngs: list) -> dict[str, np.ndarray]:
    images, labels = read(idx)
    return {"image": preprocess_batch(pp, images, rngs), "label": labels}

  return step_batches(load_rows, num_examples, batch_size, seed, start_step,
                      process_index=process_index, process_count=process_count,
                      prefetch=prefetch, num_workers=num_workers)


def padded_eval_batches(load_rows: Callable[[np.ndarray], dict], num_examples: int,
                        batch_size: int, *, process_index: int = 0,
                        process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass in order for splits that build their own batches: `load_rows(idx)`
  (int [B/P] example indices) for each batch, plus "mask" float32 [B/P], 0 for
  the padding of the last batch (copies of the last example)."""
  rows = process_slice(batch_size, process_index, process_count)
  for b in range(math.ceil(num_examples / batch_size)):
    idx = np.arange(b * batch_size, (b + 1) * batch_size)[rows]
    batch = load_rows(np.minimum(idx, num_examples - 1))
    batch["mask"] = (idx < num_examples).astype(np.float32)
    yield batch


def eval_stream(read: ReadFn, num_examples: int, batch_size: int, *,
                pp: PPFn | None = None, process_index: int = 0, process_count: int = 1,
                prefetch: int = 0, num_workers: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """One pass over examples 0 .. num_examples - 1 in order, the last batch padded.

  Each item: {"image", "label", "mask": float32 [B/P]}, mask 1 for real
  examples and 0 for padding (a copy of the last example), so metrics are exact
  whatever the batch size and device count. Example i is preprocessed with
  `eval_rng(i)`.
  """
  rows = process_slice(batch_size, process_index, process_count)
  num_batches = math.ceil(num_examples / batch_size)

  def load(b: int) -> dict[str, np.ndarray]:
    idx = np.arange(b * batch_size, (b + 1) * batch_size)[rows]
    mask = (idx < num_examples).astype(np.float32)
    idx = np.minimum(idx, num_examples - 1)
    images, labels = read(idx)
    rngs = (eval_rng(int(i)) for i in idx)
    return {"image": preprocess_batch(pp, images, rngs), "label": labels, "mask": mask}

  batches = _iterate(grain.MapDataset.range(num_batches).map(load), load, 0, prefetch,
                     num_workers)
  for _ in range(num_batches):  # The sequential path counts forever: stop at the end.
    yield next(batches)


class InputSplit:
  """What the trainer and the objectives read of a split, in memory or streamed.

  Attributes / methods of every split:
    len(split)           the number of examples
    class_names          tuple of str; num_classes its length
    image_shape          (H, W, C) of the training batches' images (after
                         train_pp): the model's input
    eval_image_shape     (H, W, C) of the eval batches' images (after eval_pp;
                         larger than image_shape for multi-crop test views)
    sample_images(n)     uint8 [min(n, len), *eval_image_shape]: the first
                         examples, as evaluated; e.g. for PCA, a GAN's
                         reference images
    take(n)              the split of the first n examples (same preprocessing)
    train_batches(batch_size, seed, start_step, *, process_index, process_count)
    eval_batches(batch_size, *, process_index, process_count)
    eval_batch_spec(batch_size)  {key: (shape, dtype)} of an eval batch, for
                         tracing the eval step before any work
  """
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  eval_image_shape: tuple[int, int, int]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    raise NotImplementedError

  def sample_images(self, n: int) -> np.ndarray:
    raise NotImplementedError

  def take(self, n: int) -> "InputSplit":
    raise NotImplementedError

  def train_batches(self, batch_size: int, seed: int, start_step: int = 0, *,
                    process_index: int = 0, process_count: int = 1,
                    prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
    raise NotImplementedError

  def eval_batches(self, batch_size: int, *, process_index: int = 0,
                   process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
    raise NotImplementedError

  def eval_batch_spec(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """{key: (shape, dtype)} of this split's eval batches (eval_batches' keys)."""
    return {"image": ((batch_size, *self.eval_image_shape), np.uint8),
            "label": ((batch_size,), np.int32), "mask": ((batch_size,), np.float32)}


class MemorySplit(InputSplit):
  """A split decoded into memory (`ArraySplit`), batches gathered by index.

  data.images: uint8 [N, H, W, C], or an object array [N] of uint8 [H_i, W_i, C]
  when the stored sizes vary (then `train_pp` and `eval_pp` must end at a
  fixed size). Batches are preprocessed here, in a background thread.
  """

  def __init__(self, data: ArraySplit, train_pp: str = "", eval_pp: str = "",
               rgb_eigh=None):
    self.data, self.class_names = data, data.class_names
    self.train_pp_spec, self.eval_pp_spec, self.rgb_eigh = train_pp, eval_pp, rgb_eigh
    self.train_pp = preprocess.build(train_pp, rgb_eigh)
    self.eval_pp = preprocess.build(eval_pp, rgb_eigh)
    stored = data.images.shape[1:]
    if data.images.dtype == object:  # Sizes vary: only the channels are known.
      stored = (None, None, np.asarray(data.images[0]).shape[-1] if len(data) else None)
    self.image_shape = (*preprocess.output_hw(train_pp, stored[:2]), stored[-1])
    self.eval_image_shape = (*preprocess.output_hw(eval_pp, stored[:2]), stored[-1])

  def __len__(self) -> int:
    return len(self.data)

  def _read(self, idx):
    return self.data.images[idx], self.data.labels[idx]

  def sample_images(self, n: int) -> np.ndarray:
    idx = np.arange(min(n, len(self)))
    rngs = (eval_rng(int(i)) for i in idx)
    return preprocess_batch(self.eval_pp, self.data.images[idx], rngs)

  def take(self, n: int) -> "MemorySplit":
    d = self.data
    return MemorySplit(ArraySplit(d.images[:n], d.labels[:n], d.class_names),
                       self.train_pp_spec, self.eval_pp_spec, self.rgb_eigh)

  def train_batches(self, batch_size, seed, start_step=0, *, process_index=0,
                    process_count=1, prefetch=2):
    return train_stream(self._read, len(self), batch_size, seed, start_step, pp=self.train_pp,
                        process_index=process_index, process_count=process_count,
                        prefetch=prefetch)

  def eval_batches(self, batch_size, *, process_index=0, process_count=1):
    return eval_stream(self._read, len(self), batch_size, pp=self.eval_pp,
                       process_index=process_index, process_count=process_count)


def as_input_split(data: ArraySplit | InputSplit) -> InputSplit:
  """`data` as an InputSplit: an ArraySplit is held in memory, unpreprocessed."""
  return MemorySplit(data) if isinstance(data, ArraySplit) else data


def train_batches(data: ArraySplit | InputSplit, batch_size: int, seed: int,
                  start_step: int = 0, *, process_index: int = 0, process_count: int = 1,
                  prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
  """The training batches of any split (the trainer's one call; see train_stream)."""
  return as_input_split(data).train_batches(
      batch_size, seed, start_step, process_index=process_index,
      process_count=process_count, prefetch=prefetch)


def eval_batches(data: ArraySplit | InputSplit, batch_size: int, *, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One padded, masked pass over any split (see eval_stream)."""
  return as_input_split(data).eval_batches(batch_size, process_index=process_index,
                                           process_count=process_count)
