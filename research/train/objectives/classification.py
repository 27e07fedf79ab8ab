"""Image classification on the softmax cross-entropy (the default objective).

Keys (top level, as before the objectives existed): model.name/kwargs,
optimizer.*, augment, label_smoothing, aux_loss_weight (GoogLeNet §5's
auxiliary heads, 0.3 there), freeze and init_from.* (research/train/transfer.py),
data.mean/std (standardisation inside the step; () for the dataset's own,
research/data/datasets.py). `config.objective` holds only
the name. Evaluation: loss, accuracy and error of a split, exact whatever the
batch size.
"""

import re

from absl import logging
import jax
import ml_collections

from research import models
from research.data import augment as augment_lib, datasets
from research.models import summary as summary_lib
from research.train import optim, steps, transfer
from research.train.objectives import base
from research.errors import require


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops impossible model, optimizer and input settings, naming the key."""
  require(config.optimizer.learning_rate > 0, "optimizer.learning_rate",
          config.optimizer.learning_rate, "must be > 0.")
  require(config.optimizer.name in optim.OPTIMIZERS, "optimizer.name",
          config.optimizer.name, f"choose one of {optim.OPTIMIZERS}.")
  require(config.optimizer.schedule in optim.SCHEDULES, "optimizer.schedule",
          config.optimizer.schedule, f"choose one of {optim.SCHEDULES}.")
  require(all(0 < b < 1 for b in config.optimizer.boundaries), "optimizer.boundaries",
          config.optimizer.boundaries, "are fractions of training, each in (0, 1).")
  datasets.normalization(config.data.name, config.data.mean, config.data.std)  # Raises.
  try:
    augment_lib.parse(config.augment)
  except ValueError as e:
    require(False, "augment", config.augment, str(e))
  for key, pattern in (("freeze", config.freeze),
                       ("init_from.include_regex", config.init_from.include_regex)):
    try:
      re.compile(pattern)
    except re.error as e:
      require(False, key, pattern, f"not a regular expression ({e}).")
  require(config.model.name in models.registry(), "model.name", config.model.name,
          f"unknown model. Known: {', '.join(sorted(models.registry()))}.")


class Objective(base.Objective):
  """config.model trained on config.data's labels; state: `steps.TrainState`."""

  progress_keys = ("loss", "accuracy")
  has_eval_split = True

  def __init__(self, config, train_data, total_steps, workdir):
    super().__init__(config, train_data, total_steps, workdir)
    kwargs = {"num_classes": train_data.num_classes, **config.model.kwargs.to_dict()}
    self.model = models.get_model(config.model.name, **kwargs)
    self.image_shape = tuple(train_data.image_shape)
    tx, self.schedule = optim.make_optimizer(config.optimizer, total_steps)
    self.tx = transfer.with_frozen(tx, config.freeze)  # Frozen parameters: zero updates.
    data = config.data
    mean, std = datasets.normalization(data.name, data.mean, data.std)
    datasets.check_channels(data.name, mean, train_data.image_shape[-1])
    logging.info("Standardising with mean=%s, std=%s.", mean, std)
    self.norm = dict(mean=mean, std=std)
    self.eval_step = steps.make_eval_step(self.model, **self.norm)
    self.train_step = self.make_train_step()

  def make_train_step(self):
    config = self.config
    params = jax.eval_shape(self.init_state).params
    return steps.make_train_step(
        self.model, self.tx, label_smoothing=config.label_smoothing,
        aux_loss_weight=config.aux_loss_weight,
        augment=augment_lib.build(config.augment, self.train_data),
        frozen=transfer.frozen_modules(params, config.freeze), **self.norm)

  def summary(self):
    summary = summary_lib.summarize(self.model, self.image_shape, train=False)
    logging.info("Model %s: %s parameters.", self.config.model.name,
                 f"{summary.total_params:,}")
    return summary.table(), summary.total_params

  def init_state(self):
    return steps.create_train_state(self.model, self.tx, (1, *self.image_shape),
                                    self.config.seed)

  def start(self, state):
    """A new run that starts from another run's parameters (config.init_from)."""
    init_from = self.config.init_from
    if not init_from.workdir:
      return state
    sharding = jax.tree.leaves(state)[0].sharding
    state, copied = transfer.init_from_checkpoint(
        state, self.tx, init_from.workdir, init_from.include_regex, sharding)
    logging.info("Initialised %s from %s.", ", ".join(copied), init_from.workdir)
    return state

  def train_extras(self, step):
    return {"learning_rate": float(self.schedule(step - 1))}

  def eval_metrics(self, sums):
    return {"loss": float(sums["loss"] / sums["count"]),
            "accuracy": float(sums["correct"] / sums["count"]),
            "error": float(1 - sums["correct"] / sums["count"])}
