"""Launchers: where a sweep's trials run. Both take planned trial directories
(see trial.py) and return once every trial ended (or, for Slurm without
waiting, once they are submitted). A failed trial never stops the others: it
is recorded in its status.json with the reason, for the summary.

  LocalLauncher   one subprocess per trial, at most `max_parallel` at once
                  (default: the CPU count); output in <trial>/log.txt.
  SlurmLauncher   one Slurm job array through submitit (`map_array`); job
                  files and output in <sweep>/slurm/<job id>/.
"""

import os
import signal
import subprocess
import sys
import time

from research.launch import trial

ROOT = trial.ROOT


def _pythonpath() -> str:
  """This checkout first, so trials import this code wherever they start."""
  return ROOT + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")


def _record_failure(workdir: str, reason: str, job: str | None = None) -> None:
  """Records a failure the trial could not record itself (it was killed)."""
  if trial.read_status(workdir).get("status") != "failed":
    trial.write_status(workdir, "failed", reason=reason, job=job)


def _report(index: int, total: int, workdir: str, seconds: float) -> None:
  status = trial.read_status(workdir)
  if status.get("status") == "done":
    metrics = status.get("metrics", {})
    shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("test/accuracy", "test/loss")
                      if k in metrics)
    outcome = f"done ({shown})" if shown else "done"
  else:
    outcome = f"{status.get('status', 'ended')}: {status.get('reason', '')}"
  print(f"[{index}/{total}] {os.path.basename(workdir)}: {outcome} after "
        f"{seconds:.0f} s", flush=True)


# --- Local: parallel processes on this machine ---------------------------


class LocalLauncher:

  def __init__(self, max_parallel: int = 0):
    self.max_parallel = max_parallel or os.cpu_count() or 1

  def launch(self, workdirs: list[str]) -> bool:
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    pending, running, finished = list(workdirs), {}, 0
    while pending or running:
      while pending and len(running) < self.max_parallel:
        workdir = pending.pop(0)
        with open(os.path.join(workdir, "log.txt"), "a") as log:
          process = subprocess.Popen([sys.executable, "-m", "research.launch.trial", workdir],
                                     cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        running[process] = (workdir, time.time())
      time.sleep(0.2)
      for process, (workdir, started) in list(running.items()):
        code = process.poll()
        if code is None:
          continue
        del running[process]
        if code < 0:
          _record_failure(workdir, f"killed by {signal.Signals(-code).name}; the next run of "
                          "the sweep resumes it from its last checkpoint")
        elif code:
          _record_failure(workdir, f"exit code {code}; see {workdir}/log.txt")
        finished += 1
        _report(finished, len(workdirs), workdir, time.time() - started)
    return True


# --- Slurm: one job array through submitit --------------------------------


def _jobs_in_queue() -> set[str]:
  """Ids of the jobs (array tasks one by one) that Slurm still holds."""
  try:
    result = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True)
  except OSError:  # No Slurm here: executor() explains.
    return set()
  return set(result.stdout.split()) if result.returncode == 0 else set()


class SlurmLauncher:
  """Submits trials as a Slurm job array; each array task runs trial.SlurmTrial.

  Resources apply to each trial: `tasks_per_node` x `nodes` processes (one JAX
  process each, joined by --distributed), `cpus_per_task` CPUs each.
  A trial that gets Slurm's warning signal `signal_delay_s` before its time
  limit checkpoints and requeues itself (see trial.SlurmTrial).
  """

  def __init__(self, folder: str, *, partition: str = "", time_min: int = 60,
               cpus_per_task: int = 1, gpus_per_node: int = 0, mem_gb: float = 0,
               nodes: int = 1, tasks_per_node: int = 1, max_parallel: int = 0,
               signal_delay_s: int = 90, wait: bool = True, poll_s: float = 3):
    self.folder = os.path.abspath(folder)
    self.wait, self.poll_s = wait, poll_s
    self.parameters = dict(timeout_min=time_min, cpus_per_task=cpus_per_task, nodes=nodes,
                           tasks_per_node=tasks_per_node, slurm_signal_delay_s=signal_delay_s)
    if partition:
      self.parameters["slurm_partition"] = partition
    if gpus_per_node:
      self.parameters["gpus_per_node"] = gpus_per_node
    if mem_gb:
      self.parameters["mem_gb"] = mem_gb
    if max_parallel:
      self.parameters["slurm_array_parallelism"] = max_parallel

  def executor(self, name: str):
    import submitit
    if not any(os.access(os.path.join(d, "sbatch"), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep)):
      raise RuntimeError("Slurm's sbatch is not on PATH: run this on a Slurm login node, or "
                         "start the single-node test cluster: bash scripts/setup.sh "
                         "--with-slurm && bash scripts/slurm_cluster.sh start.")
    executor = submitit.AutoExecutor(folder=os.path.join(self.folder, "%j"), cluster="slurm")
    executor.update_parameters(
        name=name, **self.parameters,
        slurm_setup=[f"export PYTHONPATH={_pythonpath()}"])
    return executor

  def launch(self, workdirs: list[str]) -> bool:
    # A rerun of the sweep must not start a second job on a trial still queued or running.
    queued = _jobs_in_queue()
    busy = [w for w in workdirs if trial.read_status(w).get("job") in queued]
    for workdir in busy:
      print(f"{os.path.basename(workdir)}: Slurm job {trial.read_status(workdir)['job']} is "
            "still in the queue; not submitting it again.", flush=True)
    workdirs = [w for w in workdirs if w not in busy]
    if not workdirs:
      return False
    # The job name: the sweep's directory, or a single run's own.
    parent = os.path.dirname(workdirs[0])
    in_sweep = os.path.exists(os.path.join(parent, "sweep.json"))
    name = os.path.basename(parent if in_sweep else workdirs[0])
    executor = self.executor(name)
    jobs = executor.map_array(trial.SlurmTrial(), workdirs)
    for workdir, job in zip(workdirs, jobs):
      trial.write_status(workdir, "queued", job=job.job_id)
    print(f"Submitted {len(jobs)} Slurm job(s): {', '.join(j.job_id for j in jobs)}; "
          f"logs in {self.folder}/<job id>/.", flush=True)
    if not self.wait:
      return False
    self._wait(dict(zip(workdirs, jobs)))
    return True

  def _wait(self, jobs: dict) -> None:
    """Polls until every job ended; records the jobs that died without a result."""
    start, finished = time.time(), 0
    while jobs:
      time.sleep(self.poll_s)
      checked = False
      for workdir, job in list(jobs.items()):
        # One forced accounting query per round refreshes every job's state.
        if not job.done(force_check=not checked):
          checked = True
          continue
        checked = True
        del jobs[workdir]
        try:
          job.results()  # Raises the trial's exception, or UncompletedJobError if killed.
        except Exception as e:  # pylint: disable=broad-except
          state = job.state
          _record_failure(workdir, f"Slurm job {job.job_id} ended {state} without a result "
                          f"({type(e).__name__}); log: {job.paths.stderr}", job=job.job_id)
        finished += 1
        _report(finished, finished + len(jobs), workdir, time.time() - start)
