"""Fast R-CNN §3.1's truncated SVD: the two small matmuls against the big one, timed.

  nice -n 5 python -m benchmarks.truncated_svd [--rois=128] [--repeats=5]

For VGG16's fc6 (25088 -> 4096, t = 1024) and fc7 (4096 -> 4096, t = 256),
the paper's ranks, prints the weights of the layer and of its factorisation
(research/ops/svd.py) and the median time of x @ W against (x @ A) @ B for a
batch of `rois` RoIs, jitted, float32, on this machine's default JAX device.
Random matrices of the layers' shapes stand in for trained weights: the time
of a matmul depends on the shapes only, and an SVD of a 25088 x 4096 matrix
would take minutes here. FLOPs fall by in*out / (t (in + out)): 3.44x for
fc6, 8x for fc7.

Measured here (2 CPU cores shared with other jobs, load average ~12, so
noisy; 2026-11-29), median of 5:
  --rois=128: fc6 1033 ms -> 112 ms (9.2x), fc7 153 ms -> 12.8 ms (12x)
  --rois=512: fc6 3111 ms -> 965 ms (3.2x), fc7 524 ms -> 82.9 ms (6.3x)
At 512 RoIs fc6 gains about its FLOP ratio (3.44x); at 128 RoIs the big
matmul is slower per FLOP (reading its 411 MB of weights dominates), so the
factorisation gains more than its FLOPs. Fast R-CNN (§3.1, VGG16, GPU,
2,000 RoIs) reports detection time down by more than 30% overall, the fc
layers being about half of it.
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from research.ops import svd

_ROIS = flags.DEFINE_integer("rois", 128, "RoIs per batch (rows of x).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls of each; the median is printed.")

LAYERS = (("fc6", 25088, 4096, 1024), ("fc7", 4096, 4096, 256))  # Fast R-CNN §3.1, VGG16.


def _median_seconds(fn, *args, repeats: int) -> float:
  fn(*args).block_until_ready()  # Compile and warm up.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(*args).block_until_ready()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(_):
  keys = iter(jax.random.split(jax.random.key(0), 8))
  print(f"device {jax.devices()[0].device_kind}, {_ROIS.value} RoIs, float32, "
        f"median of {_REPEATS.value}")
  for name, fan_in, fan_out, rank in LAYERS:
    x = jax.random.normal(next(keys), (_ROIS.value, fan_in), jnp.float32)
    w = jax.random.normal(next(keys), (fan_in, fan_out), jnp.float32) * 0.01
    a = jax.random.normal(next(keys), (fan_in, rank), jnp.float32) * 0.01
    b = jax.random.normal(next(keys), (rank, fan_out), jnp.float32) * 0.01
    big = _median_seconds(jax.jit(lambda x, w: x @ w), x, w, repeats=_REPEATS.value)
    small = _median_seconds(jax.jit(lambda x, a, b: (x @ a) @ b), x, a, b,
                            repeats=_REPEATS.value)
    full, factored = svd.parameter_counts(fan_in, fan_out, rank)
    print(f"{name} {fan_in}x{fan_out} t={rank}: weights {full:,} -> {factored:,} "
          f"({full / factored:.2f}x fewer); {big * 1e3:.1f} ms -> {small * 1e3:.1f} ms "
          f"({big / small:.2f}x faster)")


if __name__ == "__main__":
  app.run(main)
