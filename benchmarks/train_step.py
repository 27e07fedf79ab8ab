"""Training-step speed: this project's JAX step against PyTorch, in the same run.

  pip install -r requirements-bench.txt      # torch 2.13.0, CPU build
  python -m benchmarks.train_step            # all networks, ~25 min on 2 cores
  python -m benchmarks.train_step --networks=lenet5,resnet20 --repeats=3

For each network, JAX, PyTorch and the plain JAX step (XLA's default flags
and flax's max pooling: the "before" of the project's optimisations; leave it
out with --noplain) take turns, rotating which goes first, each in a fresh
process, so neither inherits the
other's warm caches or memory and peak memory is per framework. A process
times `--timings` windows of `--steps` steps after a warm-up and reports the
median. Both sides train the same network (same shapes, parameter count,
initialisation scheme) with SGD + momentum 0.9 on one fixed float32 batch, so
the input pipeline is left out. PyTorch runs both memory layouts and the best
counts ("best layout"). The machine's ceilings are measured in the same run:
an fp32 4096x4096 matmul and a 3x3 conv (batch 128, 32x32, 64->64) forward
plus both backward passes, in each framework.

Achieved GFLOP/s counts 3x the forward FLOPs of research.models.summary
(forward, input-gradient and weight-gradient passes).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

_NETWORKS = flags.DEFINE_list("networks", "lenet5,flax_example_cnn,resnet20,resnet56,resnet50",
                              "Networks to time.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Alternating JAX/PyTorch processes per network.")
_TIMINGS = flags.DEFINE_integer("timings", 5, "Timed windows per process (median reported).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch for the 28x28 networks.")
_RESNET50_BATCH = flags.DEFINE_integer("resnet50_batch", 16, "Batch for ResNet-50 at 224x224.")
_PLAIN = flags.DEFINE_bool("plain", True, "Also time the plain JAX step (XLA's default flags, "
                           "flax's max pooling): the 'before' of the project's optimisations.")
_WORKER = flags.DEFINE_enum("worker", None, ["jax", "jax_plain", "torch", "ceilings"],
                            "Internal.")
_NETWORK = flags.DEFINE_string("network", None, "Internal: the worker's network.")

# glibc otherwise returns large buffers to the OS after every step and page-faults
# them back (measured: PyTorch 1.2-1.5x faster with these); both sides get them.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
_INPUT = {"resnet50": (224, 224, 3, 1000)}  # Others: 28x28x1, 10 classes.


def _shape(network: str):
  return _INPUT.get(network, (28, 28, 1, 10))


def _batch(network: str) -> int:
  return _RESNET50_BATCH.value if network == "resnet50" else _BATCH.value


def _steps_per_window(network: str) -> int:
  return {"lenet5": 50, "flax_example_cnn": 20, "resnet20": 5, "resnet56": 2}.get(network, 1)


def _rate(images_per_s: float) -> str:
  return f"{images_per_s:,.0f}" if images_per_s >= 100 else f"{images_per_s:.1f}"


def _peak_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_windows(run_steps, n_steps: int) -> list[float]:
  """Seconds per step over each timed window."""
  times = []
  for _ in range(_TIMINGS.value):
    start = time.perf_counter()
    run_steps(n_steps)
    times.append((time.perf_counter() - start) / n_steps)
  return times


# --- Workers (one framework, one network, one process) -----------------------

def jax_plain_worker(network: str) -> dict:
  """The step without the project's optimisations (the spawn also clears XLA_FLAGS)."""
  import flax.linen as nn
  from research.models import layers
  layers.pooling.max_pool = lambda x, w, s, p: nn.max_pool(x, (w, w), (s, s), p)
  return jax_worker(network)


