"""The one entry point: run an experiment, list experiments, or summarise a model.

  python launch.py --config=experiments/lenet.py --workdir=runs/lenet
  python launch.py --config=experiments/lenet.py:mnist --config.num_epochs=5
  python launch.py --list
  python launch.py --summary=vgg16 --input_shape=224,224,3
  python launch.py --config=experiments/lenet.py --summary=config
  python launch.py --config=experiments/lenet.py --print_config

Sweeps (the experiment's sweep(arg); one run per subdirectory of --workdir):

  python launch.py --config=experiments/lenet.py --sweep                    # local processes
  python launch.py --config=experiments/lenet.py --sweep --launcher=slurm   # a job array
  python launch.py --sweep_summary --workdir=runs/lenet_sweep               # table + plot again

Multi-host (one JAX process per task or per command, joined into one mesh):

  python launch.py --config=experiments/lenet.py --distributed --launcher=slurm \\
      --slurm_tasks_per_node=2
  python launch.py --config=experiments/lenet.py --distributed --num_processes=2 \\
      --coordinator_address=localhost:12355 --process_id=0   # and =1 in a second shell

`--config.key=value` overrides any config key; unknown keys, wrong types and
impossible values stop before any work, with an error naming the key.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with an argument: "
    "experiments/lenet.py[:arg].", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics and report.md go (default: "
    "runs/<experiment>[_<arg>]). An existing workdir resumes.")
_LIST = flags.DEFINE_bool("list", False, "List the experiments and exit.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Write --workdir's report.md again from its metrics.json, reading "
    "the runs its claims compare with (--config.compare.<name>) again; no training.")
_SUMMARY = flags.DEFINE_string(
    "summary", None, "Print a model summary (shapes, parameters, activations, MACs) and "
    "exit: a model name, or 'config' for --config's model.", )
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False,
                                  "Print the config (after overrides) and exit.")
_INPUT_SHAPE = flags.DEFINE_list(
    "input_shape", None, "H,W,C for --summary (default: the config's dataset, else "
    "224,224,3).")

# --- Sweeps and launchers (research/launch/sweep.py, launchers.py) ---------
_SWEEP = flags.DEFINE_bool("sweep", False, "Run the experiment's sweep(arg): one run per "
                           "override set, each in its own subdirectory of --workdir.")
_SWEEP_SUMMARY = flags.DEFINE_bool("sweep_summary", False, "Only rebuild the summary table "
                                   "and plot of the sweep in --workdir.")
_METRIC = flags.DEFINE_string("metric", "test/accuracy", "The sweep summary's metric.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "slurm"],
                              "Where runs go: local processes, or Slurm jobs (submitit).")
_MAX_PARALLEL = flags.DEFINE_integer("max_parallel", 0, "Runs at once (0: the CPU count "
                                     "for local; no limit for Slurm arrays).")
_SLURM_PARTITION = flags.DEFINE_string("slurm_partition", "", "Partition (default: the "
                                       "cluster's default).")
_SLURM_TIME = flags.DEFINE_integer("slurm_time_min", 60, "Time limit per job, minutes.")
_SLURM_CPUS = flags.DEFINE_integer("slurm_cpus_per_task", 1, "CPUs per task.")
_SLURM_GPUS = flags.DEFINE_integer("slurm_gpus_per_node", 0, "GPUs per node.")
_SLURM_MEM = flags.DEFINE_float("slurm_mem_gb", 0, "Memory per node, GB (0: the default).")
_SLURM_NODES = flags.DEFINE_integer("slurm_nodes", 1, "Nodes per run.")
_SLURM_TASKS = flags.DEFINE_integer("slurm_tasks_per_node", 1, "Tasks (JAX processes) per "
                                    "node; more than one process needs --distributed.")
_SLURM_SIGNAL = flags.DEFINE_integer("slurm_signal_delay_s", 90, "Seconds before the time "
                                     "limit that Slurm warns a job, which then checkpoints "
                                     "and requeues itself.")
_SLURM_WAIT = flags.DEFINE_bool("slurm_wait", True, "Wait for the jobs and print the summary; "
                                "--noslurm_wait submits and returns.")
# --- Multi-host (research/launch/distributed.py) --------------------------
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join this run's processes with "
                                 "jax.distributed: under Slurm from its variables, else "
                                 "from the three flags below.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0-based.")


def _default_workdir(config_arg: str) -> str:
  path, _, arg = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", name + (f"_{arg}" if arg else ""))


def _print_summary(name: str) -> None:
  from research import models
  from research.models import summary
  kwargs = {}
  shape = [int(d) for d in _INPUT_SHAPE.value] if _INPUT_SHAPE.value else None
  if name == "config":
    if _CONFIG.value is None:
      raise app.UsageError("--summary=config needs --config.")
    config = _CONFIG.value
    name, kwargs = config.model.name, config.model.kwargs.to_dict()
    if shape is None:
      from research.data import tfds_source
      _, info = tfds_source.open_source(config.data.name, config.data.train_split,
                                        config.data.data_dir)
      shape = list(info.features["image"].shape)
      kwargs.setdefault("num_classes", info.features["label"].num_classes)
  model = models.get_model(name, **kwargs)
  print(summary.summarize(model, shape or (224, 224, 3), train=False).table())


def _slurm_launcher(folder: str):
  from research.launch import launchers
  return launchers.SlurmLauncher(
      folder, partition=_SLURM_PARTITION.value, time_min=_SLURM_TIME.value,
      cpus_per_task=_SLURM_CPUS.value, gpus_per_node=_SLURM_GPUS.value,
      mem_gb=_SLURM_MEM.value, nodes=_SLURM_NODES.value, tasks_per_node=_SLURM_TASKS.value,
      max_parallel=_MAX_PARALLEL.value, signal_delay_s=_SLURM_SIGNAL.value,
      wait=_SLURM_WAIT.value)


def _launch(module, config_file: str, arg: str, workdir: str) -> None:
  """--sweep, or one run as a Slurm job: plan trial directories, launch them."""
  from research.launch import launchers, sweep
  if _SLURM_TASKS.value * _SLURM_NODES.value > 1 and not _DISTRIBUTED.value:
    raise app.UsageError("Several Slurm tasks per run need --distributed (else each task "
                         "trains alone).")
  if _DISTRIBUTED.value and _LAUNCHER.value == "local":
    raise app.UsageError("--distributed sweep trials run as Slurm tasks: add --launcher=slurm "
                         "(without Slurm, start each process by hand with --coordinator_address).")
  extra = sweep.command_line_overrides(module, arg, _CONFIG.value)
  if _SWEEP.value:
    workdirs = sweep.plan(module, config_file, arg, workdir, extra=extra,
                          distributed=_DISTRIBUTED.value, metric=_METRIC.value)
  else:  # One run, submitted to Slurm: the workdir is the trial's own.
    workdirs = [sweep.plan_single(module, config_file, arg, workdir, extra=extra,
                                  distributed=_DISTRIBUTED.value)]
  if _LAUNCHER.value == "local":
    launcher = launchers.LocalLauncher(_MAX_PARALLEL.value)
  else:
    launcher = _slurm_launcher(os.path.join(workdir, "slurm"))
  if _SWEEP.value:
    table = sweep.run_sweep(workdirs, launcher, workdir, _METRIC.value)
    if table:
      print(table + f"\nWritten to {workdir}/summary.md, summary.csv and summary.png.")
      unfinished = sweep.unfinished(workdir)
      if unfinished:  # The sweep did not do what was asked: say so in the exit status.
        sys.exit(f"{len(unfinished)} of {len(workdirs)} runs did not finish "
                 f"({', '.join(unfinished)}): see the table's notes and each run's error.txt. "
                 "Rerunning the same command retries them and skips the finished ones.")
  elif launcher.launch(workdirs):
    from research.launch import trial
    status = trial.read_status(workdir)
    if status.get("status") != "done":
      sys.exit(f"The run {status.get('status')}: {status.get('reason')}")
    print(f"Report: {workdir}/report.md")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with an unknown config key reported as such, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help on flags.")
  except (AttributeError, KeyError) as e:
    overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    sys.exit(f"FATAL Flags parsing error: unknown config key {e} in {overrides}. "
             "See the keys with --print_config.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from research.launch import experiment, logs  # After flag parsing: imports JAX.
  logs.quiet_library_logs()
  if _SWEEP_SUMMARY.value:
    from research.launch import sweep
    if not _WORKDIR.value:
      raise app.UsageError("--sweep_summary needs the sweep's --workdir.")
    print(sweep.summarize(_WORKDIR.value, _METRIC.value if flags.FLAGS["metric"].present
                          else None))
    return
  if _DISTRIBUTED.value and not (_SWEEP.value or _LAUNCHER.value == "slurm"):
    from research.launch import distributed  # This process is one of the run's.
    try:
      distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  if _LIST.value:
    for path, title in experiment.list_experiments():
      print(f"{path:<36} {title}")
    return
  if _SUMMARY.value:
    _print_summary(_SUMMARY.value)
    return
  if _CONFIG.value is None:
    raise app.UsageError("Pass --config=experiments/<paper>.py (see --list).")
  if _PRINT_CONFIG.value:
    print(_CONFIG.value)
    return
  config_arg = config_flags.get_config_filename(flags.FLAGS["config"])  # path[:arg]
  config_file = config_arg.partition(":")[0]
  module = experiment.load_module(config_file)
  try:
    experiment.validate(module, _CONFIG.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  workdir = _WORKDIR.value or _default_workdir(config_arg) + ("_sweep" if _SWEEP.value else "")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise app.UsageError(f"--workdir={workdir} is a file, not a directory: pass a new "
                         "directory, or the directory of the run to resume.")
  if _SWEEP.value or _LAUNCHER.value == "slurm":
    try:
      _launch(module, config_file, config_arg.partition(":")[2], workdir)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    return
  logging.info("Experiment %s -> %s", config_arg, workdir)
  from research import errors
  from research.train import checkpoint, workdir as workdir_lib
  # Expected stops (a config the data or the workdir refuses, data not here, a busy workdir, no
  # intact checkpoint, divergence): their one-line message is the whole story.
  refusals = (errors.ConfigError, errors.DataNotFound, workdir_lib.WorkdirBusy,
              checkpoint.CheckpointError, FloatingPointError)
  try:
    if _REPORT_ONLY.value:
      experiment.rewrite_report(module, _CONFIG.value, workdir)
    else:
      experiment.run_experiment(module, _CONFIG.value, workdir)
  except refusals as e:
    logging.debug("Stopped by", exc_info=True)
    sys.exit(f"FATAL: {e}")


def main_with_short_usage_errors(argv):
  """`main`, with a usage error printed as its one line.

  absl's own handling prints the module docstring and every flag's help
  (about 90 lines) before the line that says what is wrong.
  """
  try:
    main(argv)
  except app.UsageError as e:
    sys.exit(f"FATAL usage error: {e}\nSee the flags with --helpshort.")


if __name__ == "__main__":
  app.run(main_with_short_usage_errors, flags_parser=parse_flags)
