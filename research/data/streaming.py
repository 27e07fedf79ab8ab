"""A split read record by record from `tfds.data_source`, for data that does not
fit in memory (ImageNet: ~1.3M JPEGs of varying size).

Each batch reads and decodes only its own examples (this process's rows of
the global batch), then applies the CPU-side preprocessing
(research/data/preprocess.py); with `num_workers` > 0 whole batches are
built in that many grain worker processes (the program needs the absl
`__main__` guard, as launch.py has). The order and every random draw are
those of research/data/pipeline.py: a pure function of (seed, step, row),
so the in-memory and the streaming reader give the same batches and a
resumed run needs no iterator state.
"""

import numpy as np

from research.data import pipeline, preprocess, reader


class StreamingSplit(pipeline.InputSplit):
  """Examples [0, limit) of a random-access `source` (tfds.data_source), read per batch.

  Args:
    source: `source[i]` gives a dict of NumPy arrays (decoded by TFDS).
    info: the dataset's `tfds.core.DatasetInfo` (supervised keys, class names).
    train_pp, eval_pp: preprocessing op strings; each must end at a fixed
      size unless the stored images have one.
    rgb_eigh: (eigvals, eigvecs) for pca_lighting (default ImageNet's).
    num_workers: grain worker processes (0: read in this process, with one
      prefetching thread).
    limit: read only the first `limit` examples (None: all).
  """

  def __init__(self, source, info, *, train_pp: str = "", eval_pp: str = "", rgb_eigh=None,
               num_workers: int = 0, limit: int | None = None):
    self.source, self.info = source, info
    self.image_key, self.label_key = info.supervised_keys or ("image", "label")
    self.class_names = reader.class_names(info, self.label_key)
    self.train_pp_spec, self.eval_pp_spec, self.rgb_eigh = train_pp, eval_pp, rgb_eigh
    self.train_pp = preprocess.build(train_pp, rgb_eigh)
    self.eval_pp = preprocess.build(eval_pp, rgb_eigh)
    self.num_workers = num_workers
    self.limit = len(source) if limit is None else min(limit, len(source))
    stored = tuple(info.features[self.image_key].shape)
    shapes = {}
    for key, pp in (("train_pp", train_pp), ("eval_pp", eval_pp)):
      hw = preprocess.output_hw(pp, stored[:2])
      if None in hw:
        raise ValueError(f"{key}={pp!r} does not end at a fixed size for images of "
                         f"shape {stored}; end it with a crop or resize.")
      shapes[key] = (*hw, stored[-1])
    self.image_shape, self.eval_image_shape = shapes["train_pp"], shapes["eval_pp"]

  def __len__(self) -> int:
    return self.limit

  def _read(self, idx: np.ndarray):
    # TFDS decodes each record (JPEG/PNG) as it is read: here, in the worker
    # that builds the batch.
    records = reader.read_records(self.source, idx)
    return ([r[self.image_key] for r in records],
            np.asarray([r[self.label_key] for r in records], np.int32))

  def sample_images(self, n: int) -> np.ndarray:
    idx = np.arange(min(n, len(self)))
    images, _ = self._read(idx)
    return pipeline.preprocess_batch(self.eval_pp, images,
                                     (pipeline.eval_rng(int(i)) for i in idx))

  def take(self, n: int) -> "StreamingSplit":
    return StreamingSplit(self.source, self.info, train_pp=self.train_pp_spec,
                          eval_pp=self.eval_pp_spec, rgb_eigh=self.rgb_eigh,
                          num_workers=self.num_workers, limit=min(n, self.limit))

  def train_batches(self, batch_size, seed, start_step=0, *, process_index=0,
                    process_count=1, prefetch=2):
    return pipeline.train_stream(self._read, len(self), batch_size, seed, start_step,
                                 pp=self.train_pp, process_index=process_index,
                                 process_count=process_count, prefetch=prefetch,
                                 num_workers=self.num_workers)

  def eval_batches(self, batch_size, *, process_index=0, process_count=1):
    return pipeline.eval_stream(self._read, len(self), batch_size, pp=self.eval_pp,
                                process_index=process_index, process_count=process_count,
                                prefetch=2, num_workers=self.num_workers)

