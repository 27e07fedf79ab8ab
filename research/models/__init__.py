"""Models by name.

Every module in this package may define `MODELS = {name: constructor}`; the
constructors are Flax modules (or functions returning one) whose
`__call__(x, *, train)` returns `(logits, features)`, `features` being a dict of
named intermediate activations. Adding a model is adding a module: nothing
here needs editing.
"""

import functools
import importlib
import pkgutil

import flax.linen as nn


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
