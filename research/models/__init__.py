"""Models by name.

Every module in this package may define `MODELS = {name: constructor}`; the
constructors are Flax modules (or functions returning one) whose
`__call__(x, *, train)` returns `(logits, features)`, `features` being a dict of
named intermediate activations. Auxiliary classifiers (GoogLeNet §5) are
returned as `features[AUX_LOGITS] = {head name: logits [B, num_classes]}`
(in training only); the loss reads that key and nothing else. Adding a model is
adding a module: nothing here needs editing.
"""

import dataclasses
import functools
import importlib
import pkgutil

import flax.linen as nn

# The features key of the auxiliary classifiers' logits (see the docstring).
AUX_LOGITS = "aux_logits"


@functools.cache
def registry() -> dict:
  models = {}
  for info in pkgutil.iter_modules(__path__):
    module = importlib.import_module(f"{__name__}.{info.name}")
    for name, ctor in getattr(module, "MODELS", {}).items():
      if name in models:
        raise ValueError(f"Model name {name!r} is defined twice (in {module.__name__}).")
      models[name] = ctor
  return models


def get_model(name: str, **kwargs) -> nn.Module:
  """Builds the model registered as `name` with constructor arguments `kwargs`."""
  models = registry()
  if name not in models:
    raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(sorted(models))}.")
  try:
    return models[name](**kwargs)
  except TypeError as e:
    raise ValueError(f"Bad arguments {kwargs} for model {name!r}: {e}") from e


def default_kwargs(name: str, **overrides) -> dict:
  """The model's constructor fields with their defaults (plain values only), updated.

  Putting all of them in config.model.kwargs lets `--config.model.kwargs.X=...`
  override any of them, type-checked, and `--print_config` show them.
  """
  if name not in registry():
    raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(sorted(registry()))}.")
  ctor = registry()[name]
  kwargs = {}
  if dataclasses.is_dataclass(ctor):
    for field in dataclasses.fields(ctor):
      if field.name in ("parent", "name", "num_classes"):
        continue
      if isinstance(field.default, (bool, int, float, str, tuple)):
        kwargs[field.name] = field.default
  unknown = set(overrides) - set(kwargs)
  if unknown and dataclasses.is_dataclass(ctor):
    raise ValueError(f"Model {name!r} has no fields {sorted(unknown)}; it has {sorted(kwargs)}.")
  return {**kwargs, **overrides}
