"""One run of a sweep ("trial"), in whatever process a launcher gives it.

A trial's work directory holds, besides what the experiment writes
(report.md, metrics.jsonl, checkpoints/, ...):
  trial.json   the experiment, the swept overrides, --distributed; written when
               the sweep is planned, read by the process that runs the trial;
  status.json  {"status": queued | running | done | failed | preempted, "reason",
               "metrics", "job", "updated"}: what the summary table shows;
  error.txt    the traceback of a failed run.

`python -m research.launch.trial WORKDIR` runs one (the local launcher's
subprocess); `SlurmTrial` is the callable that submitit pickles into a job.
"""

import datetime
import json
import os
import shlex
import signal
import sys
import time
import traceback

from research.train import config as config_lib  # ml_collections only: no JAX.

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# --- Files of a trial ----------------------------------------------------


def write_json(path: str, value) -> None:
  """Writes atomically: a reader never sees half a file."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1, default=str)
  os.replace(tmp, path)


def read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return {}


def read_spec(workdir: str) -> dict:
  spec = read_json(os.path.join(workdir, "trial.json"))
  if not spec:
    raise FileNotFoundError(f"{workdir}/trial.json is missing: this is not a sweep trial's "
                            "work directory. Start the sweep with launch.py --sweep.")
  return spec


def read_status(workdir: str) -> dict:
  return read_json(os.path.join(workdir, "status.json"))


def write_status(workdir: str, status: str, **fields) -> None:
  now = datetime.datetime.now().isoformat(timespec="seconds")
  write_json(os.path.join(workdir, "status.json"),
             {"status": status, "updated": now, **fields})


def is_finished(workdir: str) -> bool:
  """Done and reported: a rerun of the sweep skips it."""
  return (read_status(workdir).get("status") == "done"
          and os.path.exists(os.path.join(workdir, "report.md")))


def job_id() -> str | None:
  """The Slurm job (array task) running this process, if any."""
  array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
  return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


# --- Configs -------------------------------------------------------------


def config_arg(spec: dict) -> str:
  """experiments/lenet.py[:arg], relative to the checkout when inside it."""
  path = spec["config_file"]
  if path.startswith(ROOT + os.sep):
    path = os.path.relpath(path, ROOT)
  return path + (f":{spec['arg']}" if spec.get("arg") else "")


def make_config(module, arg: str, overrides: dict):
  return config_lib.override(module.get_config(arg or None), overrides, what="Sweep override")


def launch_command(spec: dict, workdir: str) -> str:
  """The launch.py command that reruns this trial alone (shown in report.md).

  Shell-quoted: pasted into a shell, a workdir or value with spaces, quotes or
  `;` stays one argument instead of running as a command.
  """
  args = ["python", "launch.py", f"--config={config_arg(spec)}", f"--workdir={workdir}"]
  args += [f"--config.{k}={v}" for k, v in spec["overrides"].items()]
  if spec.get("distributed"):
    args.append("--distributed")
  return shlex.join(args)


# --- Running -------------------------------------------------------------


def _reason(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def run_trial(workdir: str) -> dict:
  """Runs the trial in `workdir` to its report; records its status either way."""
  from research.launch import distributed, experiment  # Import JAX only here.
  from research.train import trainer
  import jax
  workdir = os.path.abspath(workdir)
  spec = read_spec(workdir)
  if spec.get("distributed"):
    distributed.initialize()
  is_main = jax.process_index() == 0
  if is_main:
    write_status(workdir, "running", job=job_id())
  try:
    module = experiment.load_module(spec["config_file"])
    config = make_config(module, spec.get("arg", ""), spec["overrides"])
    metrics = experiment.run_experiment(module, config, workdir,
                                        command=launch_command(spec, workdir))
  except trainer.Preempted as e:
    if is_main:
      write_status(workdir, "preempted", reason=str(e), job=job_id())
    raise
  except BaseException as e:  # KeyboardInterrupt and SystemExit too: never left "running".
    if is_main:
      with open(os.path.join(workdir, "error.txt"), "w") as f:
        f.write(traceback.format_exc())
      write_status(workdir, "failed", reason=_reason(e), job=job_id())
    raise
  if is_main:
    write_status(workdir, "done", metrics=metrics, job=job_id())
  return metrics


def _log_like_launch_py() -> None:
  """absl logs INFO (our progress lines) only once flags are parsed, as app.run does."""
  from absl import flags, logging
  from research.launch import logs
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  logs.quiet_library_logs()


# submitit's preemption signal (Slurm sends it `slurm_signal_delay_s` before the time limit).
_PREEMPT_SIGNAL = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class SlurmTrial:
  """What a Slurm job runs: `run_trial`, checkpointing and requeuing on a warning.

  submitit's own handler of the warning signal would requeue at once, losing
  the steps since the last periodic checkpoint. Ours only asks the training
  loop to stop; the loop checkpoints the step it is at and raises Preempted;
  then submitit's handler (kept aside) calls `checkpoint()` below and requeues.
  The requeued job runs the same trial, which resumes from that checkpoint.
  """

  def __call__(self, workdir: str) -> dict:
    from research.train import trainer
    _log_like_launch_py()
    requeue = signal.getsignal(_PREEMPT_SIGNAL)
    signal.signal(_PREEMPT_SIGNAL, lambda signum, frame: trainer.request_preemption())
    try:
      return run_trial(workdir)
    except trainer.Preempted:
      if not callable(requeue):
        raise  # Not under submitit: nothing can requeue us.
      requeue(_PREEMPT_SIGNAL, None)  # Task 0: requeues the job and exits.
      # Other tasks of a multi-task job: the requeue by task 0 ends this one.
      time.sleep(300)
      raise

  def checkpoint(self, workdir: str):
    """What submitit resubmits when it requeues: this same trial."""
    import submitit
    return submitit.helpers.DelayedSubmission(self, workdir)


def _main(argv):
  _log_like_launch_py()
  if len(argv) != 2:
    sys.exit("usage: python -m research.launch.trial WORKDIR")
  run_trial(argv[1])


if __name__ == "__main__":
  from absl import app
  app.run(_main)
