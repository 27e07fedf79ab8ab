"""The oneDNN convolution op alone against XLA's, on ResNet-20's conv shapes (issue 15's stop rule).

  bash scripts/build_onednn_conv.sh            # once: build/onednn_conv/libonednn_conv.so
  python -m benchmarks.conv_op                 # ab, passes, profile: 5-15 min here
  python -m benchmarks.conv_op --sections=ab,threads,profile   # 11 min at load 10 (2026-11-29)

Sections:
  ab       forward + input gradient + weight gradient (one jitted function per
           implementation: y, vjp(dy)) of research/ops/onednn_conv.py against
           jax.lax.conv_general_dilated, in the same process, taking turns
           (A/B, then B/A, ...), `--rounds` rounds of `--iters` calls each. Per
           shape: median ms and the range over rounds, GFLOP/s of the medians,
           the ratio XLA/oneDNN of the medians and of the best rounds. The
           stop-rule ratio is the ResNet-20 total: each shape's time weighted by
           how many of ResNet-20's convolutions have it (stem left out).
  passes   the same, one pass at a time (forward, input gradient, weight
           gradient), to see which pass is slow.
  threads  the `ab` section in fresh processes with 1 and 2 oneDNN threads
           (RESEARCH_ONEDNN_THREADS), OpenMP's threads waiting passively (the
           op's default) or spinning (OMP_WAIT_POLICY=active), or with XLA's own
           thread pool off (--xla_cpu_multi_thread_eigen=false): oneDNN's
           OpenMP team against XLA's threads and other processes on the cores.
  profile  a fresh process with ONEDNN_VERBOSE=profile_exec: oneDNN's own time
           inside each primitive (convolutions and the weight reorders between
           JAX's HWIO and oneDNN's blocked layout) against the wall time of the
           call from JAX; the difference is the call's overhead (FFI, thread
           start-up and waiting).
The machine's load (os.getloadavg) is printed before and after each section:
the 2 cores here are shared, and fresh processes differ by 3-17%.
"""

import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time

from absl import app, flags

_SECTIONS = flags.DEFINE_list("sections", "ab,passes,profile", "Sections to run (see the docstring).")
_DTYPES = flags.DEFINE_list("dtypes", "float32,bfloat16", "Operand dtypes.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Alternating rounds per shape.")
_ITERS = flags.DEFINE_integer("iters", 3, "Calls timed per round.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch.")
_THREAD_VARIANTS = flags.DEFINE_list(
    "thread_variants", "1,2,2_active", "Section threads: 1 and 2 oneDNN threads (OpenMP waiting "
    "passively, the op's default), 2_active (spinning, OpenMP's default), 2_xla1 (XLA's own "
    "thread pool off).")
_WORKER = flags.DEFINE_enum("worker", None, ["ab", "profile"], "Internal: run one section, print JSON.")

# ResNet-20 on 32x32 (He et al. 2015, §4.2): (name, H=W, C in, C out, stride, padding as the
# model's common.window_padding gives it, count in the net).
SHAPES = (("32x32x16 s1", 32, 16, 16, 1, (1, 1), 6),
          ("32x32x16->32 s2", 32, 16, 32, 2, (1, 0), 1),
          ("16x16x32 s1", 16, 32, 32, 1, (1, 1), 5),
          ("16x16x32->64 s2", 16, 32, 64, 2, (1, 0), 1),
          ("8x8x64 s1", 8, 64, 64, 1, (1, 1), 5))
_PASSES = ("fwd", "bwd_data", "bwd_weights")


def _load() -> str:
  return "load average %.2f %.2f %.2f" % os.getloadavg()


def _out_size(h, stride, pad):
  return (h + pad[0] + pad[1] - 3) // stride + 1


def _gflop(h, cin, cout, stride, pad, batch) -> float:
  """One pass's GFLOP (2 per multiply-add); each backward pass costs the same."""
  return 2 * batch * _out_size(h, stride, pad) ** 2 * 9 * cin * cout / 1e9


