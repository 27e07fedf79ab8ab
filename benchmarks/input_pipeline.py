"""Does the input pipeline keep up with training? Measures both in one run.

  python -m benchmarks.input_pipeline [--batch_size=128] [--steps=300]

Prints images/s for each way of reading Fashion-MNIST (one TFDS record at a
time through grain, one batched read per step, decoded into memory first) and
for the LeNet-5 training step that consumes them, fed from memory. The
pipeline keeps up when its rate is above the step's.
"""

import itertools
import time

from absl import app, flags
import grain
import jax
import numpy as np
import optax

from research import models
from research.data import datasets, pipeline, tfds_source
from research.train import steps

_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 300, "Batches to time for each reader.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir.")


def _rate(batches, n: int, batch_size: int) -> float:
  next(batches)  # Warm-up (threads, first read).
  start = time.perf_counter()
  for _ in itertools.islice(batches, n):
    pass
  return n * batch_size / (time.perf_counter() - start)


def main(_):
  bs, n = _BATCH.value, _STEPS.value
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

  print(f"Fashion-MNIST, batch {bs}, {jax.devices()[0].platform} x{jax.device_count()}")
  print(f"{'reader':<52}{'images/s':>12}{'x step':>10}")
  for name, rate in rows:
    print(f"{name:<52}{rate:>12,.0f}{rate / step_rate:>10.1f}")
  print(f"{'LeNet-5 training step (consumer)':<52}{step_rate:>12,.0f}{1.0:>10.1f}")


if __name__ == "__main__":
  app.run(main)
