"""Adversarial training (Goodfellow, Shlens & Szegedy 2014, §6, eq. 6).

  alpha J(θ, x, y) + (1 - alpha) J(θ, x + ε sign(∇x J(θ, x, y)), y)

with the FGSM perturbation recomputed from the current parameters at every
step, inside the jitted step (`steps.make_adversarial_train_step`). Keys:
config.objective.epsilon ([0, 1] pixel units; 0 is plain cross-entropy, the
paper's 0.25 on MNIST) and config.objective.alpha (the paper's 0.5); the model,
optimizer and data keys are the classification objective's. Evaluation is the
clean loss and accuracy of a split (the attacks are research/eval's). Models
with batch norm are refused (none of the paper's have it, and which of the two
passes should update the running statistics is a choice the paper does not
make).
"""

import jax

from research.train import steps
from research.train.objectives import classification
from research.errors import require


def validate_config(config) -> None:
  classification.validate_config(config)
  objective = config.objective
  for key in ("epsilon", "alpha"):
    require(key in objective, f"objective.{key}", None,
            "the adversarial objective needs it (e.g. epsilon=0.25, alpha=0.5).")
  require(0 <= objective.epsilon <= 1, "objective.epsilon", objective.epsilon,
          "must be in [0, 1] ([0, 1] pixel units).")
  require(0 <= objective.alpha <= 1, "objective.alpha", objective.alpha, "must be in [0, 1].")
  for key in ("augment", "label_smoothing", "aux_loss_weight", "freeze"):
    require(not config[key], key, config[key], "is not supported by the adversarial "
            "objective; leave it unset.")


class Objective(classification.Objective):
  """The classifier trained on eq. 6; state: `steps.TrainState`."""

  def make_train_step(self):
    require(not jax.tree.leaves(jax.eval_shape(self.init_state).batch_stats), "model.name",
            self.config.model.name, "has batch norm; the adversarial objective does not "
            "support it.")
    objective = self.config.objective
    return steps.make_adversarial_train_step(
        self.model, self.tx, epsilon=objective.epsilon, alpha=objective.alpha,
        compute_dtype=self.config.compute_dtype, **self.norm)

  @property
  def progress_keys(self):  # adversarial_accuracy exists only when epsilon > 0.
    return ("loss", "accuracy") + (("adversarial_accuracy",)
                                   if self.config.objective.epsilon > 0 else ())
