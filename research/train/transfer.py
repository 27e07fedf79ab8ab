"""Transfer learning by parameter path: freezing, and initialising from another run.

Yosinski et al. 2014 ("How transferable are features in deep neural
networks?") copy the first n layers of a trained network into a new one, then
either keep them fixed ("frozen") or train them with the rest ("fine-tuned",
their "+"). Both are chosen here by regular expressions over parameter paths,
written "/"-joined like "conv1/kernel" or "fc6/bias" and matched with
`re.search`:

  config.freeze = "^(conv1|conv2)/"            # never updated
  config.init_from.workdir = "runs/x/baseA"    # copy from its newest checkpoint
  config.init_from.include_regex = "^conv"     # ... these parameters only

A frozen parameter gets `optax.set_to_zero()` instead of the optimizer (through
`optax.multi_transform`), so weight decay and momentum never touch it and it
stays bit-identical; it keeps no optimizer state either. A frozen layer's
running statistics (batch norm) are frozen too, and used in training
(`frozen_modules`), so the layer computes the same function throughout.
"""

import re

import jax
import numpy as np
import optax

from research.train import checkpoint

FROZEN, TRAINED = "frozen", "trained"


def path_name(path) -> str:
  """A pytree key path as "conv1/kernel"."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                  for k in path)


def param_paths(params) -> list[str]:
  """Every leaf's path name, in tree order."""
  return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def labels(params, freeze_regex: str):
  """The tree of `params` with FROZEN where the path matches, else TRAINED."""
  pattern = re.compile(freeze_regex) if freeze_regex else None
  return jax.tree_util.tree_map_with_path(
      lambda p, _: FROZEN if pattern and pattern.search(path_name(p)) else TRAINED, params)


def frozen_modules(params, freeze_regex: str) -> frozenset[str]:
  """Paths ("bn1", "stage1/block0/bn") of the modules with a parameter whose
  path matches `freeze_regex`; empty for "". The train step keeps these
  modules' mutable variables (batch norm's running statistics) and makes
  their batch norm normalise with them (`steps.make_train_step(frozen=...)`):
  a frozen layer computes the same function before and after training.
  """
  if not freeze_regex:
    return frozenset()
  pattern = re.compile(freeze_regex)
  return frozenset(name.rsplit("/", 1)[0] for name in param_paths(params)
                   if "/" in name and pattern.search(name))


def with_frozen(tx: optax.GradientTransformation,
                freeze_regex: str) -> optax.GradientTransformation:
  """`tx` for the parameters not matching `freeze_regex`; zero updates for the rest.

  "" freezes nothing and returns `tx` itself (the same optimizer state as before).
  """
  if not freeze_regex:
    return tx
  re.compile(freeze_regex)  # A bad pattern fails here, not inside a jitted step.
  return optax.multi_transform({TRAINED: tx, FROZEN: optax.set_to_zero()},
                               lambda params: labels(params, freeze_regex))


def copy_matching(params, source, include_regex: str, *, require_match: bool = True):
  """`params` with the leaves whose path matches `include_regex` taken from `source`.

  Args:
    params: the new network's parameters (any pytree of arrays).
    source: another network's parameters, nested dicts (checkpoint.load_arrays).
    include_regex: "" matches every path.

  Returns:
    (new params, sorted list of the copied paths). Copied leaves are NumPy arrays
    of the parameter's dtype; the others are the original leaves.

  Raises:
    ValueError: a matching path is missing from `source` or has another shape
    (e.g. a classifier for another number of classes), or nothing matches
    (unless not `require_match`).
  """
  flat_source = {path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(source)[0]}
  pattern = re.compile(include_regex)
  copied = []

  def take(path, leaf):
    name = path_name(path)
    if not pattern.search(name):
      return leaf
    if name not in flat_source:
      raise ValueError(f"init_from: parameter {name!r} matches {include_regex!r} but the "
                       f"source has no such parameter (it has {sorted(flat_source)}).")
    value = np.asarray(flat_source[name])
    if value.shape != leaf.shape:
      raise ValueError(f"init_from: parameter {name!r} has shape {leaf.shape} here but "
                       f"{value.shape} in the source; leave it out of include_regex.")
    copied.append(name)
    return value.astype(leaf.dtype)

  new = jax.tree_util.tree_map_with_path(take, params)
  if not copied and require_match:
    raise ValueError(f"init_from.include_regex={include_regex!r} matches none of "
                     f"{param_paths(params)}.")
  return new, sorted(copied)


def layer_regex(layer_names) -> str:
  """A regex matching every parameter of the named layers: ("conv1", "fc6") ->
  "^(conv1|fc6)/"; "" for no layers (matching nothing as a freeze)."""
  names = list(layer_names)
  return f"^({'|'.join(re.escape(n) for n in names)})/" if names else ""


def init_from_checkpoint(state, tx, workdir: str, include_regex: str, sharding):
  """`state` with the matching parameters (and batch statistics) of `workdir`'s
  newest checkpoint, placed with `sharding`, and a fresh optimizer state for them.

  Returns (state, copied parameter paths).
  """
  _, source = checkpoint.load_arrays(workdir)
  params, copied = copy_matching(jax.device_get(state.params), source["params"],
                                 include_regex)
  params = jax.device_put(params, sharding)
  batch_stats = state.batch_stats
  if batch_stats:  # Batch-norm statistics belong with their layer's parameters.
    stats, _ = copy_matching(jax.device_get(batch_stats), source.get("batch_stats", {}),
                             include_regex, require_match=False)
    batch_stats = jax.device_put(stats, sharding)
  opt_state = jax.jit(tx.init, out_shardings=sharding)(params)
  return state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state), copied
