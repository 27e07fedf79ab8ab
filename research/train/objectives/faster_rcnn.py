"""Faster R-CNN trained end to end: approximate joint training (Ren et al. 2015, §3.2).

One step, on a batch of images (research/data/detection_inputs.py: one
scale, padded ground truth, flips), with config.model a FasterRCNN
(research/models/detection.py, e.g. "faster_rcnn_small" or "faster_rcnn_vgg16"):

  1. the shared convs and the RPN on each image; the proposal layer
     (2000 after NMS in training) without gradient;
  2. the RPN's anchor targets (detection_targets.rpn_targets: 256 anchors per
     image, up to half positive, IoU > 0.7 positive and < 0.3 negative, §3.1.2)
     and the head's RoI mini-batch from the proposals plus the ground truth
     (detection_targets.sample_rois, passed into the model's apply: RoIs per
     image, 25% foreground at IoU >= 0.5, background in [0, 0.5) as
     py-faster-rcnn's end-to-end training);
  3. the loss rpn_loss + fast_rcnn_loss (Faster R-CNN eq. 1 and Fast R-CNN
     eq. 1, both lambda as the papers), one gradient step on their sum: the
     head's loss reaches the shared convs but not the proposal coordinates
     ("approximate joint training").

Keys, in config.objective: scale and max_size (the images' shorter side and
longest side, also the padded size: 600 and 1000 in the papers), max_objects
(ground-truth slots per image; 0: the split's largest count), flip,
rpn_batch_size, rpn_positive_fraction, rpn_positive_iou, rpn_negative_iou,
num_rois, foreground_fraction, foreground_iou, background_iou, and
anchor_object_sizes ((smallest, largest) object side in pixels that every
anchor config must cover at IoU 0.5; () skips that check). The anchors are
config.model.kwargs' anchor_sizes and anchor_ratios, checked against the
padded image before any work (anchors.validate_anchors). config.freeze
freezes parameters by path regex (e.g. "^convs/conv[12]_", the paper's VGG-16
setting); parameters and the optimizer come from config.optimizer.

Evaluation (config.data.eval_split, and eval_train_examples training
images): the test-time detector (300 proposals, detection_postprocess.detect:
score > 0.05, per-class NMS at 0.3, 100 per image) on every image, mapped
back to the image's original pixels; `<split>/mAP` is VOC 2007's 11-point
mAP at IoU 0.5 (as the papers report), `<split>/coco_AP`, `coco_AP50`,
`coco_AP75` pycocotools' COCOeval (research/train/detection_metrics.py) and
`<split>/rpn_recall` the fraction of (non-difficult) ground-truth boxes with
a proposal at IoU >= 0.5. Single process: the detections are gathered on the
host of process 0's view of the replicated outputs.
"""

import functools

import jax
import ml_collections

from research.errors import require
from research.models import detection as detection_models
from research.ops import anchors as anchor_ops
from research.ops import detection_losses, detection_targets
from research.train import region_detection


def default_objective() -> ml_collections.ConfigDict:
  """config.objective for Faster R-CNN, at the papers' settings where they carry over."""
  o = region_detection.head_defaults("faster_rcnn")
  o.rpn_batch_size = 256
  o.rpn_positive_fraction = 0.5
  o.rpn_positive_iou = 0.7
  o.rpn_negative_iou = 0.3
  o.num_rois = 128     # Per image (py-faster-rcnn's end-to-end: one image, 128 RoIs).
  o.background_iou = (0.0, 0.5)  # py-faster-rcnn's end-to-end setting.
  o.anchor_object_sizes = ()
  return o


