"""The test session's persistent XLA compilation cache (tests/conftest.py): a program
compiled in one test process is read back by the next, and the folder is the
session's own temporary one, never a user's."""

import os
import subprocess
import sys
import tempfile

_SCRIPT = """
import jax, jax.numpy as jnp
from jax._src import compilation_cache
print(jax.jit(lambda x: jnp.tanh(x) * 3.0 + {c})(jnp.ones((5, 7))).sum())
print(compilation_cache.is_cache_used(jax.devices()[0].client))
"""


def test_subprocesses_share_the_sessions_cache():
  folder = os.environ["JAX_COMPILATION_CACHE_DIR"]
  assert os.path.dirname(folder) == tempfile.gettempdir()
  assert os.path.basename(folder).startswith("research_tests_xla_cache_")
  # A program no other test compiles (its constant): written by the first process.
  script = _SCRIPT.format(c=repr(os.getpid() + 0.5))
  before = set(os.listdir(folder))
  first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
  assert first.returncode == 0, first.stderr[-2000:]
  assert first.stdout.split()[-1] == "True"
  written = [f for f in set(os.listdir(folder)) - before if f.startswith("jit__lambda")]
  assert len(written) == 1, written
  stamp = os.stat(os.path.join(folder, written[0])).st_mtime_ns
  second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
  assert second.returncode == 0 and second.stdout == first.stdout, second.stderr[-2000:]
  assert [f for f in os.listdir(folder) if f.startswith("jit__lambda")].count(written[0]) == 1
  assert os.stat(os.path.join(folder, written[0])).st_mtime_ns == stamp  # Read, not rewritten.
