"""Hyperparameter sweeps: declared next to an experiment, run by a launcher.

An experiment module may define `sweep(arg) -> list[dict]`, the runs, each a
dict of config overrides, built with the helpers here:

  product({"optimizer.learning_rate": [1e-3, 3e-3], "batch_size": [64, 128]})
      -> 4 runs, every combination;
  zip_({"optimizer.learning_rate": [1e-3, 3e-3], "batch_size": [64, 128]})
      -> 2 runs, the i-th values together;
  product(zip_(...), {"seed": [0, 1]}, fixed({"optimizer.name": "sgd"}, num_epochs=2.0))
      -> parts combine; `fixed` sets keys in every run.

`python launch.py --config=experiments/lenet.py --sweep` plans the runs into
--workdir (one subdirectory each, named after the swept values), hands those
not yet finished to the launcher (launchers.py), then prints and writes the
summary (summary.md, summary.csv, summary.png). `--sweep_summary` rebuilds the
summary alone from the directories. A sweep directory holds:
  sweep.json     the experiment, the metric and the runs in order;
  <run name>/    one trial each (trial.json, status.json, report.md, ...; see trial.py).
"""

import csv
import math
import os

from research.launch import trial

# --- Declaring sweeps ----------------------------------------------------


def _runs_of(part) -> list[dict]:
  """A list of override dicts as it is; a dict {key: [values]}: their product."""
  if isinstance(part, dict):
    runs = [{}]
    for key, values in part.items():
      if not isinstance(values, list):
        raise TypeError(f"Sweep key {key!r}: give a list of values, got {values!r} (for a "
                        "single value use [value] or fixed()).")
      runs = [{**run, key: value} for run in runs for value in values]
    return runs
  return [dict(run) for run in part]


def product(*parts) -> list[dict]:
  """Every combination of the parts' runs (each part: a list of runs or {key: [values]})."""
  runs = [{}]
  for part in parts:
    runs = [{**a, **b} for a in runs for b in _runs_of(part)]
  return runs


def zip_(*parts) -> list[dict]:
  """The parts' runs side by side: run i merges the i-th run (or value) of each."""
  columns = []
  for part in parts:
    if isinstance(part, dict):
      columns += [_runs_of({key: values}) for key, values in part.items()]
    else:
      columns.append(_runs_of(part))
  lengths = sorted({len(c) for c in columns})
  if len(lengths) > 1:
    raise ValueError(f"zip_ needs parts of one length; got lengths {lengths}.")
  return [{k: v for run in runs for k, v in run.items()} for runs in zip(*columns)]


def fixed(overrides: dict | None = None, **keys) -> list[dict]:
  """One run setting these keys; dotted keys go in the dict:
  fixed({"optimizer.schedule": "constant"}, num_epochs=2.0)."""
  return [{**(overrides or {}), **keys}]


# --- Planning: names, directories, what is left to run ------------------


def _varying_keys(runs: list[dict]) -> list[str]:
  """Keys whose value differs between runs, in first-seen order."""
  keys = list(dict.fromkeys(k for run in runs for k in run))
  return [k for k in keys if len({repr(run.get(k)) for run in runs}) > 1]


def _short(key: str, keys: list[str]) -> str:
  """The last part of a dotted key, unless another key ends the same way."""
  leaf = key.rsplit(".", 1)[-1]
  return leaf if sum(k.rsplit(".", 1)[-1] == leaf for k in keys) == 1 else key


def run_name(run: dict, varying: list[str]) -> str:
  parts = [f"{_short(k, varying)}={run[k]}" for k in varying if k in run]
  name = ",".join(parts) or "base"
  return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in name)


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def command_line_overrides(module, arg: str, config) -> dict:
  """The --config.key=value flags given with --sweep: config's differences from get_config."""
  base = _flatten(module.get_config(arg or None).to_dict())
  return {k: v for k, v in _flatten(config.to_dict()).items() if base.get(k) != v}


