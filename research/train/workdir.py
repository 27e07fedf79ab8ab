"""A work directory holds one run (issue 13 §1): its record is written only
once the run is accepted, a rerun must be the same run, one process trains in
it at a time.

  with workdir.RunGuard(path) as guard:
    guard.check(config)             # Early, read-only: another run there stops here.
    ...                             # Everything that can fail on bad input.
    guard.accept(config, files={"summary.txt": ...})  # Lock, check again, write the record.
    ...                             # Train.

A rerun is the same run when its config equals the stored `config.json` in
every key the trainer reads, except RESUMABLE_KEYS. The lock is `fcntl.flock`
on `<workdir>/.lock`: the kernel releases it when the process ends, however it
ends (SIGKILL, OOM, a node's reboot), so a killed run never leaves a stale
lock. (On NFS, Linux maps flock to NFS byte-range locks, which work across
hosts.)
"""

import datetime
import fcntl
import json
import os
import socket

import ml_collections

from research import errors
from research.data import datasets
from research.train import config as config_lib, run_info

# The keys that may differ between a run and its resumption: none changes the
# parameters of the steps already taken, or what an evaluation computes.
RESUMABLE_KEYS = frozenset({
    "total_steps", "num_epochs",            # Extend (or shorten) the run. A schedule scaled
                                            # to the run's length is rescaled from here on.
    "log_every_steps", "eval_every_steps", "eval_every_epochs",        # Cadence.
    "checkpoint_every_steps", "checkpoint_every_epochs", "keep_checkpoints",
    "eval_batch_size",                      # Batching of the same evaluation.
    "data.data_dir", "data.download",       # Where the same dataset is read from.
    "data.pipeline", "data.num_workers",    # How: both readers give the same batches.
    "data.memory_budget_gb",
    # Which library computes the same convolutions: equal within float rounding
    # (tests/test_conv_impl.py), and "onednn" already runs lax where the library
    # is missing or the backend is not the CPU, so a run may move between them.
    "conv_impl",
})

CONFIG_FILE, LOCK_FILE = "config.json", ".lock"


class WorkdirBusy(RuntimeError):
  """Another process holds the work directory's lock."""


def trainer_config(config: ml_collections.ConfigDict) -> dict:
  """The keys the trainer reads (those of `config.base_config()`), as JSON values.

  An experiment's own keys (e.g. the list of variants it trains) do not
  change what one training run does, so they are not part of its identity.
  """
  keys = config_lib.base_config().keys()
  return {k: v for k, v in json.loads(config.to_json_best_effort()).items() if k in keys}


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):  # An empty dict (model.kwargs) adds no key.
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value
  return flat


def _resolve_statistics(flat: dict) -> dict:
  """data.mean/std as numbers: empty ones (the default since configs take a
  dataset's own statistics) become the dataset's, so a workdir written with
  the numbers spelled out and a rerun with the default compare equal."""
  if not flat.get("data.mean") and not flat.get("data.std"):
    known = datasets.get(flat.get("data.name"))
    if known is not None:
      flat = {**flat, "data.mean": list(known.mean), "data.std": list(known.std)}
  return flat


def differences(stored: dict, config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{dotted key: (stored value, new value)} for keys that may not change.

  A key the stored config lacks (added to the code later) counts as its
  default; one only the stored config has (removed from the code) is ignored,
  except the model's free-form kwargs.
  """
  keys = config_lib.base_config().keys()
  old = _resolve_statistics({**_flatten(trainer_config(config_lib.base_config())),
                             **_flatten({k: v for k, v in stored.items() if k in keys})})
  new = _resolve_statistics(_flatten(trainer_config(config)))
  compared = set(new) | {k for k in old if k.startswith("model.kwargs.")}
  return {k: (old.get(k), new.get(k)) for k in sorted(compared)
          if k not in RESUMABLE_KEYS and old.get(k) != new.get(k)}


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


class RunGuard:
  """Accepts one run into `workdir` and holds its lock until the `with` ends."""

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self._lock = None

  def __enter__(self) -> "RunGuard":
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def check(self, config: ml_collections.ConfigDict) -> None:
    """Raises ValueError when the workdir holds a run with another config.

    Reads only: call it before any work.
    """
    stored = _read_json(os.path.join(self.workdir, CONFIG_FILE))
    if stored is None:
      return
    changed = differences(stored, config)
    if changed:
      listed = ", ".join(f"{k} ({old!r} there, {new!r} now)" for k, (old, new) in
                         changed.items())
      raise errors.ConfigError(
          f"{self.workdir} holds a run with another config; these keys differ: {listed}. "
          f"Only {', '.join(sorted(RESUMABLE_KEYS))} may change when a run resumes. Pass a "
          "new --workdir for a new run (or rerun with the stored values to resume that one).")

  def accept(self, config: ml_collections.ConfigDict, *, write: bool = True,
             files: dict[str, str] | None = None, command: str | None = None) -> None:
    """Takes the lock, checks the config again under it, and writes the record:
    config.json, run_info.json (earlier invocations kept) and `files`
    {name: text}. With `write=False` (processes other than 0 of a multi-host
    run) it only checks.

    Raises:
      WorkdirBusy: another process is training in the workdir.
      ValueError: the workdir holds a run with another config.
    """
    if not write:
      self.check(config)
      return
    os.makedirs(self.workdir, exist_ok=True)
    fd = os.open(os.path.join(self.workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
      os.close(fd)
      raise WorkdirBusy(f"another run is using {self.workdir} ({holder}); wait for it to end, "
                        "or pass another --workdir.") from None
    self._lock = fd
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{datetime.datetime.now().isoformat(timespec='seconds')}\n".encode())
    self.check(config)  # Under the lock: a run that started meanwhile has written its config.
    # Whole files only: the other processes of a multi-host run read config.json meanwhile.
    for name, text in {CONFIG_FILE: config.to_json_best_effort(indent=1, sort_keys=True),
                       **(files or {})}.items():
      tmp = os.path.join(self.workdir, f".{name}.tmp")
      with open(tmp, "w") as f:
        f.write(text)
      os.replace(tmp, os.path.join(self.workdir, name))
    run_info.write_run_info(self.workdir, command)

  def release(self) -> None:
    if self._lock is not None:
      os.close(self._lock)  # Closing the descriptor releases the flock.
      self._lock = None
