"""A paper's claims, checked in code, and the `report.md` every run ends with."""

from collections.abc import Callable
import dataclasses
import datetime
import glob
import json
import math
import os


class NotMeasured(Exception):
  """Raised by a claim's measure function when its number cannot be had; the
  message (e.g. "run experiments/rcnn.py into runs/rcnn first") becomes the
  claim's verdict "not measured: <message>"."""


def compared_run(workdir: str, name: str, path: str = "") -> tuple[str, dict | None]:
  """(folder, its metrics.json or None) of experiment `name`'s run that a claim compares
  with: `path` (config.compare.<name>), or by default the sibling folder
  <dirname(workdir)>/<name> (runs/rcnn beside runs/fast_rcnn)."""
  folder = path or os.path.join(os.path.dirname(os.path.abspath(workdir)), name)
  try:
    with open(os.path.join(folder, "metrics.json")) as f:
      return folder, json.load(f)
  except FileNotFoundError:
    return folder, None


def compared_metrics(workdir: str, compare) -> dict:
  """The metrics of the runs a report compares with (config.compare: {experiment
  name: workdir or ""}, see `compared_run`), as "<name>/<metric>", plus
  "compare/<name>": the folder read. A run not there adds no metrics, so its
  claims say "not measured". The compared run's own compared metrics are left out
  (its "<other>/..." keys beside a "compare/<other>"): one level, so the files
  do not nest deeper with every run."""
  out = {}
  for name in compare:
    folder, found = compared_run(workdir, name, compare[name])
    found = found or {}
    out[f"compare/{name}"] = folder
    out.update({f"{name}/{k}": v for k, v in found.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                and f"compare/{k.split('/')[0]}" not in found})
  return out


@dataclasses.dataclass(frozen=True)
class Claim:
  """One claim of a paper and the check of it on our measured metrics.

  Attributes:
    source: where the paper says it, e.g. "He et al. 2015, §4.2, Fig. 6".
    statement: what it says.
    paper: the paper's number(s), as text.
    measure: a metric name, or a function of the metrics dict, giving our number.
    check: a function of our number deciding whether the claim holds here.
    check_text: the check in words, e.g. ">= 0.876".
    fmt: how to print our number.
  """
  source: str
  statement: str
  paper: str
  measure: str | Callable[[dict], float]
  check: Callable[[float], bool]
  check_text: str
  fmt: str = "{:.4f}"

  def evaluate(self, metrics: dict) -> "ClaimResult":
    try:
      ours = metrics[self.measure] if isinstance(self.measure, str) else self.measure(metrics)
    except NotMeasured as e:
      return ClaimResult(self, None, None, f"not measured: {e}")
    except KeyError as e:
      return ClaimResult(self, None, None, f"not measured (missing metric {e})")
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
      return ClaimResult(self, None, None, "not measured")
    return ClaimResult(self, ours, bool(self.check(ours)), "")


@dataclasses.dataclass(frozen=True)
class ClaimResult:
  claim: Claim
  ours: float | None
  holds: bool | None
  note: str

  @property
  def verdict(self) -> str:
    return {True: "holds", False: "does not hold", None: self.note}[self.holds]

  def ours_text(self) -> str:
    return "—" if self.ours is None else self.claim.fmt.format(self.ours)


def evaluate_claims(claims, metrics: dict) -> list[ClaimResult]:
  return [c.evaluate(metrics) for c in claims]


def _cell(text) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def _number(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
  return f"{v:,}" if isinstance(v, int) else str(v)


def write_report(workdir: str, *, title: str, command: str, metrics: dict,
                 results: list[ClaimResult], notes: str = "") -> str:
  """Writes `<workdir>/report.md`, claims.json and metrics.json (the final
  scalar metrics, which other experiments' claims may compare against);
  returns the report's path."""
  lines = [f"# {title}", "",
           f"Rerun with:", "", "```", command, "```", "",
           f"Written {datetime.datetime.now().isoformat(timespec='seconds')}; the "
           f"config, git commit and package versions are in this folder.", ""]
  if notes:
    lines += [notes.strip(), ""]
  if results:
    held = sum(r.holds is True for r in results)
    lines += [f"## The paper's claims ({held} of {len(results)} hold here)", "",
              "| source | claim | paper | ours | check | verdict |",
              "|---|---|---|---|---|---|"]
    for r in results:
      c = r.claim
      lines.append(f"| {_cell(c.source)} | {_cell(c.statement)} | {_cell(c.paper)} | "
                   f"{r.ours_text()} | {_cell(c.check_text)} | **{r.verdict}** |")
    lines.append("")
  lines += ["## Final metrics", "", "| metric | value |", "|---|---|"]
  lines += [f"| {k} | {_number(v)} |" for k, v in sorted(metrics.items())
            if isinstance(v, (int, float))]
  lines.append("")
  figures = sorted(glob.glob(os.path.join(workdir, "*.png")))
  if figures:
    lines += ["## Figures", ""]
    lines += [f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in figures]
    lines.append("")
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  with open(os.path.join(workdir, "claims.json"), "w") as f:
    json.dump([{"source": r.claim.source, "statement": r.claim.statement,
                "paper": r.claim.paper, "ours": r.ours, "check": r.claim.check_text,
                "holds": r.holds, "note": r.note} for r in results], f, indent=1)
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump({k: v for k, v in sorted(metrics.items())
               if isinstance(v, (int, float, str, bool))}, f, indent=1)
  return path
