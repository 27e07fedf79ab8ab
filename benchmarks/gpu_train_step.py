"""GPU training-step speed: this project's JAX step against PyTorch on the same GPU, same run.

  bash scripts/setup.sh --gpu                 # jax's CUDA build
  pip install torch==2.13.0                   # PyPI's Linux x86_64 wheel is the CUDA build
  python -m benchmarks.gpu_train_step         # ResNet-50 at 224, fp32 and bf16
  python -m benchmarks.gpu_train_step --batch_size=256 --dtypes=bfloat16

Each (framework, dtype) pair runs in a fresh process, taking turns, so peak
memory is per pair and neither inherits the other's caches; a process times
`--timings` windows of `--steps` steps after a warm-up and reports the median.
Both sides train ResNet-50 (benchmarks/torch_models.py mirrors the Flax model:
shapes, parameter count, initialisation) with SGD + momentum 0.9 on one fixed
uint8 batch that each step scales and standardises, so the input pipeline is
left out:

  JAX      steps.make_train_step, config.compute_dtype "float32" or "bfloat16"
           (bf16 compute, float32 parameters, optimizer state and loss:
           research/train/precision.py).
  PyTorch  channels-last (its fast layout on GPUs), cuDNN autotuning on; fp32,
           or bf16 autocast (float32 parameters and optimizer state, the same
           policy).

Reported: images/s, ms per step, peak device memory (JAX: the allocator's
peak_bytes_in_use; PyTorch: torch.cuda.max_memory_allocated; both count
parameters, optimizer state, activations and workspace), JAX's compile time.
Without a GPU it prints one line saying so and exits with status 0.
`--device=cpu` runs the same code on the CPU (for its test, with tiny shapes:
the numbers then mean nothing).
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

_NETWORK = flags.DEFINE_string("network", "resnet50", "A network of benchmarks/torch_models.py.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input height and width (resnet50 only; "
                                   "the others keep their own input).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch per step.")
_DTYPES = flags.DEFINE_list("dtypes", "float32,bfloat16", "Compute dtypes to time.")
_FRAMEWORKS = flags.DEFINE_list("frameworks", "jax,torch", "Frameworks to time.")
_STEPS = flags.DEFINE_integer("steps", 10, "Steps per timed window.")
_TIMINGS = flags.DEFINE_integer("timings", 5, "Timed windows per process (median reported).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Processes per (framework, dtype), alternating.")
_DEVICE = flags.DEFINE_enum("device", "gpu", ["gpu", "cpu"],
                            "gpu; cpu only to test this script's code path.")
_WORKER = flags.DEFINE_string("worker", None, "Internal: probe | jax | torch.")
_DTYPE = flags.DEFINE_string("dtype", None, "Internal: the worker's dtype.")


def _input_shape() -> tuple[tuple[int, int, int], int]:
  """((H, W, C), classes) of --network: ResNet-50 --image_size x 3, 1,000 classes; the
  others 28x28x1, 10 classes (benchmarks/torch_models.py's inputs, without importing torch)."""
  if _NETWORK.value == "resnet50":
    return (_IMAGE_SIZE.value, _IMAGE_SIZE.value, 3), 1000
  return (28, 28, 1), 10


def _windows(run_steps) -> list[float]:
  """Seconds per step in each of --timings windows of --steps steps (run_steps blocks)."""
  run_steps(2)  # Warm-up: compilation, autotuning, allocator growth.
  per_step = []
  for _ in range(_TIMINGS.value):
    start = time.perf_counter()
    run_steps(_STEPS.value)
    per_step.append((time.perf_counter() - start) / _STEPS.value)
  return per_step


def _host_peak_mb() -> float:
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- Workers (one framework, one dtype, one process) -------------------------

def probe_worker() -> dict:
  """What this machine offers: JAX's devices of --device, torch's CUDA."""
  import jax
  info = {"jax": jax.__version__, "platform": jax.default_backend(),
          "devices": [d.device_kind for d in jax.devices()]}
  try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.cuda.is_available(),
                torch_device=(torch.cuda.get_device_name(0) if torch.cuda.is_available()
                              else "cpu"))
  except ImportError:
    info.update(torch=None, torch_cuda=False)
  return info


def jax_worker(dtype: str) -> dict:
  import jax
  import numpy as np
  import optax
  from research import models
  from research.train import steps
  (h, w, c), classes = _input_shape()
  bs = _BATCH.value
  kwargs = {"c3_table": False} if _NETWORK.value == "lenet5" else {}
  model = models.get_model(_NETWORK.value, num_classes=classes, **kwargs)
  tx = optax.sgd(0.01, momentum=0.9)
  state = jax.jit(lambda: steps.create_train_state(model, tx, (1, h, w, c), seed=0))()
  step = jax.jit(steps.make_train_step(model, tx, mean=(0.5,) * c, std=(0.25,) * c,
                                       compute_dtype=dtype), donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = jax.device_put({"image": rng.integers(0, 256, (bs, h, w, c), dtype=np.uint8),
                          "label": rng.integers(0, classes, bs).astype(np.int32)})
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start

  def run_steps(n):
    nonlocal state
    for _ in range(n):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)

  per_step = _windows(run_steps)
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return {"step_s": statistics.median(per_step), "times": per_step, "compile_s": compile_s,
          "peak_mb": peak / 2 ** 20 if peak else _host_peak_mb(),
          "memory": "device" if peak else "host RSS"}


