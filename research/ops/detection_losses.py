"""Losses of Fast R-CNN's head and Faster R-CNN's region proposal network.

Pure, jittable, on the targets of detection_targets.py (sample_rois for the
head, rpn_targets for the RPN); leading batch axes are allowed everywhere.
"""

import jax
import jax.numpy as jnp

# Faster R-CNN eq. 1's normalisers and balance (§3.1.2), see rpn_loss.
RPN_LAMBDA = 10.0
RPN_CLS_NORMALIZER = 256.0   # N_cls: the anchor mini-batch size.
RPN_REG_NORMALIZER = 2400.0  # N_reg: anchor positions of a ~1000 x 600 image at stride 16.


def smooth_l1(x: jax.Array, beta: float = 1.0) -> jax.Array:
  """Smooth L1, elementwise (Girshick 2015, "Fast R-CNN", eq. 3).

  smooth_L1(x) = 0.5 x^2 / beta if |x| < beta, else |x| - 0.5 beta. With beta =
  1 (the paper's) it is eq. 3; the value and the gradient (x / beta inside,
  sign(x) outside) are continuous at |x| = beta, and the gradient is bounded by
  1, "less sensitive to outliers than the L2 loss used in R-CNN and SPPnet".
  py-faster-rcnn's RPN uses beta = 1/9 (its sigma = 3). beta = 0 is plain L1.

  Args:
    x: float array, any shape.
    beta: static float >= 0.

  Returns:
    float array of x's shape and dtype.
  """
  if beta < 0:
    raise ValueError(f"smooth_l1: beta={beta} must be >= 0 (1 is Fast R-CNN's eq. 3)")
  ax = jnp.abs(x)
  if beta == 0:
    return ax
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def fast_rcnn_loss(class_logits: jax.Array, box_deltas: jax.Array, labels: jax.Array,
                   box_targets: jax.Array, valid: jax.Array, lam: float = 1.0):
  """Fast R-CNN's multi-task loss over a RoI mini-batch (Girshick 2015, §2.3, eq. 1).

  L(p, u, t^u, v) = L_cls(p, u) + lam [u >= 1] L_loc(t^u, v), with L_cls = -log
  p_u (softmax over K + 1 classes, 0 = background) and L_loc = sum over
  (y, x, h, w) of smooth_l1(t^u_i - v_i): the offsets predicted for the RoI's
  true class u only, none for background. v are the normalised targets of
  sample_rois (§2.3: "we normalize the ground-truth regression targets v_i to
  have zero mean and unit variance"; lam = 1). Averaged over the valid RoIs
  of the mini-batch (the paper's layers divide by the number of RoIs).

  Args:
    class_logits: float [..., R, K + 1].
    box_deltas: float [..., R, K + 1, 4], class-specific offsets (a head's
      [..., R, 4 (K + 1)] output reshaped).
    labels: int [..., R] in [0, K].
    box_targets: float [..., R, 4].
    valid: bool [..., R], False for unfilled slots.
    lam: float, the balance (1).

  Returns:
    (loss, parts): float32 scalar; dict of float32 scalars "cls_loss",
    "loc_loss" (before lam) and "accuracy" (argmax of the logits over the
    valid RoIs). 0 when no RoI is valid.
  """
  labels = labels.astype(jnp.int32)
  weight = valid.astype(jnp.float32)
  count = jnp.maximum(weight.sum(), 1.0)
  log_p = jax.nn.log_softmax(class_logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
  t_u = jnp.take_along_axis(box_deltas, labels[..., None, None], axis=-2)[..., 0, :]
  loc = smooth_l1(t_u.astype(jnp.float32) - box_targets).sum(-1)
  fg = weight * (labels >= 1)
  cls_loss, loc_loss = (weight * nll).sum() / count, (fg * loc).sum() / count
  correct = (jnp.argmax(class_logits, axis=-1) == labels) * weight
  return cls_loss + lam * loc_loss, {"cls_loss": cls_loss, "loc_loss": loc_loss,
                                     "accuracy": correct.sum() / count}


def rpn_loss(objectness_logits: jax.Array, box_deltas: jax.Array, labels: jax.Array,
             box_targets: jax.Array, lam: float = RPN_LAMBDA,
             cls_normalizer: float = RPN_CLS_NORMALIZER,
             reg_normalizer: float = RPN_REG_NORMALIZER, beta: float = 1.0):
  """The region proposal network's loss, per image (Ren et al. 2015, "Faster R-CNN", §3.1.2, eq. 1).

  L = 1/N_cls sum_i L_cls(p_i, p*_i) + lam 1/N_reg sum_i p*_i L_reg(t_i, t*_i),
  over the sampled anchors (labels 1 or 0; -1 is not in the loss), with
  L_cls the log loss of object vs. not object (one logistic logit per anchor,
  which the paper names as the alternative to its 2-way softmax) and L_reg
  smooth L1 summed over the 4 offsets, for positives only.

  Normalisers: the paper's N_cls = 256 (the mini-batch) and N_reg ~ 2,400
  (anchor positions of a ~1000 x 600 image at stride 16) with lam = 10, "so
  both terms are roughly equally weighted": what it tunes is lam / N_reg ~
  1 / N_cls. We keep those constants at every image size: our small images
  have far fewer positions (a 160 x 160 image at stride 16 has 100), and
  N_reg = 100 would weight regression 24x more than the paper did. The
  normalisers are constants, not counts (an image with fewer than 256
  anchors to sample still divides by 256), as in the paper.

  Args:
    objectness_logits: float [..., A], the RPN's cls output, logit of "object".
    box_deltas: float [..., A, 4], the RPN's reg output.
    labels: int [..., A] in {1, 0, -1} (rpn_targets.labels).
    box_targets: float [..., A, 4] (rpn_targets.box_targets).
    lam, cls_normalizer, reg_normalizer: eq. 1's lambda, N_cls, N_reg.
    beta: smooth L1's beta (1, the paper's eq. 3).

  Returns:
    (loss, parts): the loss averaged over the images (leading axes), a float32
    scalar; dict of float32 scalars "cls_loss", "reg_loss" (before lam, both
    per image) and "positives" (sampled positives per image).
  """
  labels = labels.astype(jnp.int32)
  images = max(1, labels.size // labels.shape[-1]) if labels.ndim else 1
  sampled = (labels >= 0).astype(jnp.float32)
  positive = (labels == 1).astype(jnp.float32)
  logits = objectness_logits.astype(jnp.float32)
  # Log loss: -log sigmoid(z) for objects, -log(1 - sigmoid(z)) = -log sigmoid(-z) else.
  log_loss = -jax.nn.log_sigmoid(jnp.where(labels == 1, logits, -logits))
  reg = smooth_l1(box_deltas.astype(jnp.float32) - box_targets, beta).sum(-1)
  cls_loss = (sampled * log_loss).sum() / (cls_normalizer * images)
  reg_loss = (positive * reg).sum() / (reg_normalizer * images)
  return cls_loss + lam * reg_loss, {"cls_loss": cls_loss, "reg_loss": reg_loss,
                                     "positives": positive.sum() / images}
