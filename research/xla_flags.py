"""The XLA flags this project sets for the CPU backend, and when it may set them.

XLA reads XLA_FLAGS once, when JAX starts its first backend, and aborts the
process (`Unknown flag in XLA_FLAGS`) on a flag that the installed jaxlib does
not define. Flags are therefore added only when
  - the backend JAX will use is the CPU: JAX_PLATFORMS, when set, names cpu
    first; when unset, no accelerator plugin (CUDA, ROCm, TPU) is installed;
  - the installed jaxlib defines the flag: its name is in jaxlib's compiled
    library (every XLA flag is registered there by its name; read without
    starting a backend, about 0.1 s when the file is in the page cache);
  - the user has not set the flag already, and RESEARCH_XLA_DEFAULTS is not 0.
Nothing here imports JAX.
"""

import functools
import glob
import importlib.metadata
import importlib.util
import mmap
import os

# --xla_cpu_experimental_ynn_fusion_type= (empty: XNNPACK fusion off) makes
# convolution training 1.15-1.6x faster per step here (README, "Performance").
CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)

# Distributions whose presence makes JAX default to an accelerator.
_ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm6-plugin",
                        "jax-rocm7-plugin", "libtpu", "libtpu-nightly")


def cpu_backend_expected(environ=os.environ) -> bool:
  """Whether JAX will run on the CPU backend, judged before JAX starts."""
  platforms = environ.get("JAX_PLATFORMS", "").strip()
  if platforms:
    return platforms.split(",")[0].strip().lower() == "cpu"
  for dist in _ACCELERATOR_PLUGINS:
    try:
      importlib.metadata.version(dist)
      return False
    except importlib.metadata.PackageNotFoundError:
      pass
  return True


@functools.cache
def _jaxlib_libraries() -> tuple[str, ...]:
  spec = importlib.util.find_spec("jaxlib")
  if spec is None or not spec.submodule_search_locations:
    return ()
  return tuple(path for folder in spec.submodule_search_locations
               for path in sorted(glob.glob(os.path.join(folder, "*.so"))))


@functools.cache
def jaxlib_knows(flag: str) -> bool:
  """Whether the installed jaxlib defines `flag` ("--xla_name=value" or "xla_name")."""
  name = flag.lstrip("-").split("=")[0].encode()
  for path in _jaxlib_libraries():
    try:
      with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data.find(b"\0" + name + b"\0") >= 0:  # The name as a whole C string.
          return True
    except (OSError, ValueError):  # Unreadable or empty: look at the next one.
      continue
  return False


def with_cpu_flags(flags=CPU_FLAGS, environ=os.environ) -> str:
  """XLA_FLAGS from `environ`, plus those of `flags` that may be set (see above)."""
  current = environ.get("XLA_FLAGS", "")
  if environ.get("RESEARCH_XLA_DEFAULTS", "1") == "0" or not cpu_backend_expected(environ):
    return current
  given = {f.lstrip("-").split("=")[0] for f in current.split()}
  for flag in flags:
    name = flag.lstrip("-").split("=")[0]
    if name not in given and jaxlib_knows(flag):
      current = f"{current} {flag}".strip()
  return current


def set_cpu_flags(flags=CPU_FLAGS) -> None:
  """Puts `with_cpu_flags(flags)` into os.environ["XLA_FLAGS"] (before JAX starts)."""
  value = with_cpu_flags(flags)
  if value:
    os.environ["XLA_FLAGS"] = value