def plan(module, config_file: str, arg: str, sweep_dir: str, *, extra: dict | None = None,
         distributed: bool = False, metric: str = "test/accuracy") -> list[str]:
  """Writes sweep.json and each run's trial.json; returns the runs' directories.

  Every run's config is built and validated first, so a typo in the sweep
  stops before anything is written or submitted.
  """
  from research.launch import experiment  # Imports JAX.
  if not hasattr(module, "sweep"):
    raise ValueError(f"{config_file} defines no sweep(arg); add one returning a list of "
                     "override dicts (see research/launch/sweep.py).")
  runs = module.sweep(arg or None)
  if not runs:
    raise ValueError(f"{config_file}'s sweep({arg!r}) returned no runs.")
  varying = _varying_keys(runs)
  clash = sorted(set(extra or {}) & set(varying))
  if clash:
    raise ValueError(f"--config.{clash[0]} is swept by the experiment's sweep(); drop the "
                     "flag, or change the sweep.")
  runs = [{**run, **(extra or {})} for run in runs]
  names = [run_name(run, varying) for run in runs]
  if len(set(names)) < len(names):
    raise ValueError("Two runs of the sweep have the same overrides; remove the duplicates.")
  for run in runs:
    experiment.validate(module, trial.make_config(module, arg, run))

  sweep_dir = os.path.abspath(sweep_dir)
  workdirs = []
  for name, run in zip(names, runs):
    workdir = os.path.join(sweep_dir, name)
    spec = {"config_file": os.path.abspath(config_file), "arg": arg or "",
            "overrides": run, "distributed": distributed}
    old = trial.read_json(os.path.join(workdir, "trial.json"))
    if old and (old["overrides"], old["config_file"], old["arg"]) != (
        run, spec["config_file"], spec["arg"]):
      raise ValueError(f"{workdir} holds a run with other settings ({old['overrides']}); "
                       "use another --workdir, or delete that directory.")
    os.makedirs(workdir, exist_ok=True)
    trial.write_json(os.path.join(workdir, "trial.json"), spec)
    workdirs.append(workdir)
  trial.write_json(os.path.join(sweep_dir, "sweep.json"), {
      "config": trial.config_arg({"config_file": os.path.abspath(config_file), "arg": arg}),
      "metric": metric, "swept": varying, "runs": names})
  return workdirs


def plan_single(module, config_file: str, arg: str, workdir: str, *, extra: dict | None = None,
                distributed: bool = False) -> str:
  """One run as a trial (for a Slurm job without a sweep): trial.json in `workdir`."""
  from research.launch import experiment  # Imports JAX.
  experiment.validate(module, trial.make_config(module, arg, extra or {}))
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  trial.write_json(os.path.join(workdir, "trial.json"), {
      "config_file": os.path.abspath(config_file), "arg": arg or "",
      "overrides": extra or {}, "distributed": distributed})
  return workdir


def run_sweep(workdirs: list[str], launcher, sweep_dir: str, metric: str) -> str | None:
  """Launches the runs not finished yet; returns the summary table once all ended."""
  todo = [w for w in workdirs if not trial.is_finished(w)]
  print(f"Sweep of {len(workdirs)} runs in {sweep_dir}: {len(workdirs) - len(todo)} already "
        f"finished, {len(todo)} to run ({type(launcher).__name__}).", flush=True)
  if todo and not launcher.launch(todo):
    print(f"Not waiting for the jobs; rebuild the summary when they end: python launch.py "
          f"--sweep_summary --workdir={sweep_dir}")
    return None
  return summarize(sweep_dir, metric)


# --- The summary: a table, a CSV and a plot, from the directories alone --


def unfinished(sweep_dir: str) -> list[str]:
  """Names of the sweep's runs whose status is not "done"."""
  return [r["name"] for r in collect(sweep_dir)[1] if r["status"] != "done"]


def _lower_is_better(metric: str) -> bool:
  return any(word in metric for word in ("loss", "error", "perplexity", "time"))