def _feature_hw(config) -> tuple[int, int]:
  """The feature map of the padded max_size x max_size image (each 2x2 pool floors)."""
  spec = detection_models.backbone_spec(config.model.kwargs.get("backbone", "vgg16"))
  side = config.objective.max_size
  for _ in range(len(spec.stages) - 1):
    side //= 2
  return side, side


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops impossible model, anchor, sampling and optimizer settings, naming the key."""
  o = config.objective
  model = region_detection.validate_head_config(config, default_objective(),
                                                detection_models.FasterRCNN)
  require(o.rpn_batch_size > 0, "objective.rpn_batch_size", o.rpn_batch_size, "must be > 0.")
  require(0 < o.rpn_positive_fraction <= 1, "objective.rpn_positive_fraction",
          o.rpn_positive_fraction, "must be in (0, 1].")
  require(0 <= o.rpn_negative_iou <= o.rpn_positive_iou <= 1, "objective.rpn_negative_iou",
          o.rpn_negative_iou, f"needs 0 <= it <= rpn_positive_iou={o.rpn_positive_iou} <= 1.")
  spec = detection_models.backbone_spec(model.backbone)
  kw = "model.kwargs"
  anchor_ops.validate_anchors(
      (o.max_size, o.max_size), _feature_hw(config), spec.stride, model.anchor_sizes,
      model.anchor_ratios, tuple(o.anchor_object_sizes) or None,
      keys={"sizes": f"{kw}.anchor_sizes", "aspect_ratios": f"{kw}.anchor_ratios",
            "stride": f"{kw}.backbone", "object_sizes": "objective.anchor_object_sizes"})


def _init_layers(model, images):
  """Every layer of a FasterRCNN once, without the proposal layer: the same parameters as
  model.init on __call__ (Flax seeds each layer from its name), compiled in a fraction
  of the time (the NMS loops are most of the compile)."""
  fmap = model.feature_map(images)
  rois = jax.numpy.zeros((images.shape[0], 1, 4), jax.numpy.float32)
  return model.rpn(fmap), model.roi_outputs(fmap, rois)


class Objective(region_detection.RegionObjective):
  """config.model (a FasterRCNN) on config.data's detection dataset; state: steps.TrainState."""

  progress_keys = ("loss", "rpn_loss", "head_loss", "accuracy")
  recall_name = "rpn_recall"

  def init_variables(self, rng, images):
    return self.model.init({"params": rng}, images, method=_init_layers)

  def train_step(self, state, batch):
    o = self.config.objective
    b = batch["image"].shape[0]
    k_rpn, k_roi, k_drop = self.step_keys(state, 3)  # Anchors, RoIs, dropout.
    hw = batch["image_hw"]
    x = self.images(batch)
    anchor_targets = functools.partial(
        detection_targets.rpn_targets, positive_iou=o.rpn_positive_iou,
        negative_iou=o.rpn_negative_iou, batch_size=o.rpn_batch_size,
        positive_fraction=o.rpn_positive_fraction)

    def sample(proposals, proposal_mask):
      t = self.roi_targets(k_roi, proposals, proposal_mask, batch)
      return t.rois, t.valid, t

    def loss_fn(params):
      out, _ = self._apply(params, x, train=True, image_hw=hw, sample_rois=sample,
                           rngs={"dropout": k_drop})
      rpn_t = jax.vmap(anchor_targets, in_axes=(0, None, 0, 0, 0))(
          jax.random.split(k_rpn, b), out["anchors"], batch["boxes"], batch["gt_mask"], hw)
      rpn, rpn_parts = detection_losses.rpn_loss(out["rpn_logits"], out["rpn_deltas"],
                                                 rpn_t.labels, rpn_t.box_targets)
      head, metrics = self.head_loss(out, out["roi_targets"])
      metrics.update(rpn_loss=rpn, rpn_cls_loss=rpn_parts["cls_loss"],
                     rpn_reg_loss=rpn_parts["reg_loss"], rpn_positives=rpn_parts["positives"])
      return rpn + head, metrics

    return self.apply_gradients(state, loss_fn)

  def eval_step(self, state, batch):
    """Detections of the batch (test-time proposals), with what the metrics need."""
    out, _ = self._apply(state.params, self.images(batch), train=False,
                         image_hw=batch["image_hw"])
    return self.detection_outputs(batch, out, out["proposals"], out["proposal_mask"])
