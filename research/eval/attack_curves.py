"""Error against the attack's size: FGSM, PGD and a random-sign control.

Goodfellow et al. 2014 report single points (e.g. epsilon 0.25 on MNIST);
a curve over epsilon shows how fast each model breaks, and comparing FGSM
with PGD (Madry et al. 2017) shows how much a one-step attack
underestimates the worst case, which matters most for a model trained
against FGSM itself. The random-sign control perturbs every pixel by
±epsilon at random: the same L-infinity size with no gradient, which
Goodfellow et al. (§8) note hardly changes the error.
"""

import csv

import jax
import jax.numpy as jnp
import numpy as np

from research.ops import adversarial

ATTACKS = ("fgsm", "pgd", "random_sign")


def make_attack(kind: str, apply_fn, variables, epsilon: float, *, key: jax.Array,
                pgd_steps: int = 40, pgd_step_size: float = 0.01):
  """(x [B, ...] in [0, 1], y [B]) -> x_adv, for `error_rate_under_attack`."""
  if kind == "fgsm":
    return lambda x, y: adversarial.fgsm(apply_fn, variables, x, y, epsilon)
  if kind == "pgd":
    return lambda x, y: adversarial.pgd(apply_fn, variables, x, y, epsilon, pgd_step_size,
                                        pgd_steps, key)
  if kind == "random_sign":
    def noise(x, y):
      del y
      signs = jnp.sign(jax.random.uniform(key, x.shape, minval=-1.0, maxval=1.0))
      return jnp.clip(x + epsilon * signs, 0.0, 1.0)
    return noise
  raise ValueError(f"Unknown attack {kind!r}; choose one of {ATTACKS}.")


def error_curve(apply_fn, variables, x, y, kind: str, epsilons, *, key: jax.Array,
                **attack_kwargs) -> list[dict]:
  """error_rate_under_attack at each epsilon: one dict per epsilon, with "epsilon" added."""
  rows = []
  for eps in epsilons:
    if eps == 0:
      result = adversarial.error_rate_under_attack(apply_fn, variables, x, y)
    else:
      attack = make_attack(kind, apply_fn, variables, float(eps), key=key, **attack_kwargs)
      result = adversarial.error_rate_under_attack(apply_fn, variables, x, y, attack)
    rows.append({"epsilon": float(eps), **result})
  return rows


def write_csv(rows: list[dict], path: str) -> None:
  """rows: dicts with the same keys (e.g. dataset, model, attack, epsilon, error_rate)."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def first_correct(apply_fn, variables, x, y, num: int) -> np.ndarray:
  """Indices of the first `num` examples the model classifies correctly (for pictures
  and the L-BFGS attack, which are about turning a right answer wrong)."""
  pred = np.asarray(jnp.argmax(apply_fn(variables, jnp.asarray(x)), -1))
  return np.flatnonzero(pred == np.asarray(y))[:num]