def _format(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return "—" if value is None else str(value)


def _clip(text: str, width: int) -> str:
  return text if len(text) <= width else text[:width - 1] + "…"


def _duration(seconds) -> str:
  if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
    return "—"
  minutes, s = divmod(int(round(seconds)), 60)
  return f"{minutes}m{s:02d}s"


def collect(sweep_dir: str) -> tuple[dict, list[dict]]:
  """(sweep.json, one row per run: name, overrides, status, reason, metrics)."""
  info = trial.read_json(os.path.join(sweep_dir, "sweep.json"))
  if not info:
    raise FileNotFoundError(f"{sweep_dir}/sweep.json is missing: not a sweep directory. "
                            "Pass the --workdir the sweep was started with.")
  rows = []
  for name in info["runs"]:
    workdir = os.path.join(sweep_dir, name)
    spec, status = trial.read_json(os.path.join(workdir, "trial.json")), trial.read_status(workdir)
    rows.append({"name": name, "overrides": spec.get("overrides", {}),
                 "status": status.get("status", "not started"),
                 "reason": status.get("reason", ""), "job": status.get("job"),
                 "metrics": status.get("metrics", {})})
  return info, rows


def summarize(sweep_dir: str, metric: str | None = None) -> str:
  """Writes summary.md, summary.csv and summary.png; returns the table (markdown)."""
  sweep_dir = os.path.abspath(sweep_dir)
  info, rows = collect(sweep_dir)
  metric = metric or info.get("metric", "test/accuracy")
  swept = info["swept"]
  scored = [r for r in rows if r["status"] == "done" and metric in r["metrics"]]
  pick = min if _lower_is_better(metric) else max
  best = pick(scored, key=lambda r: r["metrics"][metric]) if scored else None

  header = ["run", *(_short(k, swept) for k in swept), "status", metric, "train/loss",
            "time", "note"]
  table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  csv_rows = []
  for i, r in enumerate(rows):
    m = r["metrics"]
    note = "best" if r is best else _clip(r["reason"].replace("|", "/"), 120)
    if r["status"] in ("running", "queued", "preempted") and r["job"]:
      note = f"Slurm job {r['job']}" + (f"; {note}" if note else "")
    cells = [str(i), *(_format(r["overrides"].get(k, "default")) for k in swept), r["status"],
             _format(m.get(metric)), _format(m.get("train/loss")),
             _duration(m.get("wall_time_s")), note]
    table.append("| " + " | ".join(cells) + " |")
    csv_rows.append({"run": r["name"], **{k: r["overrides"].get(k) for k in swept},
                     "status": r["status"], metric: m.get(metric), "reason": r["reason"]})
  done = sum(r["status"] == "done" for r in rows)
  title = (f"Sweep of {info['config']}: {done} of {len(rows)} runs done; {metric}, "
           f"{'lower' if _lower_is_better(metric) else 'higher'} is better.")
  text = title + "\n\n" + "\n".join(table) + "\n"

  with open(os.path.join(sweep_dir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
    writer.writeheader()
    writer.writerows(csv_rows)
  figure = _plot(rows, swept, metric, os.path.join(sweep_dir, "summary.png"), info["config"])
  with open(os.path.join(sweep_dir, "summary.md"), "w") as f:
    f.write(f"# {text}" + (f"\n![{metric}](summary.png)\n" if figure else ""))
  return text


def _plot(rows: list[dict], swept: list[str], metric: str, path: str, title: str) -> bool:
  """The metric against the first numeric swept key, one line per value of the others."""
  import matplotlib
  matplotlib.use("Agg")  # Files only: no display on a cluster or in CI.
  from matplotlib import pyplot as plt

  scored = [r for r in rows if r["status"] == "done" and metric in r["metrics"]]
  numeric = [k for k in swept
             if all(isinstance(r["overrides"].get(k), (int, float)) for r in rows)]
  if not scored or not swept:
    return False
  fig, ax = plt.subplots(figsize=(6, 4))
  if numeric:
    x_key = numeric[0]
    # One line per combination of the other keys that vary among the plotted runs.
    others = [k for k in _varying_keys([r["overrides"] for r in scored]) if k != x_key]
    groups = {}
    for r in scored:
      label = ", ".join(f"{_short(k, swept)}={r['overrides'].get(k, 'default')}"
                        for k in others)
      groups.setdefault(label, []).append((r["overrides"][x_key], r["metrics"][metric]))
    for label, points in groups.items():
      xs, ys = zip(*sorted(points))
      ax.plot(xs, ys, marker="o", label=label or None)
    xs = [r["overrides"][x_key] for r in scored]
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
      ax.set_xscale("log")
    ax.set_xlabel(x_key)
    if any(groups):
      ax.legend(fontsize=8)
  else:  # Nothing numeric swept (e.g. model names): one bar per run.
    ax.bar(range(len(scored)), [r["metrics"][metric] for r in scored])
    ax.set_xticks(range(len(scored)), [r["name"] for r in scored], rotation=30, ha="right",
                  fontsize=8)
  ax.set_ylabel(metric)
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True