def _functions(impl, stride, pad):
  """{pass name: jitted fn(x, w, dy)} for one implementation of the conv."""
  import jax
  conv = lambda x, w: impl(x, w, (stride, stride), [pad, pad],
                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
  def all_passes(x, w, dy):
    y, vjp = jax.vjp(conv, x, w)
    return (y,) + vjp(dy)
  return {"all": jax.jit(all_passes), "fwd": jax.jit(lambda x, w, dy: conv(x, w)),
          "bwd_data": jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)),
          "bwd_weights": jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy))}


def _time(fn, args, iters) -> float:
  import jax
  start = time.perf_counter()
  for _ in range(iters):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / iters


def _ab(passes: tuple[str, ...]) -> list[dict]:
  """Alternating rounds of XLA and oneDNN, per dtype, shape and pass: seconds per call."""
  import jax
  import jax.numpy as jnp
  from research.ops import onednn_conv
  if not onednn_conv.available():
    raise SystemExit(f"oneDNN conv not available: {onednn_conv.unavailable_reason()}")
  impls = {"xla": jax.lax.conv_general_dilated, "onednn": onednn_conv.conv_general_dilated}
  rows = []
  keys = jax.random.split(jax.random.key(0), 3)
  for dtype in _DTYPES.value:
    for name, h, cin, cout, stride, pad, count in SHAPES:
      oh = _out_size(h, stride, pad)
      args = (jax.random.normal(keys[0], (_BATCH.value, h, h, cin), dtype),
              jax.random.normal(keys[1], (3, 3, cin, cout), dtype) * 0.1,
              jax.random.normal(keys[2], (_BATCH.value, oh, oh, cout), dtype))
      fns = {impl: _functions(fn, stride, pad) for impl, fn in impls.items()}
      for p in passes:
        times = {impl: [] for impl in impls}
        for impl in impls:   # Compile and warm up (oneDNN creates its primitives here).
          for _ in range(2):
            _time(fns[impl][p], args, 1)
        for r in range(_ROUNDS.value):
          for impl in (("xla", "onednn") if r % 2 == 0 else ("onednn", "xla")):
            times[impl].append(_time(fns[impl][p], args, _ITERS.value))
        rows.append({"dtype": dtype, "shape": name, "count": count, "pass": p, **times,
                     "gflop": _gflop(h, cin, cout, stride, pad, _BATCH.value)
                              * (3 if p == "all" else 1)})
        print(f"  {dtype} {name} {p}: xla {statistics.median(times['xla']) * 1e3:.2f} ms, "
              f"onednn {statistics.median(times['onednn']) * 1e3:.2f} ms", file=sys.stderr)
  return rows


def _table(rows: list[dict]) -> str:
  lines = ["| dtype | shape | pass | XLA ms (range) | oneDNN ms (range) | XLA GFLOP/s | "
           "oneDNN GFLOP/s | XLA/oneDNN (medians) | (best rounds) |", "|---" * 9 + "|"]
  totals = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
  for r in rows:
    xm, om = statistics.median(r["xla"]), statistics.median(r["onednn"])
    lines.append(f"| {r['dtype']} | {r['shape']} | {r['pass']} | {xm * 1e3:.2f} "
                 f"({min(r['xla']) * 1e3:.2f}-{max(r['xla']) * 1e3:.2f}) | {om * 1e3:.2f} "
                 f"({min(r['onednn']) * 1e3:.2f}-{max(r['onednn']) * 1e3:.2f}) | "
                 f"{r['gflop'] / xm:.0f} | {r['gflop'] / om:.0f} | {xm / om:.2f}x | "
                 f"{min(r['xla']) / min(r['onednn']):.2f}x |")
    t = totals[(r["dtype"], r["pass"])]
    for i, v in enumerate((xm, om, min(r["xla"]), min(r["onednn"]))):
      t[i] += r["count"] * v
  lines.append("")
  for (dtype, p), (xm, om, xb, ob) in totals.items():
    lines.append(f"ResNet-20's 18 3x3 convs, {dtype}, {p}: XLA {xm * 1e3:.0f} ms, oneDNN "
                 f"{om * 1e3:.0f} ms per step: {xm / om:.2f}x (medians), {xb / ob:.2f}x (best "
                 "rounds); the stop rule asks for >= 1.3x.")
  return "\n".join(lines)


