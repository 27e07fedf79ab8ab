"""Checkpoints with orbax: periodic, keep the last few, resume from the newest
intact one (issue 13 §2, §3).

Integrity: once orbax has finished writing a step, `integrity.json` in the
step's directory records the size and SHA-256 of each of its files. A restore
checks them, newest step first. A damaged step (bytes changed, a file cut
short or missing, a directory or file named like a step that is not a
checkpoint, or values that are NaN or inf) is passed over with a warning
naming it; once an intact step is found, the damaged newer ones are moved to
`<workdir>/checkpoints.damaged/` (never deleted), so the run can write those
steps again. When no step is intact the restore stops with `CheckpointError`,
moving nothing. A step without a manifest (written by older code, or a run
killed between orbax's last write and the manifest's) is restored unverified,
with a warning, if orbax can read it and it is finite.

A state with NaN or inf is never saved (`save` raises FloatingPointError), so
the newest checkpoint is always finite and orbax's rotation (`keep`) never
deletes the last finite one in favour of a non-finite one.
"""

import hashlib
import json
import os
import shutil

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from research.train import finite

MANIFEST = "integrity.json"
DAMAGED_DIR = "checkpoints.damaged"  # Beside checkpoints/, in the workdir.
_all_finite = jax.jit(finite.all_finite)


class CheckpointError(RuntimeError):
  """No intact checkpoint, or a requested step is damaged."""


# --- Integrity manifests --------------------------------------------------


def _files(step_dir: str) -> list[str]:
  """Paths of the files under step_dir relative to it, sorted, manifest excluded."""
  paths = [os.path.relpath(os.path.join(root, name), step_dir)
           for root, _, names in os.walk(step_dir) for name in names]
  return sorted(p for p in paths if p != MANIFEST)


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(step_dir: str) -> None:
  """Records {relative path: [bytes, sha256]} of a finished step's files."""
  manifest = {p: [os.path.getsize(os.path.join(step_dir, p)), _sha256(os.path.join(step_dir, p))]
              for p in _files(step_dir)}
  tmp = os.path.join(step_dir, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=0, sort_keys=True)
  os.replace(tmp, os.path.join(step_dir, MANIFEST))


def verify(step_dir: str) -> tuple[bool | None, str]:
  """(True, "") when every file matches the manifest; (False, what is wrong)
  when one does not; (None, why) when there is no manifest to check against."""
  if not os.path.exists(step_dir):
    return False, "it does not exist"
  if not os.path.isdir(step_dir):
    return False, "a file named like a step, not a checkpoint directory"
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.exists(path):
    return None, f"no {MANIFEST}"
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    return False, f"its {MANIFEST} is unreadable ({e})"
  for rel, (size, digest) in sorted(manifest.items()):
    file = os.path.join(step_dir, rel)
    if not os.path.exists(file):
      return False, f"{rel} is missing"
    if os.path.getsize(file) != size:
      return False, f"{rel} has {os.path.getsize(file)} bytes, not {size}"
    if _sha256(file) != digest:
      return False, f"{rel} does not match its SHA-256"
  return True, ""


def _candidate_steps(directory: str) -> list[int]:
  """Steps named in `directory` (directories or stray files), newest first."""
  if not os.path.isdir(directory):
    return []
  return sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True)


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


# --- Reading without a model (analysis, init_from) --------------------------


def _read_arrays(path: str) -> dict:
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return checkpointer.restore(path, restore_args=restore_args)


def load_arrays(workdir: str, step: int | None = None) -> tuple[int, dict]:
  """(step, state as nested dicts of NumPy arrays) of a run's checkpoint: `step`,
  or the newest intact one (damaged ones are skipped with a warning, not moved).

  Works whatever devices saved it and needs no model: for analysis, and for
  initialising layers of a new run from another run's checkpoint.

  Raises:
    FileNotFoundError: no checkpoint at all.
    CheckpointError: `step` is damaged, or no checkpoint is intact.
  """
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  steps = [step] if step is not None else _candidate_steps(directory)
  if not steps or not os.path.exists(os.path.join(directory, str(steps[0]))):
    raise FileNotFoundError(f"No checkpoint{'' if step is None else f' of step {step}'} in "
                            f"{directory}; train the run first.")
  problems = []
  for s in steps:
    step_dir = os.path.join(directory, str(s))
    ok, reason = verify(step_dir)
    if ok is not False:
      try:
        return s, _read_arrays(os.path.join(step_dir, "default"))
      except Exception as e:  # pylint: disable=broad-except
        if ok:
          raise  # Intact bytes: not damage.
        reason = f"{reason} and unreadable ({_first_line(e)})"
    problems.append(reason if step is not None else f"step {s}: {reason}")
    if step is None:
      logging.warning("Checkpoint step %d in %s is damaged (%s); reading an older one.", s,
                      directory, reason)
  if step is not None:
    raise CheckpointError(f"Checkpoint step {step} in {directory} is damaged: {problems[0]}.")
  raise CheckpointError(f"No intact checkpoint in {directory}: {'; '.join(problems)}.")


