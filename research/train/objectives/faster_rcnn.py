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
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research import models
from research.data import datasets, detection_inputs
from research.errors import require
from research.models import detection as detection_models
from research.models import detection_postprocess as post
from research.ops import anchors as anchor_ops
from research.ops import boxes as box_ops
from research.ops import detection_losses, detection_targets
from research.train import detection_metrics, optim, precision, steps, transfer
from research.train.objectives import base, classification


def default_objective() -> ml_collections.ConfigDict:
  """config.objective for Faster R-CNN, at the papers' settings where they carry over."""
  o = ml_collections.ConfigDict()
  o.name = "faster_rcnn"
  o.scale = 600        # Shorter side in pixels (Fast R-CNN §3, Faster R-CNN §3.3).
  o.max_size = 1000    # Longest side, and the padded square side.
  o.max_objects = 0    # Ground-truth slots per image; 0: the split's most.
  o.flip = True
  o.rpn_batch_size = 256
  o.rpn_positive_fraction = 0.5
  o.rpn_positive_iou = 0.7
  o.rpn_negative_iou = 0.3
  o.num_rois = 128     # Per image (py-faster-rcnn's end-to-end: one image, 128 RoIs).
  o.foreground_fraction = 0.25
  o.foreground_iou = 0.5
  o.background_iou = (0.0, 0.5)
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
  for key in default_objective():
    require(key in o, f"objective.{key}", None,
            "the faster_rcnn objective needs it (faster_rcnn.default_objective()).")
  optim.validate_config(config.optimizer)
  datasets.normalization(config.data.name, config.data.mean, config.data.std)  # Raises.
  require(config.model.name in models.registry(), "model.name", config.model.name,
          f"unknown model. Known: {', '.join(sorted(models.registry()))}.")
  entry = models.registry()[config.model.name]
  cls = getattr(entry, "func", entry)
  require(isinstance(cls, type) and issubclass(cls, detection_models.FasterRCNN), "model.name",
          config.model.name, "the faster_rcnn objective trains a FasterRCNN, e.g. "
          "'faster_rcnn_small'.")
  try:
    model = models.get_model(config.model.name, **config.model.kwargs.to_dict())
  except ValueError as e:
    require(False, "model.kwargs", config.model.kwargs.to_dict(), str(e))
  require(0 < o.scale <= o.max_size, "objective.scale", o.scale,
          f"must be in (0, objective.max_size={o.max_size}].")
  require(o.max_objects >= 0, "objective.max_objects", o.max_objects, "must be >= 0.")
  for key in ("rpn_batch_size", "num_rois"):
    require(o[key] > 0, f"objective.{key}", o[key], "must be > 0.")
  for key in ("rpn_positive_fraction", "foreground_fraction"):
    require(0 < o[key] <= 1, f"objective.{key}", o[key], "must be in (0, 1].")
  require(0 <= o.rpn_negative_iou <= o.rpn_positive_iou <= 1, "objective.rpn_negative_iou",
          o.rpn_negative_iou, f"needs 0 <= it <= rpn_positive_iou={o.rpn_positive_iou} <= 1.")
  lo, hi = (tuple(o.background_iou) + (None, None))[:2]
  require(len(o.background_iou) == 2 and 0 <= lo < hi <= o.foreground_iou,
          "objective.background_iou", o.background_iou,
          f"needs (lo, hi) with 0 <= lo < hi <= foreground_iou={o.foreground_iou}.")
  spec = detection_models.backbone_spec(model.backbone)
  kw = "model.kwargs"
  anchor_ops.validate_anchors(
      (o.max_size, o.max_size), _feature_hw(config), spec.stride, model.anchor_sizes,
      model.anchor_ratios, tuple(o.anchor_object_sizes) or None,
      keys={"sizes": f"{kw}.anchor_sizes", "aspect_ratios": f"{kw}.anchor_ratios",
            "stride": f"{kw}.backbone", "object_sizes": "objective.anchor_object_sizes"})


def _pixels_in(images, image_hw, mean, std):
  """Standardised float32 images, zero beyond each image's (height, width): the
  padding then adds nothing to the convolutions, as the papers' zero-padded blobs."""
  x = steps.standardize(steps.to_unit_range(images), mean, std)
  h, w = x.shape[1:3]
  inside = ((jnp.arange(h)[None, :, None] < image_hw[:, 0, None, None])
            & (jnp.arange(w)[None, None, :] < image_hw[:, 1, None, None]))
  return jnp.where(inside[..., None], x, 0.0)


