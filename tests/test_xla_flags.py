"""XLA flags go only to the CPU backend, and only those the installed jaxlib knows (issue 12 §6)."""

import os
import subprocess
import sys

from research import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNKNOWN = "--xla_research_test_unknown_flag=1"
OURS = xla_flags.CPU_FLAGS[0]


def _python(code: str, **env) -> subprocess.CompletedProcess:
  base = {k: v for k, v in os.environ.items()
          if k not in ("XLA_FLAGS", "RESEARCH_XLA_DEFAULTS", "JAX_PLATFORMS")}
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        env={**base, **env}, timeout=300)


def test_an_unknown_flag_is_left_out_and_jax_starts():
  # The control: XLA aborts the process on this flag when it is set.
  aborted = _python("import jax; jax.numpy.ones(2).block_until_ready()", XLA_FLAGS=UNKNOWN,
                    RESEARCH_XLA_DEFAULTS="0")
  assert aborted.returncode != 0 and "Unknown flag" in aborted.stderr
  ran = _python(
      "import os\n"
      "from research import xla_flags\n"
      f"xla_flags.set_cpu_flags(xla_flags.CPU_FLAGS + ({UNKNOWN!r},))\n"
      "import jax\n"
      "print(float(jax.numpy.ones(2).sum()))\n"
      "print(os.environ['XLA_FLAGS'])\n")
  assert ran.returncode == 0, ran.stderr[-2000:]
  total, flags = ran.stdout.strip().splitlines()[-2:]
  assert total == "2.0" and OURS in flags.split() and UNKNOWN not in flags


def test_importing_research_sets_cpu_flags_only_for_the_cpu_backend():
  show = "import os, research; print(repr(os.environ.get('XLA_FLAGS')))"
  for platforms, expected in (("cuda", None), ("tpu,cpu", None), ("cpu", repr(OURS))):
    result = _python(show, JAX_PLATFORMS=platforms)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == (expected or "None"), platforms


def test_user_flags_are_kept_and_the_opt_out_is_respected():
  env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=x"}
  assert xla_flags.with_cpu_flags(environ=env) == env["XLA_FLAGS"]  # The user's value wins.
  env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_dump_to=/tmp/d"}
  assert xla_flags.with_cpu_flags(environ=env) == f"--xla_dump_to=/tmp/d {OURS}"
  env["RESEARCH_XLA_DEFAULTS"] = "0"
  assert xla_flags.with_cpu_flags(environ=env) == "--xla_dump_to=/tmp/d"
  assert not xla_flags.jaxlib_knows(UNKNOWN) and xla_flags.jaxlib_knows(OURS)
