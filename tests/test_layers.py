"""The package's imports go one way, and have no cycles.

The layers, lowest first (a module may import its own layer and the ones
below it, never one above):

  ops -> models -> data -> train -> eval -> report -> launch -> experiments

  ops          pure JAX functions (conv arithmetic, LRN, the deconvnet, attacks)
  models       Flax modules by name
  data         TFDS builders, reading, input pipelines
  train        train state, steps, optimizers, checkpoints, metrics, the loops
  eval         analysis of trained networks and the one plotting module
  report       `research/report.py`: claims checked on metrics, report.md;
               it imports nothing of the package, and launch builds on it
  launch       running experiments (one run, several variants, sweeps)
  experiments  `experiments/<paper>.py`, loaded by path by launch

The graph is read from the source (ast), function-local imports included,
so an import hidden in a function body to dodge a cycle is still a cycle.
The package's set-up, `research/__init__.py` and the `research/xla_flags.py`
it runs (XLA flags set before JAX starts), sits below everything, with
`research/errors.py` (the one config check, used by every layer).
"""

import ast
import os


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LAYERS = ("ops", "models", "data", "train", "eval", "report", "launch", "experiments")
SETUP_MODULES = ("research", "research.xla_flags", "research.errors")  # Below every layer.


def _is_plotting(module: str) -> bool:
  """The figures' modules: research/eval/plots.py (the save helper, shared figures) and,
  beside it, research/eval/<topic>_plots.py (a paper's or a task's own figures)."""
  return module == "research.eval.plots" or (module.startswith("research.eval.")
                                             and module.endswith("_plots"))


def _modules() -> dict[str, str]:
  """Dotted module name -> file path, for research/ and experiments/."""
  found = {}
  for top in ("research", "experiments"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for f in files:
        if not f.endswith(".py"):
          continue
        rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
        if rel[-1] == "__init__":
          rel = rel[:-1]
        found[".".join(rel)] = os.path.join(dirpath, f)
  return found


def _layer(module: str) -> int:
  """Index in LAYERS; -1 for the package's set-up."""
  parts = module.split(".")
  if parts[0] == "experiments":
    return LAYERS.index("experiments")
  if module in SETUP_MODULES:
    return -1
  if parts[1] not in LAYERS:
    raise AssertionError(f"{module} is in no layer: place it in LAYERS or SETUP_MODULES "
                         "(tests/test_layers.py) and say why in its docstring.")
  return LAYERS.index(parts[1])


def _imports(module: str, path: str, known: dict) -> list[tuple[int, str, str]]:
  """(line, imported module, the import as written) of every package import in
  the file, at any depth (function bodies included)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_package = path.endswith("__init__.py")
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split(".")[0] in ("research", "experiments"):
          found.append((node.lineno, alias.name, f"import {alias.name}"))
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # Relative: resolve against this module's package.
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
      if base.split(".")[0] not in ("research", "experiments"):
        continue
      names = ", ".join(a.name for a in node.names)
      text = f"from {'.' * node.level}{node.module or ''} import {names}"
      for alias in node.names:
        target = f"{base}.{alias.name}"  # A submodule, or a name defined in `base`.
        found.append((node.lineno, target if target in known else base, text))
  return [(line, target, text) for line, target, text in found]


def _graph():
  known = _modules()
  edges = {}
  for module, path in known.items():
    edges[module] = []
    for line, target, text in _imports(module, path, known):
      if target not in known:
        raise AssertionError(f"{os.path.relpath(path, ROOT)}:{line}: `{text}` names "
                             f"{target}, which is not a module of the package.")
      if target != module:
        edges[module].append((line, target, text))
  return known, edges


def test_every_import_goes_down_the_layers():
  known, edges = _graph()
  upward = []
  for module, imports in edges.items():
    for line, target, text in imports:
      if _layer(target) > _layer(module):
        upward.append(f"{os.path.relpath(known[module], ROOT)}:{line}: `{text}` imports "
                      f"{LAYERS[_layer(target)]} from {LAYERS[_layer(module)]}")
  assert not upward, ("Upward imports (order: " + " -> ".join(LAYERS) + "):\n"
                      + "\n".join(upward))


def _find_cycle(edges) -> list[tuple[str, int, str]] | None:
  """A cycle as [(module, line, import text), ...], or None (depth-first search)."""
  state, stack = {}, []

  def visit(module):
    state[module] = "open"
    for line, target, text in edges.get(module, ()):
      stack.append((module, line, text))
      if state.get(target) == "open":
        start = next(i for i, (m, _, _) in enumerate(stack) if m == target)
        return stack[start:]
      if target not in state:
        cycle = visit(target)
        if cycle:
          return cycle
      stack.pop()
    state[module] = "done"
    return None

  for module in sorted(edges):
    if module not in state:
      cycle = visit(module)
      if cycle:
        return cycle
  return None


def test_no_import_cycles():
  known, edges = _graph()
  cycle = _find_cycle(edges)
  assert cycle is None, "Import cycle:\n" + "\n".join(
      f"  {os.path.relpath(known[m], ROOT)}:{line}: `{text}`" for m, line, text in cycle)


def test_the_checker_finds_cycles_and_upward_imports():
  # The checks above could pass by finding nothing; show that they find something.
  edges = {"research.data.a": [(3, "research.data.b", "from research.data import b")],
           "research.data.b": [(9, "research.data.a", "from research.data import a")]}
  assert [m for m, _, _ in _find_cycle(edges)] == ["research.data.a", "research.data.b"]
  assert _find_cycle({"research.data.a": edges["research.data.a"],
                      "research.data.b": []}) is None
  assert _layer("research.ops.deconvnet") < _layer("research.models.layers")
  assert _layer("research.report") < _layer("research.launch.multirun")
  assert _layer("experiments.lenet") == len(LAYERS) - 1
  assert _layer("research.xla_flags") < _layer("research.ops.pooling")
  known = _modules()
  assert ("research.train.trainer" in known and "research.ops" in known
          and "experiments.lenet" in known)


def test_matplotlib_is_used_in_one_module():
  """Every figure is drawn in research/eval/plots.py or a research/eval/*_plots.py beside it."""
  others = []
  for module, path in _modules().items():
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      if not _is_plotting(module) and any(n.split(".")[0] == "matplotlib" for n in names):
        others.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
  assert not others, f"matplotlib imported outside research/eval/(plots|*_plots).py: {others}"
  assert _is_plotting("research.eval.stn_plots") and not _is_plotting("research.eval.stn_analysis")
