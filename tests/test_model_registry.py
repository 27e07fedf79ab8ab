"""Every registered model exposes its fields to config.model.kwargs (issue 12, item 3)."""

import dataclasses

import pytest

from research import models


def _plain_fields(module) -> dict:
  """The built module's own fields that a config can hold."""
  return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
          if f.name not in ("parent", "name", "num_classes")
          and isinstance(getattr(module, f.name), (bool, int, float, str, tuple))}


@pytest.mark.parametrize("name", sorted(models.registry()))
def test_default_kwargs_are_every_field_of_the_built_model(name):
  # Whatever the registration (class, functools.partial, partial of a
  # function): the kwargs are exactly the fields the model is built with.
  kwargs = models.default_kwargs(name)
  module = models.get_model(name, **kwargs)
  assert kwargs == _plain_fields(module)
  assert models.get_model(name) == module  # Passing the defaults changes nothing.


@pytest.mark.parametrize("name", ["nin_small", "resnet20", "plain20", "vgg_small",
                                  "alexnet_small", "googlenet_small", "zfnet_small"])
def test_partial_registered_models_take_their_fields_as_kwargs(name):
  kwargs = models.default_kwargs(name)
  assert len(kwargs) >= 5, kwargs
  field, value = next((k, v) for k, v in kwargs.items() if isinstance(v, (bool, float, int)))
  new = (not value) if isinstance(value, bool) else value + 1
  assert getattr(models.get_model(name, **{field: new}), field) == new


def test_unknown_override_names_the_fields():
  with pytest.raises(ValueError, match=r"'nin_small' has no fields \['dropuot'\]"):
    models.default_kwargs("nin_small", dropuot=0.3)