def jax_worker(network: str) -> dict:
  import jax
  import numpy as np
  import optax
  from research import models
  from research.train import steps
  h, w, c, classes = _shape(network)
  bs = _batch(network)
  kwargs = {"c3_table": False} if network == "lenet5" else {}
  model = models.get_model(network, num_classes=classes, **kwargs)
  tx = optax.sgd(0.01, momentum=0.9)
  state = steps.create_train_state(model, tx, (1, h, w, c), seed=0)
  train_step = jax.jit(steps.make_train_step(model, tx, mean=(0.5,), std=(0.25,)),
                       donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = jax.device_put({"image": rng.integers(0, 256, (bs, h, w, c), dtype=np.uint8),
                          "label": rng.integers(0, classes, bs).astype(np.int32)})
  start = time.perf_counter()
  state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start

  def run_steps(n):
    nonlocal state, metrics
    for _ in range(n):
      state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)

  run_steps(1)
  times = _time_windows(run_steps, _steps_per_window(network))
  return {"step_s": statistics.median(times), "times": times, "compile_s": compile_s,
          "peak_mb": _peak_mb()}


def torch_worker(network: str) -> dict:
  import torch
  from benchmarks import torch_models
  ctor, (c, h, w), classes = torch_models.NETWORKS[network]
  bs = _batch(network)
  torch.manual_seed(0)
  results = {}
  for layout in (torch.contiguous_format, torch.channels_last):
    model = ctor().to(memory_format=layout)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (bs, c, h, w), dtype=torch.uint8)
    y = torch.randint(0, classes, (bs,))
    step = torch_models.make_train_step(model, opt, x, y, layout)

    def run_steps(n):
      for _ in range(n):
        step()

    start = time.perf_counter()
    run_steps(2)
    warmup_s = time.perf_counter() - start
    times = _time_windows(run_steps, _steps_per_window(network))
    name = "channels_last" if layout == torch.channels_last else "contiguous"
    results[name] = {"step_s": statistics.median(times), "times": times, "warmup_s": warmup_s}
  best = min(results, key=lambda k: results[k]["step_s"])
  return {**results[best], "layout": best, "layouts": results, "peak_mb": _peak_mb(),
          "threads": torch.get_num_threads()}