def torch_worker(dtype: str) -> dict:
  import torch
  from benchmarks import torch_models
  ctor = torch_models.NETWORKS[_NETWORK.value][0]
  (h, w, c), classes = _input_shape()
  cuda = _DEVICE.value == "gpu"
  device = torch.device("cuda" if cuda else "cpu")
  torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)
  model = ctor().to(device, memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  bs = _BATCH.value
  x = torch.randint(0, 256, (bs, c, h, w), dtype=torch.uint8, device=device)
  y = torch.randint(0, classes, (bs,), device=device)
  step = torch_models.make_train_step(model, opt, x, y, torch.channels_last,
                                      autocast_bf16=dtype == "bfloat16")

  def run_steps(n):
    for _ in range(n):
      step()
    if cuda:
      torch.cuda.synchronize()

  if cuda:
    torch.cuda.reset_peak_memory_stats()
  per_step = _windows(run_steps)
  return {"step_s": statistics.median(per_step), "times": per_step,
          "peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else _host_peak_mb(),
          "memory": "device" if cuda else "host RSS"}


# --- Driver ------------------------------------------------------------------

def _spawn(worker: str, dtype: str = "") -> dict:
  flag_names = ("network", "image_size", "batch_size", "steps", "timings", "device")
  cmd = [sys.executable, "-m", "benchmarks.gpu_train_step", f"--worker={worker}",
         f"--dtype={dtype}"] + [f"--{f}={flags.FLAGS[f].value}" for f in flag_names]
  env = dict(os.environ)
  if _DEVICE.value == "cpu":
    env["JAX_PLATFORMS"] = "cpu"
  result = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if result.returncode:
    raise RuntimeError(f"{worker} {dtype} worker failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def _no_gpu_reason(probe: dict, frameworks: list[str]) -> str | None:
  """Why the GPU benchmark cannot run here, in one line; None when it can."""
  if "jax" in frameworks and probe["platform"] != "gpu":
    return (f"No GPU: JAX {probe['jax']} runs on {probe['platform']} ({probe['devices'][0]}); "
            "this benchmark needs an NVIDIA GPU and jax's CUDA build "
            "(bash scripts/setup.sh --gpu). Nothing was measured.")
  if "torch" in frameworks and not probe["torch_cuda"]:
    found = f"torch {probe['torch']} has no CUDA" if probe["torch"] else "no torch"
    return (f"No GPU for PyTorch ({found}); install PyPI's CUDA build (pip install "
            "torch==2.13.0) or pass --frameworks=jax. Nothing was measured.")
  return None


def main(argv):
  del argv
  if _WORKER.value:
    worker = {"probe": lambda _: probe_worker(), "jax": jax_worker, "torch": torch_worker}
    print(json.dumps(worker[_WORKER.value](_DTYPE.value)))
    return
  frameworks, dtypes = _FRAMEWORKS.value, _DTYPES.value
  bad = [f for f in frameworks if f not in ("jax", "torch")]
  bad += [d for d in dtypes if d not in ("float32", "bfloat16")]
  if bad:
    sys.exit(f"Unknown --frameworks/--dtypes values {bad}: frameworks are jax and torch, "
             "dtypes float32 and bfloat16.")
  probe = _spawn("probe")
  reason = _no_gpu_reason(probe, frameworks) if _DEVICE.value == "gpu" else None
  if reason:
    print(reason)
    return
  (h, w, c), _ = _input_shape()
  print(f"{_NETWORK.value} {h}x{w}x{c}, batch {_BATCH.value}; JAX {probe['jax']} on "
        f"{probe['devices'][0]} (x{len(probe['devices'])}, the first used), torch "
        f"{probe.get('torch')} on {probe.get('torch_device')}; median of {_TIMINGS.value} "
        f"windows of {_STEPS.value} steps, {_REPEATS.value} processes each", flush=True)
  pairs = [(f, d) for d in dtypes for f in frameworks]
  runs = {p: [] for p in pairs}
  for r in range(_REPEATS.value):  # Rotate who goes first.
    for pair in pairs[r % len(pairs):] + pairs[:r % len(pairs)]:
      runs[pair].append(_spawn(pair[0], pair[1]))
      print(f"  {pair[0]} {pair[1]}: {1e3 * runs[pair][-1]['step_s']:.1f} ms/step", flush=True)

  bs = _BATCH.value
  print("\n| network | batch | dtype | framework | img/s | ms/step | peak MB | JAX compile s |")
  print("|---|---|---|---|---|---|---|---|")
  summary = {}
  for (framework, dtype), results in runs.items():
    step_s = statistics.median(x["step_s"] for x in results)
    summary[framework, dtype] = bs / step_s
    compile_s = (f"{statistics.median(x['compile_s'] for x in results):.1f}"
                 if framework == "jax" else "")
    memory = results[0]["memory"]
    print(f"| {_NETWORK.value} | {bs} | {dtype} | {framework} | {bs / step_s:,.0f} | "
          f"{1e3 * step_s:.1f} | {max(x['peak_mb'] for x in results):,.0f}"
          f"{'' if memory == 'device' else ' (' + memory + ')'} | {compile_s} |")
  for dtype in dtypes:
    if ("jax", dtype) in summary and ("torch", dtype) in summary:
      print(f"{dtype}: JAX/PyTorch {summary['jax', dtype] / summary['torch', dtype]:.2f}x")
  if _DEVICE.value == "cpu":
    print("(--device=cpu: a test of the code path; these are not GPU numbers.)")


if __name__ == "__main__":
  app.run(main)
