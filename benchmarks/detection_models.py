"""Time of the CPU-scale detectors (issue 16): test-time forward, proposal layer, training step.

  python -m benchmarks.detection_models [--repeats=10]

The "small" backbone on 128 x 128 scenes (the detection_scenes size), 20
classes, random weights (time does not depend on their values): Faster
R-CNN's test-time pass (convs, RPN, proposal layer at 300 proposals, head,
detections) per image, the proposal layer alone, Fast R-CNN's head on 300
RoIs with and without truncated SVD (ranks 64, 64), and one joint training
step of Faster R-CNN (2 images, 64 RoIs each, Adam). Median of `repeats`
timed calls after a compiling one.
"""

import functools
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.models import detection, detection_postprocess as post
from research.ops import detection_losses, detection_targets

_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per measurement.")
HW, K = 128, 20


def _median_ms(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def main(_):
  images = jax.random.normal(jax.random.key(0), (2, HW, HW, 3))
  model = detection.MODELS["faster_rcnn_small"](num_classes=K)
  variables = jax.jit(model.init)(jax.random.key(1), images[:1])
  hw = jnp.asarray([[HW, HW]], jnp.float32)

  @jax.jit
  def test_pass(variables, image):
    out, _ = model.apply(variables, image)
    return post.detect_batch(out["class_logits"], out["box_deltas"], out["rois"], hw,
                             out["roi_mask"])
  print(f"Faster R-CNN test pass, 1 image: {_median_ms(test_pass, variables, images[:1]):.1f} ms")

  out, _ = jax.jit(model.apply)(variables, images[:1])
  propose = jax.jit(functools.partial(post.propose, pre_nms_top_n=6000, post_nms_top_n=300))
  ms = _median_ms(propose, out["rpn_logits"][0], out["rpn_deltas"][0], out["anchors"], hw[0])
  print(f"  of which the proposal layer ({out['anchors'].shape[0]} anchors -> 300): {ms:.1f} ms")

  rois = out["proposals"][0]
  for ranks in ((), (64, 64)):
    fast = detection.FastRCNN(num_classes=K, backbone="small", svd_ranks=ranks)
    params = variables["params"] if not ranks else detection.truncate_head(variables["params"], ranks)
    params = {k: params[k] for k in ("convs", "head")}
    head = jax.jit(lambda p, fmap: fast.apply({"params": p}, fmap, rois[None],
                                              method=fast.roi_outputs))
    fmap = jax.jit(lambda p, x: fast.apply({"params": p}, x, method=fast.feature_map))(params,
                                                                                       images[:1])
    print(f"Fast R-CNN head on 300 RoIs, svd_ranks={ranks}: {_median_ms(head, params, fmap):.2f} ms")

  gt = jnp.asarray([[[8, 8, 60, 50], [70, 64, 120, 120]]] * 2, jnp.float32)
  gt_classes, gt_mask = jnp.asarray([[0, 5]] * 2), jnp.ones((2, 2), bool)
  anchors = model.anchors((HW // 8, HW // 8))
  rpn_t = jax.vmap(detection_targets.rpn_targets, in_axes=(0, None, 0, 0, None))(
      jax.random.split(jax.random.key(2), 2), anchors, gt, gt_mask, (HW, HW))

  def sample(proposals, mask):
    t = jax.vmap(functools.partial(detection_targets.sample_rois, num_rois=64,
                                   background_iou=(0.0, 0.5)))(
        jax.random.split(jax.random.key(3), 2), proposals, mask, gt, gt_classes, gt_mask)
    return t.rois, t.valid, t

  def loss(params):
    o, _ = model.apply({"params": params}, images, train=True, sample_rois=sample,
                       rngs={"dropout": jax.random.key(4)})
    t = o["roi_targets"]
    return (detection_losses.rpn_loss(o["rpn_logits"], o["rpn_deltas"], rpn_t.labels,
                                      rpn_t.box_targets)[0]
            + detection_losses.fast_rcnn_loss(o["class_logits"], o["box_deltas"], t.labels,
                                              t.box_targets, t.valid)[0])
  opt = optax.adam(1e-4)

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state)
    return optax.apply_updates(params, updates), state
  params = variables["params"]
  ms = _median_ms(step, params, opt.init(params))
  print(f"Faster R-CNN joint training step, 2 images: {ms:.1f} ms")


if __name__ == "__main__":
  app.run(main)
