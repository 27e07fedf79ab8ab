"""Does the input pipeline keep up with training? Measures both in one run.

  python -m benchmarks.input_pipeline [--batch_size=128] [--steps=300]
      [--jpeg_batch_size=64] [--jpeg_steps=16] [--workers=0,1,2]

Part 1, Fashion-MNIST (28x28 PNGs): images/s of each way of reading (one TFDS
record at a time through grain, one batched read per step, decoded into
memory first) against the LeNet-5 training step that consumes them. The
pipeline keeps up when its rate is above the step's.

Part 2, JPEG decoding at ImageNet sizes: the `photo_jpegs` dataset
(research/data/builders.py: 2,000 JPEGs of about 500x375, prepared locally on
first use) through the streaming reader with ImageNet's training
preprocessing, "inception_crop(224)|flip_lr", against the number of grain
worker processes; beside it the in-memory reader on the same data (decoded
once, then only the preprocessing per batch).
"""

import itertools
import os
import time

from absl import app, flags
import grain
import jax
import ml_collections
import numpy as np
import optax

from research import models
from research.data import datasets, inputs, pipeline, tfds_source
from research.train import steps

_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size (Fashion-MNIST).")
_STEPS = flags.DEFINE_integer("steps", 300, "Batches to time for each Fashion-MNIST reader.")
_JPEG_BATCH = flags.DEFINE_integer("jpeg_batch_size", 64, "Batch size (JPEGs).")
_JPEG_STEPS = flags.DEFINE_integer("jpeg_steps", 16, "Batches to time for each JPEG reader.")
_WORKERS = flags.DEFINE_list("workers", ["0", "1", "2"], "Worker process counts to time.")
_TRAIN_PP = flags.DEFINE_string("train_pp", "inception_crop(224)|flip_lr",
                                "Preprocessing of the JPEG readers.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir.")


def _rate(batches, n: int, batch_size: int, warmup: int = 1) -> float:
  for _ in range(warmup):  # Threads and worker processes start, first reads.
    next(batches)
  start = time.perf_counter()
  for _ in itertools.islice(batches, n):
    pass
  return n * batch_size / (time.perf_counter() - start)


def fashion_mnist_rows(bs: int, n: int) -> tuple[list, float]:
  """([(reader, images/s)], the LeNet-5 step's images/s)."""
  source, _ = tfds_source.open_source("fashion_mnist", "train", _DATA_DIR.value)
  indices = pipeline.index_batches(len(source), bs, seed=0)

  start = time.perf_counter()
  in_memory = tfds_source.load_split("fashion_mnist", "train", _DATA_DIR.value)
  decode_s = time.perf_counter() - start
  # The in-memory reader (the trainer's) and the step go first: the grain
  # readers below keep prefetching in background threads after their timing.
  rows = [(f"decoded into memory first ({decode_s:.1f} s once)",
           _rate(pipeline.train_batches(in_memory, bs, seed=0), n * 4, bs))]
  model = models.get_model("lenet5")
  tx = optax.adam(1e-3)
  state = steps.create_train_state(model, tx, (1, 28, 28, 1), seed=0)
  mean, std = datasets.normalization("fashion_mnist")
  step = jax.jit(steps.make_train_step(model, tx, mean=mean, std=std),
                 donate_argnums=0)
  batch = next(pipeline.train_batches(in_memory, bs, seed=0, prefetch=0))
  state, m = step(state, batch)
  jax.block_until_ready(m)
  start = time.perf_counter()
  for _ in range(n):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  step_rate = n * bs / (time.perf_counter() - start)

  per_record = (grain.MapDataset.range(len(source)).shuffle(seed=0).repeat()
                .map(lambda i: source[i]).batch(bs).to_iter_dataset())
  rows.append(("grain, one record per map call", _rate(iter(per_record), n // 4, bs)))
  batched_read = iter(indices.map(lambda idx: source.__getitems__(list(idx))))
  rows.append(("grain, one batched read per step", _rate(batched_read, n // 2, bs)))
  return rows, step_rate


def jpeg_rows(bs: int, n: int, workers: list[int]) -> list:
  """[(reader, images/s)] of the streaming reader per worker count, and in memory."""
  data = ml_collections.ConfigDict(dict(
      name="photo_jpegs", data_dir=_DATA_DIR.value, download=False, train_split="train",
      classes=(), pipeline="streaming", num_workers=0, memory_budget_gb=8.0,
      train_pp=_TRAIN_PP.value, eval_pp="resize_small(256)|central_crop(224)"))
  rows = []
  for w in workers:
    data.pipeline, data.num_workers = "streaming", w
    split = inputs.open_split(data, "train")
    # Every worker has started and delivered a batch before the clock starts.
    rows.append((f"streaming, {w} worker process(es)",
                 _rate(split.train_batches(bs, seed=0, start_step=0), n, bs,
                       warmup=2 * max(w, 1))))
  data.pipeline = "memory"
  start = time.perf_counter()
  split = inputs.open_split(data, "train")
  decode_s = time.perf_counter() - start
  rows.append((f"decoded into memory first ({decode_s:.1f} s once), pp per batch",
               _rate(split.train_batches(bs, seed=0, start_step=0), n, bs)))
  return rows


def main(_):
  print(f"{jax.devices()[0].platform} x{jax.device_count()}, {os.cpu_count()} CPU(s), "
        f"load average {os.getloadavg()[0]:.1f}")
  rows, step_rate = fashion_mnist_rows(_BATCH.value, _STEPS.value)
  print(f"\nFashion-MNIST, batch {_BATCH.value}")
  print(f"{'reader':<64}{'images/s':>12}{'x step':>10}")
  for name, rate in rows:
    print(f"{name:<64}{rate:>12,.0f}{rate / step_rate:>10.1f}")
  print(f"{'LeNet-5 training step (consumer)':<64}{step_rate:>12,.0f}{1.0:>10.1f}")

  rows = jpeg_rows(_JPEG_BATCH.value, _JPEG_STEPS.value, [int(w) for w in _WORKERS.value])
  print(f"\nphoto_jpegs (JPEG, about 500x375), {_TRAIN_PP.value!r}, batch "
        f"{_JPEG_BATCH.value}, {_JPEG_STEPS.value} batches timed")
  print(f"{'reader':<64}{'images/s':>12}")
  for name, rate in rows:
    print(f"{name:<64}{rate:>12,.0f}")
  print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  app.run(main)
