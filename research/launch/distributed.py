"""Joining the processes of one multi-host run: `jax.distributed.initialize`.

After it, `jax.devices()` lists every process's devices, so the trainer's mesh
spans them all; each process feeds only its own rows of every batch (the
pipeline slices by `jax.process_index()`), and only process 0 writes logs,
metrics and reports (orbax coordinates the checkpoint writes itself).

Two ways in, both opt-in (`--distributed`): any job under Slurm looks
distributed, a one-task sweep trial included, so Slurm's variables alone never
turn it on.
  * Under Slurm, tasks started by `srun` (as submitit does): JAX reads the
    coordinator, process count and id from SLURM_* variables.
  * Anywhere: give all three explicitly (`--coordinator_address=host:port
    --num_processes=N --process_id=i`), e.g. two processes on one machine.
Call it before anything asks JAX for its devices.
"""

import os

from absl import logging
import jax


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Joins this process to its run's others; raises ValueError naming the fix."""
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit):
    if not all(v is not None for v in explicit):
      raise ValueError(
          "Distributed run without Slurm: pass all of --coordinator_address=host:port, "
          "--num_processes=N and --process_id=i (got "
          f"{coordinator_address!r}, {num_processes!r}, {process_id!r}).")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} must be in [0, {num_processes}).")
  elif "SLURM_JOB_ID" not in os.environ:
    raise ValueError(
        "--distributed outside a Slurm job needs --coordinator_address=host:port, "
        "--num_processes=N and --process_id=i.")
  elif "SLURM_STEP_NODELIST" not in os.environ:
    raise ValueError(
        "--distributed in a Slurm batch script: start the processes with `srun` (one per "
        "task); the batch step itself has no step node list for JAX to read.")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info("Process %d of %d; %d devices in all, %d here.", jax.process_index(),
               jax.process_count(), jax.device_count(), jax.local_device_count())
