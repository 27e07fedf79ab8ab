"""Models by name.

Every module in this package may define `MODELS = {name: constructor}`; the
constructors are Flax modules (or functions returning one) whose
`__call__(x, *, train)` returns `(logits, features)`, `features` being a dict of
named intermediate activations. Auxiliary classifiers (GoogLeNet §5) are
returned as `features[AUX_LOGITS] = {head name: logits [B, num_classes]}`
(in training only); the loss reads that key and nothing else. Adding a model is
adding a module: nothing here needs editing.
"""

import functools
import importlib
import inspect
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


# Fields that are not the model's to expose: Flax's module plumbing, and the
# class count, which the trainer takes from the data.
_NOT_KWARGS = ("parent", "name", "num_classes")
# Values a ConfigDict can hold and a `--config.model.kwargs.X=...` flag can set.
_PLAIN = (bool, int, float, str, tuple)


def constructor_fields(ctor) -> dict:
  """{name: default} of every keyword argument `ctor` accepts with a default.

  One rule for every way a model is registered: a Flax module class (its
  dataclass fields), a `functools.partial` of one (the partial's keywords are
  the new defaults, its positional arguments are bound), or a function
  (its keyword parameters; what it takes through **kwargs is not visible,
  so register a partial instead). `inspect.signature` reads all three.
  """
  params = inspect.signature(ctor).parameters.values()
  return {p.name: p.default for p in params
          if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}


def config_kwargs(ctor, label: str, **overrides) -> dict:
  """`ctor`'s fields with plain defaults (see `constructor_fields`), updated by `overrides`.

  What a config holds for a module, so that `--config....kwargs.X=...` can
  override any field, type-checked, and `--print_config` shows them. Fields
  whose default is not a plain value (None, a callable, a dtype) are left out
  and keep their default; `num_classes` comes from the data.

  Raises:
    ValueError: an override that is not one of the fields (named with `label`).
  """
  fields = {k: v for k, v in constructor_fields(ctor).items() if k not in _NOT_KWARGS}
  unknown = set(overrides) - set(fields)
  if unknown:
    raise ValueError(f"{label} has no fields {sorted(unknown)}; it has {sorted(fields)}.")
  return {**{k: v for k, v in fields.items() if isinstance(v, _PLAIN)}, **overrides}


def has_dense_mode(name: str) -> bool:
  """Whether the model registered as `name` takes `dense=True`: its fully connected
  layers applied as convolutions, a class score map out (`common.classifier`).

  Raises:
    ValueError: unknown model.
  """
  if name not in registry():
    raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(sorted(registry()))}.")
  ctor = registry()[name]
  cls = ctor.func if isinstance(ctor, functools.partial) else ctor
  call = getattr(cls, "__call__", None)
  return call is not None and "dense" in inspect.signature(call).parameters


def default_kwargs(name: str, **overrides) -> dict:
  """`config_kwargs` of the model registered as `name`: its config.model.kwargs.

  Raises:
    ValueError: unknown model, or an override that is not one of its fields.
  """
  if name not in registry():
    raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(sorted(registry()))}.")
  return config_kwargs(registry()[name], f"Model {name!r}", **overrides)
