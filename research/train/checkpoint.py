"""Checkpoints with orbax: periodic, keep the last few, resume from the newest."""

import os

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp


def load_arrays(workdir: str, step: int | None = None) -> tuple[int, dict]:
  """(step, state as nested dicts of NumPy arrays) of a run's checkpoint.

  Works whatever devices saved it and needs no model: for analysis, and for
  initialising layers of a new run from another run's checkpoint.
  """
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if step is None:
    steps = [int(d) for d in os.listdir(directory) if d.isdigit()] if os.path.isdir(
        directory) else []
    if not steps:
      raise FileNotFoundError(f"No checkpoint in {directory}; train the run first.")
    step = max(steps)
  path = os.path.join(directory, str(step), "default")
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return step, checkpointer.restore(path, restore_args=restore_args)


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` for one TrainState pytree."""

  def __init__(self, workdir: str, *, keep: int = 3):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    """Saves asynchronously; `wait()` or the next save blocks until written."""
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def restore(self, abstract_state, step: int | None = None):
    """Restores `step` (default: the newest) into the structure and shardings
    of `abstract_state` (a state or its `jax.eval_shape`)."""
    step = self.latest_step() if step is None else step
    logging.info("Restoring checkpoint of step %d from %s.", step, self.directory)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
