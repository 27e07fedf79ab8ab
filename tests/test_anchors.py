"""research/ops/anchors.py (issue 16): the Faster R-CNN anchor grid in the RPN head's
order against a loop, and the check that a config's anchors can cover its images and
objects (Ren et al. 2015, §3.1.1)."""

import math

import numpy as np
import pytest

from research import errors
from research.ops import anchors

def test_grid_anchors_match_a_loop_in_the_heads_order():
  sizes, ratios, stride = (8.0, 16.0), (0.5, 1.0, 2.0), 4
  got = np.asarray(anchors.grid_anchors((3, 2), stride, sizes, ratios))
  expected = []
  for i in range(3):
    for j in range(2):
      for r in ratios:
        for s in sizes:
          hh, ww = s * math.sqrt(r), s / math.sqrt(r)
          cy, cx = (i + 0.5) * stride, (j + 0.5) * stride
          expected.append([cy - hh / 2, cx - ww / 2, cy + hh / 2, cx + ww / 2])
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
  shapes = anchors.anchor_shapes(sizes, ratios)
  np.testing.assert_allclose(shapes[:, 0] * shapes[:, 1], [64, 256] * 3, rtol=1e-5)
  np.testing.assert_allclose(shapes[:, 0] / shapes[:, 1], np.repeat(ratios, 2), rtol=1e-5)


def test_validate_anchors_accepts_the_papers_setting():
  # VGG16 on a 600 x 1000 image: conv5_3 is 37 x 62 (600/16 = 37.5, rounded down).
  anchors.validate_anchors((600, 1000), (37, 62), 16, anchors.FASTER_RCNN_SIZES,
                           anchors.FASTER_RCNN_RATIOS, object_sizes=(91, 724))
  assert anchors.best_centred_iou(512 * math.sqrt(2), (128, 256, 512), (1.0,)) == \
      pytest.approx(0.5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(stride=8), r"config\.model\.anchors\.stride=8: a feature map 37 cells height at "
                     r"stride 8 spans 296 pixels, but the image is 600"),
    (dict(stride=16.0), r"stride=16\.0: must be a positive int"),
    (dict(image_hw=(96, 96), feature_hw=(6, 6)), r"anchors\.sizes=.*no anchor fits inside "
                                                  r"the 96x96 image"),
    (dict(object_sizes=(30, 400)), r"an object of 30 pixels .* add a smaller size"),
    (dict(sizes=(128, 512), object_sizes=(128, 512)), r"an object of .* add an intermediate"),
    (dict(object_sizes=(100, 900)), r"add a larger size"),
    (dict(sizes=()), r"sizes=\(\): needs one or more positive"),
    (dict(aspect_ratios=(1.0, -2.0)), r"aspect_ratios=\(1\.0, -2\.0\): needs"),
])
def test_validate_anchors_refuses_configs_that_cannot_cover_the_image(kwargs, message):
  args = dict(image_hw=(600, 1000), feature_hw=(37, 62), stride=16,
              sizes=anchors.FASTER_RCNN_SIZES, aspect_ratios=anchors.FASTER_RCNN_RATIOS)
  args.update(kwargs)
  with pytest.raises(errors.ConfigError, match=message) as e:
    anchors.validate_anchors(**args)
  assert "\n" not in str(e.value)
