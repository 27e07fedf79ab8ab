"""Image classification on the softmax cross-entropy (the default objective).

Keys (top level, as before the objectives existed): model.name/kwargs,
optimizer.*, augment, label_smoothing, aux_loss_weight (GoogLeNet §5's
auxiliary heads, 0.3 there), freeze and init_from.* (research/train/transfer.py),
data.mean/std (standardisation inside the step; () for the dataset's own,
research/data/datasets.py). `config.objective` holds only
the name. Evaluation: loss, accuracy, error and top-5 accuracy of a split
(top-5 left out with 5 classes or fewer, where it is always 1), exact whatever
the batch size, for each of config.eval_views (research/ops/views.py): the
first view's as <split>/accuracy etc., the others' as <split>/<view>/accuracy.
"""

import re

from absl import logging
import jax
import ml_collections

from research import models
from research.data import augment as augment_lib, datasets
from research.models import summary as summary_lib
from research.ops import views
from research.train import optim, steps, transfer
from research.train.objectives import base
from research.errors import require


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops impossible model, optimizer and input settings, naming the key."""
  optim.validate_config(config.optimizer)
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
  eval_views = parse_eval_views(config.eval_views)
  dense = [v.name for v in eval_views if v.needs_dense]
  require(not dense or models.has_dense_mode(config.model.name), "eval_views",
          config.eval_views, f"{dense[0] if dense else ''} needs a model whose FC layers run "
          f"as convolutions (dense=True: VGG, AlexNet, ZF Net); {config.model.name!r} has "
          "none. Use central or ten_crop(s).")


def parse_eval_views(specs) -> tuple[views.View, ...]:
  """config.eval_views -> the parsed views; a ConfigError names a bad one."""
  require(len(specs) > 0, "eval_views", specs, "name at least one view, e.g. ('central',).")
  parsed = []
  for spec in specs:
    try:
      parsed.append(views.parse(spec))
    except ValueError as e:
      require(False, "eval_views", specs, str(e))
  names = [v.name for v in parsed]
  require(len(set(names)) == len(names), "eval_views", specs, "names a view twice.")
  return tuple(parsed)


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
    self.eval_views = parse_eval_views(config.eval_views)
    if train_data.num_classes <= 5:
      logging.info("%d classes: top-5 accuracy is always 1, so it is not reported.",
                   train_data.num_classes)
    self.eval_step = steps.make_eval_step(self.model, eval_views=self.eval_views,
                                          compute_dtype=config.compute_dtype, **self.norm)
    self.train_step = self.make_train_step()

  def make_train_step(self):
    config = self.config
    params = jax.eval_shape(self.init_state).params
    return steps.make_train_step(
        self.model, self.tx, label_smoothing=config.label_smoothing,
        aux_loss_weight=config.aux_loss_weight,
        augment=augment_lib.build(config.augment, self.train_data),
        frozen=transfer.frozen_modules(params, config.freeze),
        compute_dtype=config.compute_dtype, **self.norm)

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
    metrics, count = {}, sums["count"]
    for i, view in enumerate(self.eval_views):
      prefix = f"{view.name}/" if i else ""
      metrics[prefix + "loss"] = float(sums[prefix + "loss"] / count)
      metrics[prefix + "accuracy"] = float(sums[prefix + "correct"] / count)
      metrics[prefix + "error"] = float(1 - sums[prefix + "correct"] / count)
      if prefix + "correct5" in sums:  # Absent with 5 classes or fewer.
        metrics[prefix + "top5_accuracy"] = float(sums[prefix + "correct5"] / count)
    return metrics
