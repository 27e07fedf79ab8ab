"""Optimizers and learning-rate schedules, chosen by name from the config."""

import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def make_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """config: learning_rate, schedule, warmup_steps, boundaries, decay_factor.

  - constant: lr throughout.
  - step: lr multiplied by `decay_factor` at each boundary, given as fractions
    of training (ResNet §4.2 divides by 10 at 32k and 48k of 64k iterations:
    boundaries=(0.5, 0.75), decay_factor=0.1).
  - cosine: cosine decay to zero over training.
  A linear warm-up over `warmup_steps` comes first when it is > 0.
  """
  lr, warmup = config.learning_rate, config.get("warmup_steps", 0)
  decay_steps = max(1, total_steps - warmup)
  if config.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif config.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps)
  elif config.schedule == "step":
    boundaries = {int(round(b * total_steps)) - warmup: config.decay_factor
                  for b in config.boundaries}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  else:
    raise ValueError(f"config.optimizer.schedule={config.schedule!r}; choose one of "
                     f"{SCHEDULES}.")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int):
  """Returns (optax transformation, schedule) for config.optimizer.

  SGD follows AlexNet §5: momentum 0.9 and weight decay added to the gradient
  (L2 on all parameters, as the paper's update rule has it); AdamW decouples it.
  """
  schedule = make_schedule(config, total_steps)
  if config.name == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(config.weight_decay) if config.weight_decay else optax.identity(),
        optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov))
  elif config.name == "adam":
    tx = optax.chain(
        optax.add_decayed_weights(config.weight_decay) if config.weight_decay else optax.identity(),
        optax.adam(schedule, b1=config.b1, b2=config.b2))
  elif config.name == "adamw":
    tx = optax.adamw(schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay)
  else:
    raise ValueError(f"config.optimizer.name={config.name!r}; choose one of {OPTIMIZERS}.")
  return tx, schedule
