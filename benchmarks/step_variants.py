"""The training-step optimisations of the performance issue, each measured here.

  python -m benchmarks.step_variants      # about 7 minutes on 2 cores

Each candidate is timed against the project's default in the same run, each
in a fresh process (XLA reads its flags once per process), alternating which
goes first, and checked to compute the same numbers before it is timed:

  conv lowering   the 3x3 convolutions of CIFAR ResNet-20 on 28x28 (batch 128),
                  forward plus both backward passes: XLA's convolution with
                  the project's flags, with XLA's default flags (ynn fusion
                  on), lowered by hand to patches + one matmul (im2col), and
                  PyTorch's conv2d (channels-last) for reference, if installed.
  max pooling     2x2/2 max pooling forward and backward: flax's
                  `reduce_window` against the project's reshape with a
                  hand-routed gradient (research/ops/pooling.py).
  2-device split  ResNet-20's training step with the batch split over two
                  host devices (`--xla_force_host_platform_device_count=2`)
                  against one device.
  batch norm's share
                  ResNet-20's step against the same step with batch norm
                  replaced by the identity (a profile, not a candidate).
  profile         ResNet-20's step traced with jax.profiler: op time per kind
                  of XLA op (transposes, reductions, convolutions, fusions).
  steps per dispatch
                  10 training steps of LeNet-5 and the flax-example CNN as a
                  Python loop over the jitted step against one jitted
                  `lax.scan` over the 10 steps (same final parameters).

What the project keeps (see the README's performance section): the flag and
the pooling, because they measured faster; the others measured slower on this
backend and are not used by the trainer. Rerun this after a JAX upgrade: the
answer may change.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types

from absl import app, flags

_REPEATS = flags.DEFINE_integer("repeats", 2, "Fresh processes per variant.")
_SECTIONS = flags.DEFINE_list("sections", "conv,pool,split,batchnorm,profile,dispatch",
                               "What to measure.")
_WORKER = flags.DEFINE_string("worker", None, "Internal: the variant to time.")

CONV_SHAPES = [(128, 28, 16, 16), (128, 14, 32, 32), (128, 7, 64, 64)]  # N, H=W, C, O.
# As in train_step.py: glibc's malloc otherwise returns big buffers to the OS
# after every step (PyTorch measured 1.2-1.5x faster with these); all get them.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
_XLA_DEFAULTS = {"RESEARCH_XLA_DEFAULTS": "0", "XLA_FLAGS": ""}
_TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def _median_time(fn, windows: int = 5, per_window: int = 1) -> float:
  import jax
  jax.block_until_ready(fn())
  times = []
  for _ in range(windows):
    start = time.perf_counter()
    for _ in range(per_window):
      out = fn()
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) / per_window)
  return statistics.median(times)


# --- Workers -------------------------------------------------------------------

def conv_patches(x, kernel):
  """A stride-1 'SAME' conv as im2col + matmul: x [N, H, W, C], kernel [kh, kw, C, O]."""
  import jax.numpy as jnp
  kh, kw, c, o = kernel.shape
  n, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
  cols = jnp.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)],
                         axis=-1)
  return (cols.reshape(-1, kh * kw * c) @ kernel.reshape(-1, o)).reshape(n, h, w, o)


def conv_worker(lowering: str) -> dict:
  import research  # noqa: F401  The project's XLA flags (unless the env opts out).
  import jax
  import jax.numpy as jnp
  import numpy as np

  def xla_conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  conv = conv_patches if lowering == "patches" else xla_conv
  grads = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.square(conv(x, k))), argnums=(0, 1)))
  reference = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.square(xla_conv(x, k))),
                               argnums=(0, 1)))
  result = {}
  for n, h, c, o in CONV_SHAPES:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, h, h, c)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, c, o)) * 0.1, jnp.float32)
    error = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                for a, b in zip(grads(x, k), reference(x, k)))
    seconds = _median_time(lambda: grads(x, k), windows=7)
    result[f"{c}@{h}x{h}"] = {"s": seconds, "gflops": 3 * 2 * n * h * h * c * o * 9 / seconds / 1e9,
                              "rel_error": error}
  return result


def torch_conv_worker(_: str) -> dict:
  import torch
  result = {}
  for n, h, c, o in CONV_SHAPES:
    x = torch.randn(n, c, h, h).contiguous(memory_format=torch.channels_last).requires_grad_()
    k = (torch.randn(o, c, 3, 3) * 0.1).requires_grad_()

    def grads():
      torch.square(torch.nn.functional.conv2d(x, k, padding=1)).sum().backward()
    grads()
    times = []
    for _ in range(7):
      start = time.perf_counter()
      grads()
      times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    result[f"{c}@{h}x{h}"] = {"s": seconds, "gflops": 3 * 2 * n * h * h * c * o * 9 / seconds / 1e9,
                              "rel_error": float("nan")}
  return result


POOL_SHAPES = [(128, 28, 28, 6), (128, 28, 28, 32), (128, 14, 14, 64)]


def pool_worker(kind: str) -> dict:
  import research  # noqa: F401
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from research.ops import pooling
  pool = {"flax": lambda x: nn.max_pool(x, (2, 2), (2, 2), "VALID"),
          "ours": lambda x: pooling.max_pool(x, 2, 2)}[kind]
  grad = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(pool(x)))))
  result = {}
  for shape in POOL_SHAPES:
    x = jnp.maximum(jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32), 0)
    result["x".join(map(str, shape[1:]))] = {
        "s": _median_time(lambda: grad(x), windows=9),
        "grad_sum": float(jnp.sum(jnp.abs(grad(x))))}
  return result


def _train_setup(network: str, batch_size: int = 128, batches: int = 1):
  import research  # noqa: F401
  import jax
  import numpy as np
  import optax
  from research import models
  from research.train import steps
  kwargs = {"c3_table": False} if network == "lenet5" else {}
  model = models.get_model(network, num_classes=10, **kwargs)
  tx = optax.sgd(0.01, momentum=0.9)
  state = steps.create_train_state(model, tx, (1, 28, 28, 1), seed=0)
  step = steps.make_train_step(model, tx, mean=(0.5,), std=(0.25,))
  rng = np.random.default_rng(0)
  data = {"image": rng.integers(0, 256, (batches, batch_size, 28, 28, 1), dtype=np.uint8),
          "label": rng.integers(0, 10, (batches, batch_size)).astype(np.int32)}
  return jax, state, step, data


def profile_worker(network: str) -> dict:
  """Milliseconds per step by kind of XLA op, from a perfetto trace of 10 steps."""
  import collections
  import glob
  import gzip
  import re
  import tempfile
  jax, state, step, data = _train_setup(network)
  train_step = jax.jit(step, donate_argnums=0)
  batch = jax.device_put({k: v[0] for k, v in data.items()})
  for _ in range(3):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  n = 10
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(n):
        state, metrics = train_step(state, batch)
      jax.block_until_ready(metrics)
    wall = (time.perf_counter() - start) / n
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    trace = json.load(gzip.open(path))
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  kinds = collections.Counter()
  for event in events:
    name = event.get("name", "")
    # XLA's ops are named like "transpose_copy_fusion.23"; the rest is runtime and Python.
    if event.get("ph") != "X" or name.startswith(("$", "Thunk", "Pjit", "Common")):
      continue
    kind = re.sub(r"[.\d]+$", "", name)
    kinds["convolution" if "conv" in kind else kind] += event["dur"] / 1e3 / n
  return {"wall_ms": 1e3 * wall, "ms_by_kind": dict(kinds.most_common(8))}


def resnet20_step_worker(variant: str) -> dict:
  """ResNet-20's step, batch 128: "default", "no_batchnorm" (batch norm replaced by
  the identity: a profile), or the batch split over all devices (run it with
  _TWO_DEVICES)."""
  if variant == "no_batchnorm":
    import flax.linen as nn
    from research.models import resnet

    class Identity(nn.Module):
      use_running_average: bool = False
      momentum: float = 0.9
      epsilon: float = 1e-5
      scale_init: object = None

      def __call__(self, x):
        return x
    resnet.nn = types.SimpleNamespace(**{**vars(nn), "BatchNorm": Identity})
  jax, state, step, data = _train_setup("resnet20")
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  mesh = Mesh(jax.devices(), ("data",))
  replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  state = jax.device_put(state, replicated)
  batch = jax.device_put({k: v[0] for k, v in data.items()}, split)
  train_step = jax.jit(step, donate_argnums=0, out_shardings=(replicated, replicated))
  _, metrics = train_step(jax.tree.map(lambda a: a.copy(), state), batch)
  loss = float(metrics["loss"])

  def run():
    nonlocal state
    state, m = train_step(state, batch)
    return m
  return {"s": _median_time(run, per_window=3), "first_loss": loss,
          "devices": jax.device_count()}


def dispatch_worker(spec: str) -> dict:
  network, mode = spec.split(":")
  k = 10
  jax, state, step, data = _train_setup(network, batches=k)
  batches = jax.device_put(data)
  if mode == "scan":
    many = jax.jit(lambda s, b: jax.lax.scan(step, s, b), donate_argnums=0)
  else:
    one = jax.jit(step, donate_argnums=0)

    def many(s, b):
      for i in range(k):
        s, m = one(s, {key: v[i] for key, v in b.items()})
      return s, m
  after, _ = many(jax.tree.map(lambda a: a.copy(), state), batches)
  leaves = [float(abs(x).sum()) for x in jax.tree.leaves(after.params)]

  def run():
    nonlocal state
    state, m = many(state, batches)
    return m
  return {"s": _median_time(run) / k, "param_abs_sums": leaves}


# --- Driver --------------------------------------------------------------------

def _spawn(worker: str, env: dict | None = None) -> dict:
  cmd = [sys.executable, "-m", "benchmarks.step_variants", f"--worker={worker}"]
  result = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, **_MALLOC_ENV, **(env or {})})
  if result.returncode:
    raise RuntimeError(f"worker {worker} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def _alternate(variants: dict) -> dict:
  """{name: (worker, env)} -> {name: [results]}, each variant `repeats` times, order rotating."""
  names = list(variants)
  runs = {name: [] for name in names}
  for r in range(_REPEATS.value):
    for name in names[r % len(names):] + names[:r % len(names)]:
      runs[name].append(_spawn(*variants[name]))
  return runs


def main(argv):
  del argv
  if _WORKER.value:
    kind, arg = _WORKER.value.split("=", 1)
    print(json.dumps({"conv": conv_worker, "torch_conv": torch_conv_worker,
                      "pool": pool_worker, "resnet20_step": resnet20_step_worker,
                      "profile": profile_worker,
                      "dispatch": dispatch_worker}[kind](arg)))
    return
  import jax
  print(f"JAX {jax.__version__}, {os.cpu_count()} CPUs, float32, median of timed windows, "
        f"{_REPEATS.value} fresh processes per variant\n", flush=True)

  sections = set(_SECTIONS.value)
  if "conv" in sections:
    _conv_section()
  if "pool" in sections:
    _pool_section()
  if "split" in sections:
    _resnet20_step_section(
        "ResNet-20 training step, batch 128, 28x28, on one device and split over two",
        {"1 device": ("resnet20_step=default", None),
         "2 host devices": ("resnet20_step=default", _TWO_DEVICES)})
  if "batchnorm" in sections:
    _resnet20_step_section(
        "ResNet-20 training step, batch 128 (where the time goes, not a candidate)",
        {"with batch norm": ("resnet20_step=default", None),
         "batch norm replaced by the identity": ("resnet20_step=no_batchnorm", None)})
  if "profile" in sections:
    _profile_section()
  if "dispatch" in sections:
    _dispatch_section()


def _conv_section():
  variants = {"XLA conv, project flags": ("conv=xla", None),
              "XLA conv, XLA's default flags": ("conv=xla", _XLA_DEFAULTS),
              "patches + matmul, project flags": ("conv=patches", None)}
  if importlib.util.find_spec("torch"):
    variants["PyTorch conv2d, channels-last (reference)"] = ("torch_conv=", None)
  runs = _alternate(variants)
  print("3x3 conv, batch 128, forward + both backward passes (ms; GFLOP/s; max relative "
        "gradient difference from XLA's conv):\n")
  print("| lowering | " + " | ".join(f"{c} ch, {h}x{h}" for _, h, c, _ in CONV_SHAPES) + " |")
  print("|---|" + "---|" * len(CONV_SHAPES))
  for name, results in runs.items():
    cells = []
    for shape in results[0]:
      s = statistics.median(r[shape]["s"] for r in results)
      err = max(r[shape]["rel_error"] for r in results)
      gflops = results[0][shape]["gflops"] * results[0][shape]["s"] / s
      cells.append(f"{1e3 * s:.1f} ms; {gflops:.0f}; " + ("-" if err != err else f"{err:.0e}"))
    print(f"| {name} | " + " | ".join(cells) + " |")


def _pool_section():
  runs = _alternate({"flax.linen.max_pool (reduce_window)": ("pool=flax", None),
                     "research.ops.pooling.max_pool": ("pool=ours", None)})
  print("\n2x2/2 max pooling of ReLU outputs, forward + backward (ms; sum of |gradient|):\n")
  print("| implementation | " + " | ".join("x".join(map(str, s[1:])) for s in POOL_SHAPES) + " |")
  print("|---|" + "---|" * len(POOL_SHAPES))
  for name, results in runs.items():
    cells = [f"{1e3 * statistics.median(r[k]['s'] for r in results):.1f} ms; "
             f"{results[0][k]['grad_sum']:.6g}" for k in results[0]]
    print(f"| {name} | " + " | ".join(cells) + " |")


def _resnet20_step_section(title: str, variants: dict) -> None:
  runs = _alternate(variants)
  base = statistics.median(r["s"] for r in runs[next(iter(variants))])
  print(f"\n{title}:\n")
  print("| variant | devices | ms per step | img/s | time vs. the first row | first-step loss |")
  print("|---|---|---|---|---|---|")
  for name, results in runs.items():
    s = statistics.median(r["s"] for r in results)
    print(f"| {name} | {results[0]['devices']} | {1e3 * s:.1f} | {128 / s:,.0f} | "
          f"{s / base:.0%} | {results[0]['first_loss']:.6f} |")


def _profile_section():
  result = _spawn("profile=resnet20")
  print(f"\nResNet-20 training step under jax.profiler ({result['wall_ms']:.0f} ms per step "
        "traced), the op kinds with the most time (ms per step; ops on parallel threads "
        "overlap):\n")
  print("| XLA op kind | ms per step |\n|---|---|")
  for kind, ms in result["ms_by_kind"].items():
    print(f"| {kind} | {ms:.1f} |")


def _dispatch_section():
  print("\n10 training steps per call, batch 128 (img/s; max relative difference of the "
        "final parameters' absolute sums from the loop's):\n")
  print("| network | Python loop over the jitted step | one jitted lax.scan | speed-up |")
  print("|---|---|---|---|")
  for network in ("lenet5", "flax_example_cnn"):
    runs = _alternate({m: (f"dispatch={network}:{m}", None) for m in ("loop", "scan")})
    loop, scan = (statistics.median(r["s"] for r in runs[m]) for m in ("loop", "scan"))
    diff = max(abs(a - b) / abs(b) for a, b in zip(runs["scan"][0]["param_abs_sums"],
                                                   runs["loop"][0]["param_abs_sums"]))
    print(f"| {network} | {128 / loop:,.0f} | {128 / scan:,.0f} (params differ by {diff:.0e}) "
          f"| {loop / scan:.2f}x |")


if __name__ == "__main__":
  app.run(main)
