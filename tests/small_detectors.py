"""The small detectors the detector-model tests share (test_detection_models.py,
test_detection_training.py): the "small" backbone (stride 8, 4x4 RoI grid) on
64 x 64 images, 3 object classes, each model initialised (compiled) once per
session, whichever test file asks first."""

import functools

import jax
import jax.numpy as jnp

from research.models import detection

K = 3                    # Object classes.
HW = 64                  # Image side; the small backbone's map is 8 x 8.
SMALL = dict(num_classes=K, backbone="small")
FASTER_SMALL = dict(SMALL, anchor_sizes=(16.0, 32.0, 64.0), min_size=4.0, pre_nms_train=256,
                    post_nms_train=64, pre_nms_test=256, post_nms_test=32)


def random_images(b=2, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, HW, HW, 3))


# Every small Fast R-CNN call: 2 images, 6 RoIs (one compilation per model variant).
ROIS = jnp.asarray([[0, 0, 64, 64], [8, 8, 40, 30], [50, 50, 60, 64], [3, 3, 3, 3], [0, 0, 9, 9],
                    [-8, 20, 30, 80]], jnp.float32)
ROI_INDEX = jnp.asarray([0, 1, 1, 0, 1, 0])


def small_fast_rcnn(roi_pool="max"):
  """(model, variables, jitted apply) of a small Fast R-CNN, initialised once per variant."""
  return _fast_rcnn(roi_pool)


@functools.cache
def _fast_rcnn(roi_pool):
  model = detection.FastRCNN(**SMALL, roi_pool=roi_pool)
  variables = jax.jit(model.init)(jax.random.key(1), random_images(), ROIS, ROI_INDEX)
  return model, variables, jax.jit(model.apply, static_argnames="train")


@functools.cache
def small_faster_rcnn():
  """(model, variables, its test-time (outputs, features) on random_images(1)), one compilation."""
  model = detection.FasterRCNN(**FASTER_SMALL)
  outputs, variables = jax.jit(model.init_with_output)(jax.random.key(2), random_images(1))
  return model, variables, outputs
