"""Issue 16's training targets, losses, SVMs and truncated SVD against loop references.

RPN anchor labels and sampling, Fast R-CNN's RoI mini-batches and R-CNN's
three training sets on random boxes (ground truth padded with a mask, an
image with none), at the thresholds, and the papers' losses; the SVM's hard
negative mining on a separable toy set (selective search: test_selective_search.py).
Shapes are tiny and shared, so each jitted function compiles once
or twice.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.ops import anchors as anchor_ops
from research.ops import boxes as box_ops
from research.ops import detection_losses, detection_targets, rcnn_targets, svd
from research.train import svm
from tests.test_detection_ops import _loop_encode, _loop_iou

IMAGE_HW = (32.0, 40.0)
ANCHORS = np.asarray(anchor_ops.grid_anchors((4, 5), 8, sizes=(8.0, 16.0),
                                             aspect_ratios=(0.5, 1.0, 2.0)))  # [120, 4]
G = 4            # Ground truth padded to 4 boxes per image.
P = 40           # Proposals per image.
NUM_CLASSES = 3
RPN_BATCH = 16   # Anchors per image (the paper's 256, scaled down).
NUM_ROIS = 16    # RoIs per image (the paper's 64).
RAW = detection_targets.RAW


def _images(seed=0):
  """Three images' padded ground truth: 3, 1 and 0 objects (the last has none)."""
  rng = np.random.default_rng(seed)
  boxes = np.zeros((3, G, 4), np.float32)
  classes = np.zeros((3, G), np.int32)
  mask = np.zeros((3, G), bool)
  for i, n in enumerate((3, 1, 0)):
    size = rng.uniform(6, 18, (n, 2))
    corner = rng.uniform(0, 1, (n, 2)) * (np.asarray(IMAGE_HW) - size)
    boxes[i, :n] = np.concatenate([corner, corner + size], 1)
    classes[i, :n] = rng.integers(0, NUM_CLASSES, n)
    mask[i, :n] = True
  boxes[~mask] = rng.uniform(0, 30, (int((~mask).sum()), 4))  # Padding holds junk: never read.
  return boxes, classes, mask


def _proposals(gt, rng):
  """P proposals: jittered copies of the ground truth (foreground and grey zone) and random ones."""
  out = []
  for _ in range(P):
    if len(gt) and rng.uniform() < 0.5:
      g = gt[rng.integers(len(gt))]
      h, w = g[2] - g[0], g[3] - g[1]
      jitter = rng.choice([0.1, 0.5])  # Mostly foreground, or mostly the grey zone.
      out.append(g + rng.uniform(-jitter, jitter, 4) * [h, w, h, w])
    else:
      corner = rng.uniform(0, 30, 2)
      out.append(np.concatenate([corner, corner + rng.uniform(3, 20, 2)]))
  return np.asarray(out, np.float32)


def _loop_rpn_labels(gt, hw, positive_iou=0.7, negative_iou=0.3):
  """Faster R-CNN §3.1.2's rules, before sampling: 1, 0, -1 per anchor."""
  inside = [a[0] >= 0 and a[1] >= 0 and a[2] <= hw[0] and a[3] <= hw[1] for a in ANCHORS]
  iou = _loop_iou(ANCHORS, gt) if len(gt) else np.zeros((len(ANCHORS), 0))
  labels = np.full(len(ANCHORS), -1)
  for i in range(len(ANCHORS)):
    best = iou[i].max() if len(gt) else 0.0
    if inside[i] and best < negative_iou:
      labels[i] = 0
    if inside[i] and best > positive_iou:
      labels[i] = 1
  for j in range(len(gt)):
    top = max(iou[i, j] for i in range(len(ANCHORS)) if inside[i])
    for i in range(len(ANCHORS)):
      if inside[i] and top > 0 and iou[i, j] == top:
        labels[i] = 1
  return labels, iou


def _rpn_batch(key, gt_boxes, gt_mask):
  keys = jax.random.split(key, gt_boxes.shape[0])
  one = lambda k, b, m: detection_targets.rpn_targets(k, ANCHORS, b, m, IMAGE_HW,
                                                       batch_size=RPN_BATCH)
  return jax.vmap(one)(keys, gt_boxes, gt_mask)


