"""What a work directory records about the run that made it."""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain",
            "tensorflow-datasets", "array-record", "ml-collections", "numpy", "absl-py")


def git_commit(path: str | None = None) -> str:
  """The commit of the code (with '+dirty' for uncommitted changes), or 'unknown'."""
  cwd = path or os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=cwd, capture_output=True, text=True).stdout.strip()
    return commit + ("+dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def package_versions() -> dict[str, str]:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


def write_run_info(workdir: str, config, command: str | None = None) -> None:
  """Writes config.json and run_info.json (commit, versions, devices, command)."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=1, sort_keys=True))
  info = {
      "command": command or " ".join(sys.argv),
      "git_commit": git_commit(),
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
      "packages": package_versions(),
  }
  with open(os.path.join(workdir, "run_info.json"), "w") as f:
    json.dump(info, f, indent=1)
