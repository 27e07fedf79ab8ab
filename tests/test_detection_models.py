"""Issue 16's detector models: Fast R-CNN, Faster R-CNN (RPN + proposal layer), test-time
detections and truncated SVD, against explicit references (R-CNN's warped regions:
test_rcnn_regions.py; a few training steps of each: test_detection_training.py; the
small models both use: small_detectors.py).

CPU scale and shared shapes: the "small" backbone (stride 8, 4x4 RoI grid) on
64 x 64 images, 3 object classes. VGG-16 at full scale is only traced (its
summary: parameter counts), never run.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models import detection, detection_postprocess as post, summary, vgg
from research.ops import anchors as anchor_ops
from research.ops import boxes as box_ops
from research.train import transfer
from tests.small_detectors import (FASTER_SMALL, HW, K, ROI_INDEX, ROIS, SMALL, random_images,
                                    small_fast_rcnn, small_faster_rcnn)
from tests.test_detection_ops import _loop_nms


def _dense(x, p):
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def _head_reference(pooled, head):
  """The fc head applied to explicitly pooled features [R, PH, PW, C] (NumPy)."""
  x = pooled.reshape(len(pooled), -1)
  for name in ("fc6", "fc7"):
    x = np.maximum(_dense(x, head[name]), 0)
  return _dense(x, head["cls_score"]), _dense(x, head["bbox_pred"]).reshape(len(x), K + 1, 4)


def test_fast_rcnn_shapes_and_bad_names():
  _, variables, apply = small_fast_rcnn()
  outputs, features = apply(variables, random_images(), ROIS, ROI_INDEX)
  # The same RoIs as [B, R, 4] (R per image, no batch index): the same outputs.
  per_image = jnp.stack([ROIS[ROI_INDEX == 0], ROIS[ROI_INDEX == 1]])
  batched, _ = apply(variables, random_images(), per_image)
  assert batched["class_logits"].shape == (2, 3, K + 1)
  for b in range(2):
    np.testing.assert_allclose(batched["box_deltas"][b], outputs["box_deltas"][ROI_INDEX == b],
                               rtol=1e-5, atol=1e-7)
  assert outputs["class_logits"].shape == (6, K + 1)
  assert outputs["box_deltas"].shape == (6, K + 1, 4)
  assert features["conv4_2"].shape == (2, 8, 8, 128)   # Stride 8, no pool after stage 4.
  assert features["roi_pool"].shape == (6, 4, 4, 128)
  assert features["fc7"].shape == (6, 256)
  with pytest.raises(ValueError, match="Unknown detection backbone 'vgg17'"):
    detection.FastRCNN(backbone="vgg17").init(jax.random.key(0), random_images(1))
  with pytest.raises(ValueError, match="Unknown roi_pool 'avg'"):
    detection.FastRCNN(**SMALL, roi_pool="avg").init(jax.random.key(0), random_images(1))
  with pytest.raises(ValueError, match="smaller than the small backbone's stride 8"):
    detection.FastRCNN(**SMALL).init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize("roi_pool", ["max", "align"])
def test_roi_head_matches_an_explicit_crop_and_pool(roi_pool):
  _, variables, apply = small_fast_rcnn(roi_pool)
  images = random_images()
  if roi_pool == "max":
    # RoI max pooling rounds a box to feature cells with an inclusive end cell
    # (Fast R-CNN's Caffe layer): [0, 0, 56, 56] at stride 8 is cells 0..7, the whole
    # 8 x 8 map, so each of the 4 x 4 bins is a 2 x 2 block; [8, 16, 32, 40] is rows 1..4,
    # columns 2..5, one cell per bin.
    rois = jnp.asarray([[0, 0, 56, 56], [8, 16, 32, 40]], jnp.float32)
    crops = [(0, 0, 8, 8), (1, 2, 5, 6)]
    reduce = np.max
  else:
    # RoI align (aligned): the full image [0, 0, 64, 64] samples 2 x 2 points per bin at
    # cell centres, so each bin averages a 2 x 2 block of cells (a smaller RoI's 4 x 4 grid
    # would interpolate between cells).
    rois = jnp.asarray([[0, 0, 64, 64], [0, 0, 64, 64]], jnp.float32)
    crops = [(0, 0, 8, 8), (0, 0, 8, 8)]
    reduce = np.mean
  rois = jnp.concatenate([rois, ROIS[2:]])  # The shared shape: 4 more RoIs, not checked.
  outputs, features = apply(variables, images, rois, jnp.asarray([0, 1, 0, 0, 0, 0]))
  fmap = np.asarray(features["conv4_2"], np.float64)
  pooled = []
  for b, (y0, x0, y1, x1) in zip([0, 1], crops):
    crop = fmap[b, y0:y1, x0:x1]
    s = crop.shape[0] // 4
    pooled.append(reduce(crop.reshape(4, s, 4, s, -1), axis=(1, 3)))
  pooled = np.stack(pooled)
  np.testing.assert_allclose(features["roi_pool"][:2], pooled, rtol=1e-5, atol=1e-5)
  logits, deltas = _head_reference(pooled, variables["params"]["head"])
  np.testing.assert_allclose(outputs["class_logits"][:2], logits, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(outputs["box_deltas"][:2], deltas, rtol=1e-4, atol=1e-6)


def test_rpn_outputs_follow_grid_anchors_order():
  _, variables, (outputs, features) = small_faster_rcnn()
  a = 9
  assert outputs["rpn_logits"].shape == (1, 8 * 8 * a)
  assert outputs["rpn_deltas"].shape == (1, 8 * 8 * a, 4)
  np.testing.assert_array_equal(outputs["anchors"], anchor_ops.grid_anchors(
      (8, 8), 8, FASTER_SMALL["anchor_sizes"], anchor_ops.FASTER_RCNN_RATIOS))
  # The RPN's maps computed here from its parameters, read position by position.
  rpn = variables["params"]["rpn"]
  conv = lambda x, p: jax.lax.conv_general_dilated(
      x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision="highest") + p["bias"]
  hidden = jax.nn.relu(conv(features["conv4_2"], rpn["conv"]))
  cls_map, box_map = np.asarray(conv(hidden, rpn["cls_score"])), np.asarray(
      conv(hidden, rpn["bbox_pred"]))
  shapes = anchor_ops.anchor_shapes(FASTER_SMALL["anchor_sizes"], anchor_ops.FASTER_RCNN_RATIOS)
  logits, deltas = np.asarray(outputs["rpn_logits"][0]), np.asarray(outputs["rpn_deltas"][0])
  anchors = np.asarray(outputs["anchors"])
  for i in range(8):
    for j in range(8):
      for k in range(a):
        n = (i * 8 + j) * a + k
        assert logits[n] == pytest.approx(cls_map[0, i, j, k], rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(deltas[n], box_map[0, i, j, 4 * k:4 * k + 4], rtol=1e-4,
                                   atol=1e-6)
        centre = (anchors[n, :2] + anchors[n, 2:]) / 2
        np.testing.assert_allclose(centre, [(i + 0.5) * 8, (j + 0.5) * 8])
        np.testing.assert_allclose(anchors[n, 2:] - anchors[n, :2], shapes[k], rtol=1e-6)
  # Test time: the head ran on the 32 proposals; detections in detection_metrics' format.
  assert outputs["rois"].shape == (1, 32, 4) and outputs["class_logits"].shape == (1, 32, K + 1)
  np.testing.assert_array_equal(outputs["rois"], outputs["proposals"])
  dets = post.to_host(post.detect_batch(outputs["class_logits"], outputs["box_deltas"],
                                        outputs["rois"], [[HW, HW]], outputs["roi_mask"]))
  assert len(dets) == 1 and dets[0]["boxes"].shape[1] == 4
  assert len(dets[0]["boxes"]) == len(dets[0]["scores"]) == len(dets[0]["labels"]) > 0


def _loop_propose(logits, deltas, anchors, hw, pre, post_n, iou, min_size):
  boxes = []
  for d, p in zip(deltas.astype(np.float64), anchors.astype(np.float64)):
    ph, pw = p[2] - p[0], p[3] - p[1]
    cy, cx = p[0] + ph / 2 + ph * d[0], p[1] + pw / 2 + pw * d[1]
    h = ph * math.exp(min(d[2], box_ops.MAX_LOG_SCALE))
    w = pw * math.exp(min(d[3], box_ops.MAX_LOG_SCALE))
    b = [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]
    boxes.append([min(max(v, 0.0), lim) for v, lim in zip(b, [hw[0], hw[1]] * 2)])
  boxes = np.asarray(boxes)
  big = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
  order = [i for i in np.argsort(-logits, kind="stable") if big[i]][:pre]
  keep = _loop_nms(boxes[order], logits[order], iou, post_n)
  chosen = [order[i] for i in keep]
  return boxes[chosen], 1 / (1 + np.exp(-logits[chosen].astype(np.float64)))


@pytest.mark.parametrize("pre,post_n", [(50, 30), (500, 200)])
def test_proposal_layer_matches_a_numpy_loop(pre, post_n):
  rng = np.random.default_rng(pre)
  anchors = np.asarray(anchor_ops.grid_anchors((4, 5), 8, sizes=(8.0, 16.0)))  # [120, 4]
  logits = rng.normal(size=len(anchors)).astype(np.float32)
  deltas = rng.normal(0, 0.6, (len(anchors), 4)).astype(np.float32)
  deltas[::7, 2:] = -3.0  # Shrunk under min_size: dropped.
  hw = np.asarray([32.0, 40.0], np.float32)
  propose = jax.jit(functools.partial(post.propose, pre_nms_top_n=pre, post_nms_top_n=post_n,
                                      nms_iou=0.7, min_size=4.0))
  boxes, scores, mask = propose(logits, deltas, anchors, hw)
  want_boxes, want_scores = _loop_propose(logits, deltas, anchors, hw, pre, post_n, 0.7, 4.0)
  n = int(mask.sum())
  assert n == len(want_boxes) > 0 and bool(mask[:n].all())
  np.testing.assert_allclose(boxes[:n], want_boxes, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(scores[:n], want_scores, rtol=1e-5)
  assert not np.asarray(boxes[n:]).any() and not np.asarray(scores[n:]).any()
  if post_n == 200:
    assert n < post_n  # NMS left fewer than the cap: padding is masked.


def test_detect_makes_exactly_the_hand_computed_detections():
  # RoIs: A and B overlap (IoU 0.68), C crosses the 32 x 32 image's border, D is background.
  rois = jnp.asarray([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 40, 40], [0, 20, 8, 28]],
                     jnp.float32)
  logits = jnp.asarray([[0, 5, 0, 0], [0, 4, 0, 0], [0, 0, 0, 6], [6, 0, 0, 0]], jnp.float32)
  deltas = jnp.zeros((4, K + 1, 4)).at[0, 1].set([1.0, 0, 0, 0])  # A, class 1: 0.1 h down.
  dets = jax.jit(functools.partial(post.detect, max_detections=5))(
      logits, deltas, rois, jnp.asarray([32.0, 32.0]))
  p = lambda big: math.exp(big) / (math.exp(big) + 3)  # Every other probability is < 0.05.
  assert np.asarray(dets["mask"]).tolist() == [True, True, False, False, False]
  np.testing.assert_allclose(dets["boxes"][:2], [[20, 20, 32, 32], [1, 0, 11, 10]], atol=1e-5)
  np.testing.assert_allclose(dets["scores"][:2], [p(6), p(5)], rtol=1e-6)
  assert np.asarray(dets["labels"][:2]).tolist() == [2, 0]  # 0-based object classes.
  host = post.to_host(jax.tree.map(lambda x: x[None], dets))
  assert len(host) == 1 and host[0]["boxes"].shape == (2, 4) and host[0]["labels"].dtype == np.int32


def test_a_head_whose_logits_are_set_detects_the_expected_boxes():
  # cls_score's kernel zeroed and its bias set: every RoI gets the same logits, so after
  # per-class NMS the first of each overlapping group remains, boxes = RoIs (no deltas).
  _, variables, apply = small_fast_rcnn()
  params = jax.tree.map(lambda x: x, variables["params"])
  params["head"]["cls_score"] = {"kernel": jnp.zeros_like(params["head"]["cls_score"]["kernel"]),
                                 "bias": jnp.asarray([0.0, 0.0, 5.0, 0.0])}
  params["head"]["bbox_pred"] = jax.tree.map(jnp.zeros_like, params["head"]["bbox_pred"])
  # Three pairs of overlapping RoIs, all in image 0.
  rois = jnp.asarray([[4, 4, 30, 30], [5, 5, 31, 31], [40, 40, 60, 60], [41, 40, 60, 61],
                      [0, 40, 20, 60], [2, 41, 21, 61]], jnp.float32)
  outputs, _ = apply({"params": params}, random_images(), rois, jnp.zeros(6, jnp.int32))
  dets = post.to_host(post.detect_batch(outputs["class_logits"][None], outputs["box_deltas"][None],
                                        rois[None], jnp.asarray([[64.0, 64.0]])))[0]
  np.testing.assert_allclose(dets["boxes"], rois[jnp.asarray([0, 2, 4])])
  assert dets["labels"].tolist() == [1, 1, 1]
  np.testing.assert_allclose(dets["scores"], math.exp(5) / (math.exp(5) + 3), rtol=1e-6)


def test_truncated_svd_head_keeps_the_detections_at_high_rank():
  model, variables, apply = small_fast_rcnn()
  rng = np.random.default_rng(3)
  params = jax.tree.map(lambda x: x, variables["params"])
  for name, fan_in in (("fc6", 4 * 4 * 128), ("fc7", 256)):
    # Trained fc layers have fast-decaying spectra (the paper's premise); here rank 24 plus noise.
    low = rng.normal(0, 1, (fan_in, 24)) @ rng.normal(0, 1 / math.sqrt(fan_in), (24, 256))
    params["head"][name]["kernel"] = jnp.asarray(low + rng.normal(0, 1e-4, low.shape), jnp.float32)
  for name in ("cls_score", "bbox_pred"):  # Distinct scores and boxes.
    params["head"][name]["kernel"] = params["head"][name]["kernel"] * 300.0
  rois = jnp.asarray(rng.uniform(0, 32, (6, 2)), jnp.float32)
  rois = jnp.concatenate([rois, rois + jnp.asarray(rng.uniform(8, 32, (6, 2)), jnp.float32)], 1)
  images = random_images()

  def detections(model, params):
    run = apply if model is small_fast_rcnn()[0] else jax.jit(model.apply)
    out, _ = run({"params": params}, images, rois, ROI_INDEX)
    return out, jax.vmap(post.detect, in_axes=(0, 0, 0, None))(
        out["class_logits"][:, None], out["box_deltas"][:, None], rois[:, None],
        jnp.asarray([64.0, 64.0]))

  base_out, base = detections(model, params)
  assert int(base["mask"].sum()) > 4
  for ranks, close in (((24, 24), True), ((3, 3), False)):
    svd_model = detection.FastRCNN(**SMALL, svd_ranks=ranks)
    compressed = detection.truncate_head(params, ranks)
    assert compressed["head"]["fc6"]["first"]["kernel"].shape == (2048, ranks[0])
    assert compressed["head"]["fc7"]["second"]["kernel"].shape == (ranks[1], 256)
    out, dets = detections(svd_model, compressed)
    error = float(jnp.abs(out["class_logits"] - base_out["class_logits"]).max())
    if close:
      np.testing.assert_array_equal(dets["mask"], base["mask"])
      np.testing.assert_array_equal(dets["labels"], base["labels"])
      np.testing.assert_allclose(dets["scores"], base["scores"], atol=1e-3)
      np.testing.assert_allclose(dets["boxes"], base["boxes"], atol=0.1)  # Pixels.
    else:
      assert error > 0.1, error  # The option is used: rank 3 changes the outputs.
  with pytest.raises(ValueError, match="one rank per layer"):
    detection.truncate_head(params, (8,))


def test_vgg16_detectors_parameter_counts_at_full_scale():
  table = summary.summarize(detection.FasterRCNN(backbone="vgg16"), (224, 224, 3), train=False)
  params = {row.path: row.params for row in table.rows}
  assert params["head/fc6"] == 25088 * 4096 + 4096         # 7 x 7 x 512 RoI grid.
  assert params["head/fc7"] == 4096 * 4096 + 4096
  assert params["head/cls_score"] == 4096 * 21 + 21        # VOC: 20 classes + background.
  assert params["head/bbox_pred"] == 4096 * 84 + 84        # 4 deltas per class.
  assert params["rpn/conv"] == 3 * 3 * 512 * 512 + 512     # §3.1's 512-d 3x3 conv.
  assert params["rpn/cls_score"] == 512 * 9 + 9            # k = 9 anchors, one logit each.
  assert params["rpn/bbox_pred"] == 512 * 36 + 36
  convs = sum(v for k, v in params.items() if k.startswith("convs/"))
  assert convs == 14_714_688                               # VGG-16's 13 conv layers.
  shapes = {row.path: row.output_shape for row in table.rows}
  assert shapes["convs/conv5_3"] == (14, 14, 512)
  assert shapes["head/roi_pool"] == (300, 7, 7, 512)       # The 300 test-time proposals.
  assert table.total_params == 137_073_622


def test_detectors_take_a_classifiers_parameters_by_name():
  # VGG-16's (traced only): every conv and fc6 / fc7 has the detector's shape.
  shapes = lambda tree: jax.tree.map(lambda x: x.shape, tree)
  classifier = jax.eval_shape(functools.partial(vgg.MODELS["vgg16"]().init, train=False),
                              jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
  detector = jax.eval_shape(detection.FastRCNN().init, jax.random.key(0),
                            jnp.zeros((1, 224, 224, 3)))["params"]
  mapped = detection.from_classifier(classifier)
  assert shapes(mapped["convs"]) == shapes(detector["convs"])
  assert shapes(mapped["head"]) == {k: shapes(detector["head"][k]) for k in ("fc6", "fc7")}
  # The small backbone's convs from a VGG-A classifier at its widths, copied by path.
  small = vgg.VGG(config="A", widths=(16, 32, 64, 128, 128), fc_width=256, num_classes=10)
  source = jax.jit(functools.partial(small.init, train=False))(
      jax.random.key(3), jnp.zeros((1, 32, 32, 3)))["params"]
  _, variables, _ = small_fast_rcnn()
  params, copied = transfer.copy_matching(variables["params"], detection.from_classifier(source),
                                          "^convs/")
  assert len(copied) == 12  # conv1_1, conv2_1, conv3_1-2, conv4_1-2: kernels and biases.
  np.testing.assert_array_equal(params["convs"]["conv4_2"]["kernel"],
                                source["conv4_2"]["kernel"])
