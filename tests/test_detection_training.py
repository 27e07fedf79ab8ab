"""Issue 16's detectors trained for a few steps on one synthetic image: Fast R-CNN's
multi-task loss and Faster R-CNN's approximate joint training (RPN + head, no
gradient through the proposals) go down, on small_detectors.py's small models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.ops import detection_losses, detection_targets
from tests.small_detectors import HW, random_images, small_fast_rcnn, small_faster_rcnn

GT_BOXES = np.asarray([[[8, 8, 40, 32], [30, 36, 60, 60]]], np.float32)  # [1, G, 4]
GT_CLASSES = np.asarray([[0, 2]], np.int32)
GT_MASK = np.ones((1, 2), bool)


def _sampler(key, num_rois=16):
  """sample_rois over a batch of one image with the fixed ground truth (same RoIs each step)."""
  def sample(proposals, mask):
    t = jax.vmap(functools.partial(detection_targets.sample_rois, num_rois=num_rois,
                                   background_iou=(0.0, 0.5)))(
        key[None], proposals, mask, GT_BOXES, GT_CLASSES, GT_MASK)
    return t.rois, t.valid, t
  return sample


def _train(loss_fn, params, steps=6, lr=1e-3):
  """Adam on the sum of loss_fn's parts (a float [P]); (total per step, the first step's
  gradient of each part, leading axis P)."""
  opt = optax.adam(lr)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    parts, jac = loss_fn(params), jax.jacrev(loss_fn)(params)
    grads = jax.tree.map(lambda g: g.sum(0), jac)
    updates, state = opt.update(grads, state)
    return optax.apply_updates(params, updates), state, parts.sum(), jac
  losses, first = [], None
  for _ in range(steps):
    params, state, loss, jac = step(params, state)
    losses.append(float(loss))
    first = jac if first is None else first
  return losses, first


def test_fast_rcnn_training_steps_lower_its_loss():
  model, variables, _ = small_fast_rcnn()
  rng = np.random.default_rng(6)
  gt = GT_BOXES[0]
  jitter = (rng.uniform(-0.3, 0.3, (24, 4))
            * np.tile(gt[:, 2:] - gt[:, :2], 2)[rng.integers(0, 2, 24)])
  proposals = (gt[rng.integers(0, 2, 24)] + jitter).clip(0, HW).astype(np.float32)[None]
  rois, valid, targets = _sampler(jax.random.key(7))(jnp.asarray(proposals),
                                                     jnp.ones((1, 24), bool))
  image = random_images(1, seed=8)

  def loss_fn(params):
    out, _ = model.apply({"params": params}, image, rois[0], jnp.zeros(16, jnp.int32), train=True,
                         rngs={"dropout": jax.random.key(9)})
    return detection_losses.fast_rcnn_loss(out["class_logits"], out["box_deltas"],
                                           targets.labels[0], targets.box_targets[0],
                                           valid[0])[0][None]
  losses, _ = _train(loss_fn, variables["params"])
  assert losses[-1] < 0.9 * losses[0], losses


def test_faster_rcnn_joint_training_lowers_its_loss_without_gradient_through_proposals():
  model, variables, _ = small_faster_rcnn()
  image = random_images(1, seed=10)
  anchors = model.anchors((8, 8))
  rpn_t = jax.vmap(detection_targets.rpn_targets, in_axes=(0, None, 0, 0, None))(
      jax.random.key(11)[None], anchors, GT_BOXES, GT_MASK, (HW, HW))

  def losses(params):
    out, _ = model.apply({"params": params}, image, train=True,
                         sample_rois=_sampler(jax.random.key(12)),
                         rngs={"dropout": jax.random.key(13)})
    t = out["roi_targets"]
    rpn = detection_losses.rpn_loss(out["rpn_logits"], out["rpn_deltas"], rpn_t.labels,
                                    rpn_t.box_targets)[0]
    head = detection_losses.fast_rcnn_loss(out["class_logits"], out["box_deltas"], t.labels,
                                           t.box_targets, t.valid)[0]
    return jnp.stack([rpn, head])

  history, grads = _train(losses, variables["params"], steps=5)
  assert history[-1] < 0.9 * history[0], history
  # Approximate joint training (§3.2): the head's loss reaches the RPN only through the
  # proposal coordinates, which carry no gradient; it does reach the shared convs.
  assert all(not np.asarray(g[1]).any() for g in jax.tree.leaves(grads["rpn"]))
  assert all(np.asarray(g[0]).any() for g in jax.tree.leaves(grads["rpn"]))
  assert any(np.asarray(g[1]).any() for g in jax.tree.leaves(grads["convs"]))