def ceilings_worker(_: str) -> dict:
  """GFLOP/s of an fp32 4096^2 matmul and a 3x3 conv fwd+bwd, in both frameworks."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  def best_rate(fn, flops, n=5):
    fn()
    times = []
    for _ in range(n):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9

  n = 4096
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)
  ta = torch.randn(n, n)
  # Conv: batch 128, 32x32, 64 -> 64, 3x3 'same'; fwd + input grad + weight grad.
  conv_flops = 3 * 2 * 128 * 32 * 32 * 64 * 64 * 9
  x = jnp.ones((128, 32, 32, 64), jnp.float32)
  k = jnp.ones((3, 3, 64, 64), jnp.float32) * 0.01

  def conv_loss(x, k):
    y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(y * y)
  conv_grads = jax.jit(jax.grad(conv_loss, argnums=(0, 1)))
  tx = torch.ones(128, 64, 32, 32).contiguous(memory_format=torch.channels_last)
  tx.requires_grad_(True)
  tk = (torch.ones(64, 64, 3, 3) * 0.01).requires_grad_(True)

  def torch_conv():
    y = torch.nn.functional.conv2d(tx, tk, padding=1)
    (y * y).sum().backward()

  return {
      "jax_matmul": best_rate(lambda: matmul(a).block_until_ready(), 2 * n ** 3),
      "torch_matmul": best_rate(lambda: ta @ ta, 2 * n ** 3),
      "jax_conv": best_rate(lambda: jax.block_until_ready(conv_grads(x, k)), conv_flops),
      "torch_conv": best_rate(torch_conv, conv_flops),
  }


# --- Driver --------------------------------------------------------------------

_PLAIN_ENV = {"RESEARCH_XLA_DEFAULTS": "0", "XLA_FLAGS": ""}


def _spawn(worker: str, network: str) -> dict:
  cmd = [sys.executable, "-m", "benchmarks.train_step", f"--worker={worker}",
         f"--network={network}", f"--timings={_TIMINGS.value}",
         f"--batch_size={_BATCH.value}", f"--resnet50_batch={_RESNET50_BATCH.value}"]
  env = {**os.environ, **_MALLOC_ENV, **(_PLAIN_ENV if worker == "jax_plain" else {})}
  result = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if result.returncode:
    raise RuntimeError(f"{worker} worker for {network} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def _forward_flops(network: str) -> float:
  from research import models
  from research.models import summary
  h, w, c, classes = _shape(network)
  kwargs = {"c3_table": False} if network == "lenet5" else {}
  return summary.summarize(models.get_model(network, num_classes=classes, **kwargs),
                           (h, w, c)).total_flops


def main(argv):
  del argv
  if _WORKER.value:
    worker = {"jax": jax_worker, "jax_plain": jax_plain_worker, "torch": torch_worker,
              "ceilings": ceilings_worker}
    print(json.dumps(worker[_WORKER.value](_NETWORK.value)))
    return
  import research  # noqa: F401  Sets the project's XLA flags, as the workers see them.
  import jax
  import torch
  print(f"JAX {jax.__version__} ({os.environ.get('XLA_FLAGS', '')!r}), torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs; float32; median of {_TIMINGS.value} windows, "
        f"{_REPEATS.value} alternating processes per framework", flush=True)
  ceilings = _spawn("ceilings", "")
  print("ceilings GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in ceilings.items()), flush=True)
  rows = []
  for network in _NETWORKS.value:
    workers = ["jax", "torch"] + (["jax_plain"] if _PLAIN.value else [])
    runs = {w: [] for w in workers}
    for r in range(_REPEATS.value):
      for worker in workers[r % len(workers):] + workers[:r % len(workers)]:
        runs[worker].append(_spawn(worker, network))
    bs = _batch(network)
    jax_s = statistics.median(x["step_s"] for x in runs["jax"])
    torch_s = statistics.median(x["step_s"] for x in runs["torch"])
    train_gflop = 3 * _forward_flops(network) * bs / 1e9
    row = {
        "network": network, "batch": bs,
        "jax_img_s": bs / jax_s, "torch_img_s": bs / torch_s,
        "torch_layout": runs["torch"][0]["layout"], "ratio": torch_s / jax_s,
        "jax_gflops": train_gflop / jax_s, "torch_gflops": train_gflop / torch_s,
        "jax_compile_s": statistics.median(x["compile_s"] for x in runs["jax"]),
        "jax_peak_mb": max(x["peak_mb"] for x in runs["jax"]),
        "torch_peak_mb": max(x["peak_mb"] for x in runs["torch"]),
    }
    if _PLAIN.value:
      plain_s = statistics.median(x["step_s"] for x in runs["jax_plain"])
      row.update(plain_img_s=bs / plain_s, plain_ratio=torch_s / plain_s)
    rows.append(row)
    print(f"{network}: JAX {row['jax_img_s']:,.0f} img/s, PyTorch {row['torch_img_s']:,.0f} "
          f"({row['torch_layout']}), ratio {row['ratio']:.2f}"
          + (f"; plain JAX {row['plain_img_s']:,.0f} (ratio {row['plain_ratio']:.2f})"
             if _PLAIN.value else ""), flush=True)

  print()
  print("| network | batch | JAX img/s | PyTorch img/s (best layout) | JAX/PyTorch | JAX GFLOP/s "
        "(% conv ceiling) | PyTorch GFLOP/s | JAX compile s | peak MB JAX / PyTorch |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['network']} | {r['batch']} | {_rate(r['jax_img_s'])} | {_rate(r['torch_img_s'])} "
          f"({r['torch_layout']}) | {r['ratio']:.2f}x | {r['jax_gflops']:.0f} "
          f"({100 * r['jax_gflops'] / ceilings['jax_conv']:.0f}%) | {r['torch_gflops']:.0f} | "
          f"{r['jax_compile_s']:.1f} | {r['jax_peak_mb']:,.0f} / {r['torch_peak_mb']:,.0f} |")
  if _PLAIN.value:
    print("\nBefore and after the project's optimisations (plain: XLA's default flags and "
          "flax's max pooling):\n")
    print("| network | plain JAX img/s | JAX/PyTorch | project JAX img/s | JAX/PyTorch |")
    print("|---|---|---|---|---|")
    for r in rows:
      print(f"| {r['network']} | {_rate(r['plain_img_s'])} | {r['plain_ratio']:.2f}x | "
            f"{_rate(r['jax_img_s'])} | {r['ratio']:.2f}x |")


if __name__ == "__main__":
  app.run(main)