# --- The training loop's checkpointer --------------------------------------


class Checkpointer:
  """`ocp.CheckpointManager` for one TrainState pytree, with integrity checks.

  Saves are synchronous: each step's manifest is written as soon as orbax has
  finished it, so only a process killed in between leaves a step unverified.
  """

  def __init__(self, workdir: str, *, keep: int = 3):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, "checkpoints")
    self._keep = keep
    self._manager_or_none = None
    self._newest_finite = None  # Saved or restored by this process.

  @property
  def _manager(self) -> ocp.CheckpointManager:
    # Made on first use: after a restore has set damaged steps aside.
    if self._manager_or_none is None:
      self._manager_or_none = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True))
    return self._manager_or_none

  def latest_step(self) -> int | None:
    """The newest step on disk (before any integrity check)."""
    steps = _candidate_steps(self.directory)
    return steps[0] if steps else None

  def save(self, step: int, state) -> None:
    """Saves `state` as `step` and writes its manifest.

    Raises:
      FloatingPointError: the state holds NaN or inf (nothing is written).
    """
    if not bool(jax.device_get(_all_finite(state))):
      raise FloatingPointError(
          f"Not saving step {step}: its parameters or optimizer state hold NaN or inf. "
          f"{self.newest_text()}")
    self._manager.save(step, args=ocp.args.StandardSave(state))
    self._manager.wait_until_finished()
    if jax.process_index() == 0:
      write_manifest(os.path.join(self.directory, str(step)))
    self._newest_finite = step

  def newest_text(self) -> str:
    """Where a stopped run can resume from, for error messages."""
    if self._newest_finite is None:
      return "No checkpoint was written yet, so a rerun starts from scratch."
    return (f"The newest finite checkpoint, step {self._newest_finite}, is kept in "
            f"{self.directory}; a rerun resumes from it.")

  def restore(self, abstract_state, step: int | None = None):
    """Restores `step` (default: the newest intact one, see the module
    docstring) into the structure and shardings of `abstract_state` (a state
    or its `jax.eval_shape`).

    Raises:
      CheckpointError: no step (or not `step`) is intact.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    steps = [step] if step is not None else _candidate_steps(self.directory)
    damaged = []
    for s in steps:
      step_dir = os.path.join(self.directory, str(s))
      ok, reason = verify(step_dir)
      state = None
      if ok is not False:
        try:
          state = ocp.Checkpointer(ocp.StandardCheckpointHandler()).restore(
              os.path.join(step_dir, "default"), args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # pylint: disable=broad-except
          if ok:
            raise  # Intact bytes that do not fit this state: a different model, not damage.
          reason = f"{reason}, and orbax cannot read it ({_first_line(e)})"
        if state is not None and not bool(jax.device_get(_all_finite(state))):
          state, reason = None, "it holds NaN or inf"
      if state is None:
        logging.warning("Checkpoint step %d in %s is damaged: %s.", s, self.directory, reason)
        damaged.append((s, reason))
        continue
      if ok is None:
        logging.warning("Checkpoint step %d in %s has %s (written by older code, or the run "
                        "was killed before writing it): restored unverified.", s,
                        self.directory, reason)
      self._set_aside(damaged, s)
      logging.info("Restoring checkpoint of step %d from %s.", s, self.directory)
      self._newest_finite = s
      return state
    listed = "; ".join(f"step {s}: {r}" for s, r in damaged)
    raise CheckpointError(
        f"No intact checkpoint in {self.directory} ({listed}). Nothing was moved. Start the "
        "run again in a new --workdir, or move checkpoints/ aside to train from scratch here.")

  def _set_aside(self, damaged: list[tuple[int, str]], good: int) -> None:
    """Moves damaged steps newer than `good` to checkpoints.damaged/."""
    if not damaged:
      return
    if jax.process_index() == 0:
      aside = os.path.join(self.workdir, DAMAGED_DIR)
      os.makedirs(aside, exist_ok=True)
      for s, reason in damaged:
        target, n = os.path.join(aside, str(s)), 1
        while os.path.exists(target):
          target, n = os.path.join(aside, f"{s}-{n}"), n + 1
        shutil.move(os.path.join(self.directory, str(s)), target)
        logging.warning("Checkpoint step %d was damaged (%s): moved it to %s and resumed from "
                        "step %d.", s, reason, target, good)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("checkpoints set aside")
    if self._manager_or_none is not None:
      self._manager_or_none.reload()

  def wait(self) -> None:
    if self._manager_or_none is not None:
      self._manager_or_none.wait_until_finished()

  def close(self) -> None:
    if self._manager_or_none is not None:
      self._manager_or_none.wait_until_finished()
      self._manager_or_none.close()
