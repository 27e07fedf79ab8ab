"""Optimizers and learning-rate schedules, chosen by name from the config."""

import ml_collections
import optax

from research.errors import require

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "step", "exponential")
WARMUPS = ("linear", "constant")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops impossible schedule settings of config.optimizer, naming the key.

  Raises:
    errors.ConfigError (a ValueError): an unknown optimizer, schedule or
      warm-up kind; a learning rate <= 0; boundaries or decay_every outside
      (0, 1) (both are fractions of training); a negative warm-up; a warm-up
      factor outside [0, 1].
  """
  require(config.learning_rate > 0, "optimizer.learning_rate", config.learning_rate,
          "must be > 0.")
  require(config.name in OPTIMIZERS, "optimizer.name", config.name,
          f"choose one of {OPTIMIZERS}.")
  require(config.schedule in SCHEDULES, "optimizer.schedule", config.schedule,
          f"choose one of {SCHEDULES}.")
  require(all(0 < b < 1 for b in config.boundaries), "optimizer.boundaries",
          config.boundaries, "are fractions of training, each in (0, 1).")
  require(config.warmup_steps >= 0, "optimizer.warmup_steps", config.warmup_steps,
          "must be >= 0 (0: no warm-up).")
  require(config.warmup in WARMUPS, "optimizer.warmup", config.warmup,
          f"choose one of {WARMUPS}.")
  require(0 <= config.warmup_factor <= 1, "optimizer.warmup_factor", config.warmup_factor,
          "is the warm-up's learning rate as a fraction of learning_rate, in [0, 1].")
  if config.schedule == "exponential":
    require(0 < config.decay_every < 1, "optimizer.decay_every", config.decay_every,
            "is the fraction of training between two decays of the exponential schedule, "
            "in (0, 1) (GoogLeNet: 8 epochs of 250 is 0.032).")


def make_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """The learning rate at each step (0-based) of a run of `total_steps` steps.

  config: learning_rate, schedule, boundaries, decay_factor, decay_every,
  warmup_steps, warmup, warmup_factor.

  - constant: lr throughout.
  - step: lr multiplied by `decay_factor` at each boundary, given as fractions
    of training (ResNet §4.2 divides by 10 at 32k and 48k of 64k iterations:
    boundaries=(0.5, 0.75), decay_factor=0.1).
  - exponential: lr multiplied by `decay_factor` every `decay_every` (a
    fraction of training), in steps (GoogLeNet §6: "decreasing the learning
    rate by 4% every 8 epochs": decay_factor=0.96, decay_every=8/epochs).
  - cosine: cosine decay to zero over training.
  A warm-up over `warmup_steps` comes first when it is > 0: "linear" from
  warmup_factor x lr up to lr (factor 0: from zero), or "constant" at
  warmup_factor x lr (ResNet §4.2's 110-layer net: 0.01 = 0.1 x 0.1 for about
  400 iterations, then 0.1). The step boundaries stay where they are in the
  whole run; the exponential and cosine decays start after the warm-up.
  """
  lr, warmup = config.learning_rate, config.warmup_steps
  decay_steps = max(1, total_steps - warmup)
  if config.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif config.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps)
  elif config.schedule == "step":
    boundaries = {int(round(b * total_steps)) - warmup: config.decay_factor
                  for b in config.boundaries}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  elif config.schedule == "exponential":
    main = optax.exponential_decay(lr, max(1, int(round(config.decay_every * total_steps))),
                                   config.decay_factor, staircase=True)
  else:
    raise ValueError(f"config.optimizer.schedule={config.schedule!r}; choose one of "
                     f"{SCHEDULES}.")
  if warmup <= 0:
    return main
  start = config.warmup_factor * lr
  if config.warmup == "constant":
    warm = optax.constant_schedule(start)
  else:
    warm = optax.linear_schedule(start, lr, warmup)
  return optax.join_schedules([warm, main], [warmup])


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int):
  """Returns (optax transformation, schedule) for config.optimizer.

  SGD follows AlexNet §5: momentum 0.9 and weight decay added to the gradient
  (L2 on all parameters, as the paper's update rule has it); AdamW decouples it.
  RMSprop (Tieleman & Hinton 2012; Karpathy & Fei-Fei 2015 §3.3's generator):
  the running mean of squared gradients decays by b2 (as Adam's second moment;
  neuraltalk's decay_rate 0.999), eps 1e-8, no momentum.
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
  elif config.name == "rmsprop":
    tx = optax.chain(
        optax.add_decayed_weights(config.weight_decay) if config.weight_decay else optax.identity(),
        optax.rmsprop(schedule, decay=config.b2, eps=1e-8))
  else:
    raise ValueError(f"config.optimizer.name={config.name!r}; choose one of {OPTIMIZERS}.")
  return tx, schedule