def _spawn(worker: str, env_extra: dict, passes="all") -> tuple[list, str]:
  env = dict(os.environ, **env_extra)
  cmd = [sys.executable, "-m", "benchmarks.conv_op", f"--worker={worker}",
         f"--dtypes={','.join(_DTYPES.value)}", f"--rounds={_ROUNDS.value}",
         f"--iters={_ITERS.value}", f"--batch_size={_BATCH.value}", f"--sections={passes}"]
  done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
  marker = done.stdout.rindex("RESULT ")
  return json.loads(done.stdout[marker + 7:]), done.stdout[:marker]


def _profile_rows(rows: list[dict], verbose: str) -> str:
  """oneDNN's time inside its primitives per call, from ONEDNN_VERBOSE=profile_exec lines."""
  # e.g. onednn_verbose,exec,cpu,convolution,brgconv:avx512_core,forward_training,...,mb128_ic16oc16_ih32...,2.39
  inside = collections.defaultdict(list)
  for line in verbose.splitlines():
    fields = line.split(",")
    if len(fields) > 5 and fields[1] == "exec":
      inside[(fields[3], fields[4], fields[5], fields[-2])].append(float(fields[-1]))
  lines = ["| primitive | implementation | pass | problem | calls | median ms | max ms |",
           "|---|---|---|---|---|---|---|"]
  for (prim, impl, prop, problem), ms in inside.items():
    problem = re.sub(r"^.*?(mb\d+_ic\d+oc\d+_ih\d+oh\d+).*$", r"\1", problem)
    lines.append(f"| {prim} | {impl} | {prop} | {problem[:40]} | {len(ms)} | "
                 f"{statistics.median(ms):.2f} | {max(ms):.2f} |")
  wall = [f"{r['dtype']} {r['shape']}: wall per call {statistics.median(r['onednn']) * 1e3:.2f} ms"
          for r in rows]
  return "\n".join(lines + ["", "Wall time of the same calls from JAX (fwd + both backward):"]
                   + wall)


def main(argv):
  del argv
  if _WORKER.value:
    passes = tuple(s for s in _SECTIONS.value if s in ("all",) + _PASSES) or ("all",)
    print("RESULT " + json.dumps(_ab(passes)), flush=True)
    return
  import jax
  from research.ops import onednn_conv
  print(f"# oneDNN conv vs XLA, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, JAX "
        f"{jax.__version__}, oneDNN {onednn_conv.onednn_version()}, batch {_BATCH.value}, "
        f"{os.cpu_count()} CPUs, oneDNN threads: RESEARCH_ONEDNN_THREADS="
        f"{os.environ.get('RESEARCH_ONEDNN_THREADS', 'unset')}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}")
  for section in _SECTIONS.value:
    print(f"\n## {section} ({_load()})")
    if section == "ab":
      print(_table(_ab(("all",))))
    elif section == "passes":
      print(_table(_ab(_PASSES)))
    elif section == "threads":
      single_xla = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
      variants = {"1": {"RESEARCH_ONEDNN_THREADS": "1"},
                  "2": {"RESEARCH_ONEDNN_THREADS": "2"},
                  "2_active": {"RESEARCH_ONEDNN_THREADS": "2", "OMP_WAIT_POLICY": "active"},
                  "2_xla1": {"RESEARCH_ONEDNN_THREADS": "2", "XLA_FLAGS": single_xla}}
      for name in _THREAD_VARIANTS.value:
        env = variants[name]
        print(f"\n{env} ({_load()})")
        print(_table(_spawn("ab", env)[0]))
    elif section == "profile":
      rows, stdout = _spawn("profile", {"ONEDNN_VERBOSE": "profile_exec"})
      print(_profile_rows(rows, stdout))
    else:
      raise SystemExit(f"Unknown section {section!r}; choose from ab, passes, threads, profile.")
    print(f"\n({_load()})")


if __name__ == "__main__":
  app.run(main)