def test_rpn_targets_label_sample_and_encode_like_a_loop():
  boxes, _, mask = _images()
  outs = [_rpn_batch(jax.random.key(seed), boxes, mask) for seed in (0, 1)]
  assert (np.asarray(outs[0].labels) != np.asarray(outs[1].labels)).any()  # Another key, another sample.
  for out in outs:
    for i in range(3):
      gt = boxes[i][mask[i]]
      rule, iou = _loop_rpn_labels(gt, IMAGE_HW)
      labels = np.asarray(out.labels[i])
      # Sampled positives are positives of the rule, negatives negatives.
      assert set(np.flatnonzero(labels == 1)) <= set(np.flatnonzero(rule == 1))
      assert set(np.flatnonzero(labels == 0)) <= set(np.flatnonzero(rule == 0))
      n_pos = min((rule == 1).sum(), RPN_BATCH // 2)
      assert (labels == 1).sum() == n_pos
      assert (labels == 0).sum() == min((rule == 0).sum(), RPN_BATCH - n_pos)
      for a in np.flatnonzero(labels == 1):
        g = gt[np.argmax(iou[a])]
        np.testing.assert_allclose(out.box_targets[i, a], _loop_encode(g, ANCHORS[a], *RAW),
                                   rtol=1e-4, atol=1e-4)
      assert not np.asarray(out.box_targets[i][labels != 1]).any()
    # The image without objects: only negatives, a full mini-batch of them.
    assert (np.asarray(out.labels[2]) == 1).sum() == 0
    assert (np.asarray(out.labels[2]) == 0).sum() == RPN_BATCH


def test_rpn_labels_at_the_thresholds_and_across_the_border():
  anchors = np.asarray([
      [0, 0, 10, 10], [0, 0, 10, 10],  # 0, 1: tied best anchors of box 0 (IoU 0.7): positive.
      [-2, 20, 8, 30],                 # 2: IoU 0.8 with box 3, but crosses the top border: ignored.
      [20, 20, 30, 30],                # 3: IoU exactly 0.7 with box 1, not its best: ignored.
      [20, 0, 30, 10],                 # 4: IoU exactly 0.3 with box 2: not < 0.3, ignored.
      [20, 20, 30, 27], [20, 0, 30, 3],  # 5, 6: boxes 1 and 2 exactly: positive.
      [0, 30, 10, 40]], np.float32)    # 7: IoU 0 with every real box (the padding is masked).
  gt = np.asarray([[0, 0, 10, 7], [20, 20, 30, 27], [20, 0, 30, 3], [0, 20, 8, 30],
                   [0, 30, 10, 40]], np.float32)
  iou = np.asarray(box_ops.pairwise_iou(anchors, gt))
  assert iou[0, 0] == iou[3, 1] == np.float32(0.7) and iou[4, 2] == np.float32(0.3)
  out = detection_targets.rpn_targets(jax.random.key(0), anchors, gt,
                                      np.asarray([True] * 4 + [False]), (32, 40), batch_size=8)
  assert np.asarray(out.labels).tolist() == [1, 1, -1, -1, -1, 1, 1, 0]
  assert np.asarray(out.inside).tolist() == [True] * 2 + [False] + [True] * 5
  # Box 3 overlaps no anchor inside the image: it makes no positive (not every anchor at IoU 0).


def test_sample_mask_is_uniform_and_counts_exactly():
  candidates = jnp.asarray(np.arange(12) % 3 != 0)  # 8 candidates.
  keys = jax.random.split(jax.random.key(3), 4000)
  picked = np.asarray(jax.vmap(lambda k: detection_targets.sample_mask(k, candidates, 3))(keys))
  assert (picked.sum(1) == 3).all() and not picked[:, ~np.asarray(candidates)].any()
  np.testing.assert_allclose(picked[:, np.asarray(candidates)].mean(0), 3 / 8, atol=0.03)
  everything = detection_targets.sample_mask(keys[0], candidates, 20)
  np.testing.assert_array_equal(everything, candidates)


def _roi_batch(key, proposals, proposal_mask, boxes, classes, mask, background_iou=(0.1, 0.5)):
  keys = jax.random.split(key, boxes.shape[0])
  one = lambda k, p, pm, b, c, m: detection_targets.sample_rois(
      k, p, pm, b, c, m, num_rois=NUM_ROIS, background_iou=background_iou)
  return jax.vmap(one)(keys, proposals, proposal_mask, boxes, classes, mask)


def test_sample_rois_fractions_labels_and_targets_like_a_loop():
  boxes, classes, mask = _images(1)
  rng = np.random.default_rng(5)
  proposals = np.stack([_proposals(boxes[i][mask[i]], rng) for i in range(3)])
  proposal_mask = np.ones((3, P), bool)
  proposal_mask[:, -3:] = False  # Padding: never sampled.
  out = _roi_batch(jax.random.key(0), proposals, proposal_mask, boxes, classes, mask)
  quota = round(NUM_ROIS * 0.25)
  for i in range(3):
    gt, gt_classes = boxes[i][mask[i]], classes[i][mask[i]]
    regions = np.concatenate([proposals[i][proposal_mask[i]], gt])
    iou = _loop_iou(regions, gt) if len(gt) else np.zeros((len(regions), 1))
    best = iou.max(1)
    n_fg, n_bg = (best >= 0.5).sum(), ((best >= 0.1) & (best < 0.5)).sum()
    valid, labels = np.asarray(out.valid[i]), np.asarray(out.labels[i])
    assert (valid & (labels > 0)).sum() == min(n_fg, quota)
    assert (valid & (labels == 0)).sum() == min(n_bg, NUM_ROIS - min(n_fg, quota))
    picked = [np.flatnonzero(np.all(np.isclose(regions, r), 1))[0]
              for r in np.asarray(out.rois[i])[valid]]
    assert len(set(picked)) == len(picked)  # Without replacement.
    for r, j in zip(np.flatnonzero(valid), picked):
      if labels[r] > 0:
        g = np.argmax(iou[j])
        assert best[j] >= 0.5 and labels[r] == gt_classes[g] + 1
        np.testing.assert_allclose(out.box_targets[i, r], _loop_encode(
            gt[g], regions[j], box_ops.TARGET_MEANS, box_ops.TARGET_STDS), rtol=1e-4, atol=1e-3)
      else:
        assert 0.1 <= best[j] < 0.5 and not np.asarray(out.box_targets[i, r]).any()
    assert not np.asarray(out.rois[i][~valid]).any()
  # Image 1 has enough of both (9 foreground, 12 background candidates): a full mini-batch,
  # exactly 25% foreground. Image 0 has 17 and 11: foreground capped, one slot left empty.
  assert np.asarray(out.valid[1]).all() and (np.asarray(out.labels[1]) > 0).sum() == quota
  assert np.asarray(out.valid[0]).sum() == quota + 11
  # The image without objects: no RoI at the paper's [0.1, 0.5) background ...
  assert not np.asarray(out.valid[2]).any()
  # ... and only background at py-faster-rcnn's [0, 0.5).
  out0 = _roi_batch(jax.random.key(0), proposals, proposal_mask, boxes, classes, mask, (0.0, 0.5))
  assert np.asarray(out0.valid[2]).sum() == NUM_ROIS and not np.asarray(out0.labels[2]).any()


def test_sample_rois_with_fewer_candidates_than_slots_pads_and_refuses_nothing():
  gt = np.asarray([[4, 4, 20, 20]], np.float32)
  proposals = np.asarray([[4, 4, 20, 21], [0, 0, 12, 12], [30, 30, 31, 31]], np.float32)
  out = detection_targets.sample_rois(jax.random.key(0), proposals, np.ones(3, bool), gt,
                                      np.asarray([2]), np.asarray([True]), num_rois=8)
  # Foreground: the ground truth and proposal 0; background: proposal 1 (IoU 0.19); 2: none.
  assert np.asarray(out.valid).tolist() == [True] * 3 + [False] * 5
  assert sorted(np.asarray(out.labels)[:3].tolist()) == [0, 3, 3]
  empty = detection_targets.sample_rois(jax.random.key(0), proposals, np.ones(3, bool),
                                        np.zeros((0, 4), np.float32), np.zeros((0,), np.int32),
                                        np.zeros((0,), bool), num_rois=8,
                                        background_iou=(0.0, 0.5))
  assert np.asarray(empty.valid).sum() == 3 and not np.asarray(empty.labels).any()


def test_rcnn_training_sets_follow_the_three_rules():
  boxes, classes, mask = _images(2)
  rng = np.random.default_rng(7)
  proposals = np.stack([_proposals(boxes[i][mask[i]], rng) for i in range(3)])
  proposal_mask = np.ones((3, P), bool)
  proposal_mask[:, 0] = False
  out = jax.vmap(lambda *a: rcnn_targets.rcnn_training_sets(*a, num_classes=NUM_CLASSES))(
      proposals, proposal_mask, boxes, classes, mask)
  for i in range(3):
    regions = np.concatenate([proposals[i], boxes[i]])
    valid = np.concatenate([proposal_mask[i], mask[i]])
    is_gt = np.concatenate([np.zeros(P, bool), mask[i]])
    gt, gt_classes = boxes[i][mask[i]], classes[i][mask[i]]
    np.testing.assert_array_equal(out.valid[i], valid)
    np.testing.assert_array_equal(out.is_gt[i], is_gt)
    for n in range(len(regions)):
      ious = _loop_iou(regions[n:n + 1], gt)[0] if len(gt) else np.zeros(0)
      best = ious.max() if len(gt) else 0.0
      cls = gt_classes[np.argmax(ious)] if len(gt) else 0
      fine = cls + 1 if valid[n] and best >= 0.5 else 0
      assert int(out.finetune_labels[i, n]) == fine
      for c in range(NUM_CLASSES):
        of_c = ious[gt_classes == c]
        own = is_gt[n] and classes[i, n - P] == c
        expect = 1 if own else (0 if valid[n] and (of_c.max() if len(of_c) else 0) < 0.3 else -1)
        assert int(out.svm_labels[i, n, c]) == expect, (i, n, c)
      pair = valid[n] and best > 0.6
      assert bool(out.regression_mask[i, n]) == pair
      if pair:
        assert int(out.regression_classes[i, n]) == cls
        np.testing.assert_allclose(out.regression_targets[i, n],
                                   _loop_encode(gt[np.argmax(ious)], regions[n], *RAW),
                                   rtol=1e-4, atol=1e-4)
  # Every ground-truth box is an SVM positive of its class; an image without objects has
  # only negatives (and no fine-tuning positive, no regression pair).
  assert (np.asarray(out.svm_labels[0])[P:P + 3] == 1).sum() == 3
  assert (np.asarray(out.svm_labels[2])[:P][proposal_mask[2]] == 0).all()
  assert not np.asarray(out.finetune_labels[2]).any() and not np.asarray(out.regression_mask[2]).any()


# --- losses ---

def _loop_smooth_l1(x, beta=1.0):
  return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def test_smooth_l1_values_and_gradient_at_the_kink():
  xs = np.asarray([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.5], np.float32)
  for beta in (1.0, 1 / 9):
    np.testing.assert_allclose(detection_losses.smooth_l1(xs, beta),
                               [_loop_smooth_l1(float(x), beta) for x in xs], rtol=1e-6)
  grad = jax.jit(jax.vmap(jax.grad(detection_losses.smooth_l1)))
  # Continuous at |x| = 1: x inside, sign(x) outside, both ±1 there; 0 at the minimum.
  np.testing.assert_allclose(grad(jnp.asarray([-1.0, 1.0, 1 - 1e-4, 1 + 1e-4, 0.0, 0.5])),
                             [-1.0, 1.0, 1 - 1e-4, 1.0, 0.0, 0.5], atol=1e-6)
  np.testing.assert_allclose(detection_losses.smooth_l1(xs, 0.0), np.abs(xs))
  with pytest.raises(ValueError, match="beta=-1"):
    detection_losses.smooth_l1(xs, -1.0)


def test_fast_rcnn_and_rpn_losses_match_a_loop():
  rng = np.random.default_rng(0)
  r, k = 6, NUM_CLASSES + 1
  logits = rng.normal(size=(2, r, k)).astype(np.float32)
  deltas = rng.normal(size=(2, r, k, 4)).astype(np.float32) * 2
  labels = rng.integers(0, k, (2, r))
  targets = rng.normal(size=(2, r, 4)).astype(np.float32)
  valid = rng.uniform(size=(2, r)) < 0.7
  loss, parts = jax.jit(detection_losses.fast_rcnn_loss)(logits, deltas, labels, targets, valid)
  total, n = 0.0, valid.sum()
  for b in range(2):
    for i in range(r):
      if not valid[b, i]:
        continue
      z = logits[b, i].astype(np.float64)
      total += math.log(np.exp(z - z.max()).sum()) + z.max() - z[labels[b, i]]
      if labels[b, i] >= 1:
        total += sum(_loop_smooth_l1(float(d - t))
                     for d, t in zip(deltas[b, i, labels[b, i]], targets[b, i]))
  np.testing.assert_allclose(loss, total / n, rtol=1e-5)
  assert float(parts["loc_loss"]) > 0

  a = 10
  obj = rng.normal(size=(2, a)).astype(np.float32)
  rpn_deltas = rng.normal(size=(2, a, 4)).astype(np.float32)
  rpn_labels = rng.integers(-1, 2, (2, a))
  rpn_targets_ = rng.normal(size=(2, a, 4)).astype(np.float32)
  loss, parts = jax.jit(detection_losses.rpn_loss)(obj, rpn_deltas, rpn_labels, rpn_targets_)
  cls = reg = 0.0
  for b in range(2):
    for i in range(a):
      p = 1 / (1 + math.exp(-float(obj[b, i])))
      if rpn_labels[b, i] >= 0:
        cls -= math.log(p if rpn_labels[b, i] == 1 else 1 - p)
      if rpn_labels[b, i] == 1:
        reg += sum(_loop_smooth_l1(float(d - t)) for d, t in zip(rpn_deltas[b, i],
                                                                 rpn_targets_[b, i]))
  expected = (cls / 256 + 10 * reg / 2400) / 2  # Eq. 1 per image, averaged over the 2 images.
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert float(parts["positives"]) == (rpn_labels == 1).sum() / 2


# --- truncated SVD ---

def test_truncated_svd_reconstruction_error_and_parameter_count():
  rng = np.random.default_rng(0)
  kernel = (rng.normal(size=(24, 16)) * np.geomspace(1, 0.01, 16)).astype(np.float32)
  bias = rng.normal(size=16).astype(np.float32)
  out = svd.truncated_svd(kernel, 5, bias)
  assert out.first_kernel.shape == (24, 5) and out.second_kernel.shape == (5, 16)
  s = np.linalg.svd(kernel.astype(np.float64), compute_uv=False)
  approx = np.asarray(out.first_kernel @ out.second_kernel, np.float64)
  error = np.linalg.norm(kernel - approx) / np.linalg.norm(kernel)
  np.testing.assert_allclose(error, math.sqrt((s[5:] ** 2).sum() / (s ** 2).sum()), rtol=1e-3)
  x = rng.normal(size=(3, 24)).astype(np.float32)
  two_layers = (x @ out.first_kernel) @ out.second_kernel + out.bias
  assert np.linalg.norm(two_layers - (x @ kernel + bias)) <= np.linalg.norm(x) * s[5] * 1.001
  full = svd.truncated_svd(kernel, 16)
  np.testing.assert_allclose(full.first_kernel @ full.second_kernel, kernel, atol=1e-5)
  assert svd.parameter_counts(24, 16, 5) == (384, 200)
  assert svd.parameter_counts(25088, 4096, 1024) == (102_760_448, 29_884_416)  # VGG16 fc6.
  with pytest.raises(ValueError, match=r"rank=17 must be in \[1, 16\]"):
    svd.truncated_svd(kernel, 17)


# --- R-CNN's SVMs ---

def test_svm_hard_negative_mining_finds_the_negatives_the_first_cache_missed():
  rng = np.random.default_rng(0)
  d = 4
  centre = lambda *v: np.asarray(list(v) + [0] * (d - len(v)), np.float32)
  pos_a = rng.normal(size=(20, d)) * 0.3 + centre(3, 0)
  pos_b = rng.normal(size=(20, d)) * 0.3 + centre(0, 3)
  easy = rng.normal(size=(200, d)) * 0.3 + centre(-3, -3)
  # Negatives of both classes, each close to one class: last in the array, so not in the first cache.
  hard = np.concatenate([rng.normal(size=(5, d)) * 0.1 + centre(1.6, 0),
                         rng.normal(size=(5, d)) * 0.1 + centre(0, 1.6)])
  x = np.concatenate([pos_a, pos_b, easy, hard]).astype(np.float32)
  labels = np.zeros((len(x), 2), np.int8)
  labels[:20, 0] = labels[20:40, 1] = 1
  labels[220:225, :] = -1  # Ignored rows (the grey zone).
  kwargs = dict(initial_negatives=50, c=10.0)
  first_cache_only = svm.train_svms(x, labels, rounds=0, **kwargs)
  mined = svm.train_svms(x, labels, rounds=3, **kwargs)
  before, after = first_cache_only.scores(x), mined.scores(x)
  for k in range(2):
    hard_k = np.arange(240, 245) + 5 * k
    assert (before[hard_k, k] > 0).any()  # The first cache never saw them: they score as the class.
    assert (after[labels[:, k] == 1, k] > 0).all() and (after[labels[:, k] == 0, k] < 0).all()
    assert mined.history[k][0]["hard_added"] > 0
  np.testing.assert_array_equal(svm.train_svms(x, labels, rounds=3, **kwargs).weights,
                                mined.weights)  # Deterministic.
  no_positive = labels.copy()
  no_positive[:, 1] = np.where(no_positive[:, 1] == 1, 0, no_positive[:, 1])
  with pytest.raises(ValueError, match="class 1 has 0 positives"):
    svm.train_svms(x, no_positive)