def _init_layers(model, images):
  """Every layer of a FasterRCNN once, without the proposal layer: the same parameters as
  model.init on __call__ (Flax seeds each layer from its name), compiled in a fraction
  of the time (the NMS loops are most of the compile)."""
  fmap = model.feature_map(images)
  rois = jnp.zeros((images.shape[0], 1, 4), jnp.float32)
  return model.rpn(fmap), model.roi_outputs(fmap, rois)


def _recall(proposals, proposal_mask, gt_boxes, gt_mask):
  """(found, total): ground-truth boxes with a proposal at IoU >= 0.5, per image."""
  gt_boxes, _, gt_mask = detection_targets.pad_empty_ground_truth(
      gt_boxes, jnp.zeros((gt_boxes.shape[0],), jnp.int32), gt_mask)
  iou = jnp.where(proposal_mask[:, None], box_ops.pairwise_iou(proposals, gt_boxes), 0.0)
  found = (iou.max(axis=0) >= 0.5) & gt_mask
  return found.sum(), gt_mask.sum()


class Objective(base.Objective):
  """config.model (a FasterRCNN) on config.data's detection dataset; state: steps.TrainState."""

  progress_keys = ("loss", "rpn_loss", "head_loss", "accuracy")
  has_eval_split = True
  # The classifier's: the model summary (self.model at self.image_shape), the learning rate.
  summary = classification.Objective.summary
  train_extras = classification.Objective.train_extras

  @classmethod
  def open_inputs(cls, config, train_data=None):
    """Detection splits (detection_inputs.DetectionInputSplit) at objective.scale."""
    o, data = config.objective, config.data
    opened = functools.partial(detection_inputs.open_detection_inputs, data, scale=o.scale,
                               max_size=o.max_size, max_objects=o.max_objects)
    train = train_data if train_data is not None else opened(data.train_split, flip=o.flip)
    require(isinstance(train, detection_inputs.DetectionInputSplit), "data.name", data.name,
            "the faster_rcnn objective reads detection datasets (boxes and labels).")
    evals = {"test": opened(data.eval_split, flip=False)}
    require(evals["test"].class_names == train.class_names, "data.eval_split", data.eval_split,
            "has other class names than the training split.")
    if config.eval_train_examples:
      evals["train_eval"] = train.take(config.eval_train_examples)
    return train, evals

  def __init__(self, config, train_data, total_steps, workdir):
    super().__init__(config, train_data, total_steps, workdir)
    self.num_classes = train_data.num_classes
    self.model = models.get_model(config.model.name, num_classes=self.num_classes,
                                  **config.model.kwargs.to_dict())
    self.image_shape = tuple(train_data.image_shape)
    tx, self.schedule = optim.make_optimizer(config.optimizer, total_steps)
    self.tx = transfer.with_frozen(tx, config.freeze)
    mean, std = datasets.normalization(config.data.name, config.data.mean, config.data.std)
    datasets.check_channels(config.data.name, mean, 3)
    self.norm = (mean, std)

  def init_state(self):
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(self.config.seed))
    params = self.model.init({"params": init_rng}, jnp.zeros((1, *self.image_shape)),
                             method=_init_layers)["params"]
    return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                            opt_state=self.tx.init(params), rng=train_rng)

  def _apply(self, params, x, **kwargs):
    return precision.apply(self.model, {"params": params}, x,
                           compute_dtype=self.config.compute_dtype, **kwargs)

  def train_step(self, state, batch):
    o = self.config.objective
    b = batch["image"].shape[0]
    # Step s (state.step = s - 1 before it) draws from fold_in(rng, s): anchors, RoIs, dropout.
    k_rpn, k_roi, k_drop = jax.random.split(jax.random.fold_in(state.rng, state.step + 1), 3)
    hw = batch["image_hw"]
    x = _pixels_in(batch["image"], hw, *self.norm)
    gt = (batch["boxes"], batch["labels"], batch["gt_mask"])
    roi_sampler = functools.partial(
        detection_targets.sample_rois, num_rois=o.num_rois,
        foreground_fraction=o.foreground_fraction, foreground_iou=o.foreground_iou,
        background_iou=tuple(o.background_iou))
    anchor_targets = functools.partial(
        detection_targets.rpn_targets, positive_iou=o.rpn_positive_iou,
        negative_iou=o.rpn_negative_iou, batch_size=o.rpn_batch_size,
        positive_fraction=o.rpn_positive_fraction)

    def sample(proposals, proposal_mask):
      t = jax.vmap(roi_sampler)(jax.random.split(k_roi, b), proposals, proposal_mask, *gt)
      return t.rois, t.valid, t

    def loss_fn(params):
      out, _ = self._apply(params, x, train=True, image_hw=hw, sample_rois=sample,
                           rngs={"dropout": k_drop})
      rpn_t = jax.vmap(anchor_targets, in_axes=(0, None, 0, 0, 0))(
          jax.random.split(k_rpn, b), out["anchors"], gt[0], gt[2], hw)
      rpn, rpn_parts = detection_losses.rpn_loss(out["rpn_logits"], out["rpn_deltas"],
                                                 rpn_t.labels, rpn_t.box_targets)
      t = out["roi_targets"]
      head, head_parts = detection_losses.fast_rcnn_loss(
          out["class_logits"], out["box_deltas"], t.labels, t.box_targets, t.valid)
      metrics = {"rpn_loss": rpn, "head_loss": head, "rpn_cls_loss": rpn_parts["cls_loss"],
                 "rpn_reg_loss": rpn_parts["reg_loss"], "rpn_positives": rpn_parts["positives"],
                 "cls_loss": head_parts["cls_loss"], "loc_loss": head_parts["loc_loss"],
                 "accuracy": head_parts["accuracy"],
                 "foreground_rois": jnp.mean(jnp.sum(t.labels > 0, axis=-1))}
      return rpn + head, metrics

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    return state, {"loss": loss, **metrics}

  def eval_step(self, state, batch):
    """Detections of the batch (test-time proposals), with what the metrics need."""
    hw = batch["image_hw"]
    out, _ = self._apply(state.params, _pixels_in(batch["image"], hw, *self.norm),
                         train=False, image_hw=hw)
    dets = post.detect_batch(out["class_logits"], out["box_deltas"], out["rois"], hw,
                             out["roi_mask"])
    found, total = jax.vmap(_recall)(out["proposals"], out["proposal_mask"], batch["boxes"],
                                     batch["gt_mask"] & ~batch["difficult"])
    keep = ("boxes", "labels", "gt_mask", "difficult", "crowd", "scale", "image_hw", "mask")
    return {"detections": dets, "found": found, "total": total,
            **{k: batch[k] for k in keep}}

  def eval_accumulate(self, sums, out):
    """The batches' outputs, fetched to the host in order (mAP is not a sum)."""
    return (sums or []) + [jax.device_get(out)]

  def eval_metrics(self, sums):
    dets, gts, images = [], [], []
    for out in sums:
      rows = np.flatnonzero(np.asarray(out["mask"]) > 0)
      host = post.to_host(out["detections"])
      for r in rows:
        s = float(out["scale"][r])
        d = host[r]
        dets.append({**d, "boxes": d["boxes"] / s})
        m = np.asarray(out["gt_mask"][r], bool)
        gts.append({"boxes": np.asarray(out["boxes"][r])[m] / s,
                    "labels": np.asarray(out["labels"][r])[m],
                    "difficult": np.asarray(out["difficult"][r])[m],
                    "crowd": np.asarray(out["crowd"][r])[m]})
        images.append(np.round(np.asarray(out["image_hw"][r]) / s).astype(int))
    voc = detection_metrics.voc_eval(dets, gts, self.num_classes)
    coco = detection_metrics.coco_eval(dets, coco_ground_truth(gts, images,
                                                               self.train_data.class_names))
    found = sum(float(np.sum(np.asarray(o["found"])[np.asarray(o["mask"]) > 0])) for o in sums)
    total = sum(float(np.sum(np.asarray(o["total"])[np.asarray(o["mask"]) > 0])) for o in sums)
    return {"mAP": voc["mAP"], "coco_AP": coco["AP"], "coco_AP50": coco["AP50"],
            "coco_AP75": coco["AP75"], "rpn_recall": found / max(total, 1.0),
            "detections_per_image": float(np.mean([len(d["scores"]) for d in dets]))}


def coco_ground_truth(ground_truth, image_hw, class_names) -> dict:
  """A COCO-format dict of per-image ground truth {boxes [K, 4] pixels, labels,
  difficult, crowd} and image sizes (height, width); image ids 0, 1, ... in
  order (detection.to_coco's layout, from arrays instead of a split)."""
  images, annotations = [], []
  for i, (g, (h, w)) in enumerate(zip(ground_truth, image_hw)):
    images.append({"id": i, "file_name": f"#{i}", "height": int(h), "width": int(w)})
    for box, label, difficult, crowd in zip(g["boxes"], g["labels"], g["difficult"], g["crowd"]):
      ymin, xmin, ymax, xmax = (float(v) for v in box)
      annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label) + 1,
                          "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                          "area": (xmax - xmin) * (ymax - ymin), "iscrowd": int(crowd),
                          "difficult": int(difficult)})
  return {"images": images, "annotations": annotations,
          "categories": [{"id": c + 1, "name": n} for c, n in enumerate(class_names)]}
