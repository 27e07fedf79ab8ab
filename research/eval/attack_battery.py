"""The attacks of Szegedy et al. 2013 and Goodfellow et al. 2014 on trained
classifiers of one dataset, as experiments/adversarial.py runs them.

`evaluate` measures, at the config's epsilon (L-infinity, pixels in [0, 1]):
  - error and confidence under FGSM (Goodfellow et al. eq. 3), PGD (Madry et
    al. 2017) and random ±eps signs, as curves over `attack.epsilons`
    (`attack_curves.error_curve`);
  - transfer (Szegedy et al. §4.3; Goodfellow et al. §6, §8): FGSM examples
    made on one network, the error they cause on another;
  - Goodfellow et al.'s Fig. 1 (clean, perturbation, adversarial) for the
    maxout network;
  - Szegedy et al.'s box-constrained L-BFGS attack (§4.1), targeted at the next
    class: its success rate and mean distortion sqrt(sum (x' - x)^2 / n).
A classifier is (apply_fn, variables), apply_fn(variables, x [N, H, W, C] in
[0, 1]) -> logits [N, K], as `research.train.steps.make_apply_fn` makes it.
"""

import os

from absl import logging
import jax
import numpy as np

from research.eval import attack_curves, plots
from research.ops import adversarial


def evaluate(ds: str, nets: dict, transfer_pairs: dict, transfer_target, x, y, class_names,
             attack, key: jax.Array, workdir: str, curve_rows: list, *,
             lbfgs_picture: bool = False) -> dict:
  """Every attack on the `nets` {name: classifier}; returns metrics keyed "<ds>/...".

  Args:
    ds: the dataset's name (metric prefix and picture names).
    nets: must hold "softmax", "maxout" and "maxout_adv" (Fig. 1 and L-BFGS use
      the first two).
    transfer_pairs: {name: (source classifier, target classifier)}.
    transfer_target: a classifier whose clean and own-FGSM errors are reported
      beside the transfer (the target of the cross-architecture pair).
    x, y: test images float [N, H, W, C] in [0, 1], labels int [N].
    class_names: label names, for the pictures.
    attack: config with epsilon, epsilons (must include 0 and epsilon),
      pgd_steps, pgd_step_size, picture_rows, lbfgs_examples,
      lbfgs_search_steps, lbfgs_max_iter.
    key: PRNG key of the random-start and random-sign attacks.
    workdir: where fgsm_<ds>.png (and lbfgs_<ds>.png) go.
    curve_rows: list that the error-curve rows are appended to
      ({dataset, model, attack, epsilon, error_rate, mean_confidence}).
    lbfgs_picture: also draw the L-BFGS examples of the maxout network.
  """
  eps = attack.epsilon
  m = {}
  # Error against epsilon: FGSM, PGD, random signs. The paper's point is eps.
  attack_kwargs = dict(key=key, pgd_steps=attack.pgd_steps, pgd_step_size=attack.pgd_step_size)
  for name, (apply_fn, variables) in nets.items():
    for kind in attack_curves.ATTACKS:
      for row in attack_curves.error_curve(apply_fn, variables, x, y, kind, attack.epsilons,
                                           **attack_kwargs):
        curve_rows.append({"dataset": ds, "model": name, "attack": kind, **row})
        if row["epsilon"] == 0:
          m[f"{ds}/{name}/clean_error"] = row["error_rate"]
        elif row["epsilon"] == eps:
          m[f"{ds}/{name}/{kind}_error"] = row["error_rate"]
          m[f"{ds}/{name}/{kind}_confidence"] = row["mean_confidence"]
    logging.info("%s %s: clean error %.4f, FGSM %.4f, PGD %.4f at eps %g", ds, name,
                 m[f"{ds}/{name}/clean_error"], m[f"{ds}/{name}/fgsm_error"],
                 m[f"{ds}/{name}/pgd_error"], eps)

  # Transfer: examples made on the source, the error they cause on the target.
  for name, ((src_fn, src_vars), (dst_fn, dst_vars)) in transfer_pairs.items():
    made_on_source = lambda xb, yb, f=src_fn, v=src_vars: adversarial.fgsm(f, v, xb, yb, eps)
    m[f"{ds}/transfer/{name}"] = adversarial.error_rate_under_attack(
        dst_fn, dst_vars, x, y, made_on_source)["error_rate"]
  target = transfer_target
  m[f"{ds}/transfer/lenet5_half_b_clean_error"] = adversarial.error_rate_under_attack(
      *target, x, y)["error_rate"]
  m[f"{ds}/transfer/lenet5_half_b_fgsm_error"] = adversarial.error_rate_under_attack(
      *target, x, y, lambda xb, yb: adversarial.fgsm(*target, xb, yb, eps))["error_rate"]

  # Fig. 1 of Goodfellow et al.: clean, perturbation, adversarial (maxout, FGSM).
  apply_fn, variables = nets["maxout"]
  idx = attack_curves.first_correct(apply_fn, variables, x, y, attack.picture_rows)
  x_adv = np.asarray(adversarial.fgsm(apply_fn, variables, x[idx], y[idx], eps))
  triptych(apply_fn, variables, x[idx], x_adv, y[idx], class_names,
           os.path.join(workdir, f"fgsm_{ds}.png"), eps)

  # Szegedy et al.'s L-BFGS attack, targeted at the next class.
  for name in ("softmax", "maxout"):
    apply_fn, variables = nets[name]
    idx = attack_curves.first_correct(apply_fn, variables, x, y, attack.lbfgs_examples)
    result = adversarial.lbfgs_attack(
        apply_fn, variables, x[idx], (y[idx] + 1) % len(class_names),
        num_search_steps=attack.lbfgs_search_steps, max_iter=attack.lbfgs_max_iter)
    ok = result.success
    m[f"{ds}/lbfgs/{name}/success_rate"] = float(ok.mean())
    m[f"{ds}/lbfgs/{name}/mean_distortion"] = (
        float(adversarial.distortion(x[idx][ok], result.x_adv[ok]).mean()) if ok.any()
        else float("nan"))
    if name == "maxout" and lbfgs_picture and ok.any():
      triptych(apply_fn, variables, x[idx][ok], result.x_adv[ok], y[idx][ok], class_names,
               os.path.join(workdir, f"lbfgs_{ds}.png"), None)
  return m


def triptych(apply_fn, variables, clean, adv, labels, class_names, path: str, epsilon) -> str:
  """Goodfellow et al.'s Fig. 1 for a few examples, with the model's predictions."""
  p_clean = np.asarray(jax.nn.softmax(apply_fn(variables, clean)))
  p_adv = np.asarray(jax.nn.softmax(apply_fn(variables, adv)))
  return plots.adversarial_triptych(clean, adv, p_clean.argmax(-1), p_clean.max(-1),
                                    p_adv.argmax(-1), p_adv.max(-1), path, true_labels=labels,
                                    class_names=class_names, epsilon=epsilon, max_rows=6)
