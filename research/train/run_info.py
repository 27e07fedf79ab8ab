"""What a work directory records about the run that made it."""

import datetime
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


def write_run_info(workdir: str, command: str | None = None) -> None:
  """Writes run_info.json: commit, versions, devices and command of this
  invocation, with the earlier invocations of the same run (resumptions) kept
  under "earlier", newest first."""
  path = os.path.join(workdir, "run_info.json")
  earlier = []
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    earlier = [{k: v for k, v in previous.items() if k != "earlier"},
               *previous.get("earlier", [])]
  info = {
      "command": command or " ".join(sys.argv),
      "started": datetime.datetime.now().isoformat(timespec="seconds"),
      "git_commit": git_commit(),
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
      "packages": package_versions(),
      "earlier": earlier,
  }
  with open(path, "w") as f:
    json.dump(info, f, indent=1)
