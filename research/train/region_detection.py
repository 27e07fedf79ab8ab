"""What the region-based detectors' objectives share: Fast R-CNN's head, its sampling, its evaluation.

Fast R-CNN (Girshick 2015; research/train/objectives/fast_rcnn.py) trains
the RoI head on selective-search proposals; Faster R-CNN (Ren et al. 2015;
objectives/faster_rcnn.py) trains the same head on its RPN's proposals. Both
  - read detection splits (research/data/detection_inputs.py) at
    objective.scale, padded to objective.max_size;
  - standardise the images with zeros beyond each image (`pixels_in`);
  - sample each image's RoI mini-batch from its proposals plus the ground
    truth (Fast R-CNN §2.3, detection_targets.sample_rois: objective.num_rois
    per image, objective.foreground_fraction foreground at IoU >=
    foreground_iou, background at IoU in background_iou) and take the
    multi-task loss (eq. 1, detection_losses.fast_rcnn_loss);
  - detect at test time with detection_postprocess.detect (score > 0.05,
    per-class NMS at 0.3, 100 per image) and report `<split>/mAP` (VOC 2007's
    11-point mAP at IoU 0.5), `coco_AP`, `coco_AP50`, `coco_AP75`
    (pycocotools' COCOeval), the recall of the proposals at IoU 0.5
    (`<split>/<recall_name>`), detections per image, and, when the batches
    carry them, the proposals' stored seconds (`proposal_seconds_per_image`).

`RegionObjective` is the base class of both (their test-time timing:
research/eval/timing.py).
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
from research.models import detection_postprocess as post
from research.ops import boxes as box_ops
from research.ops import detection_losses, detection_targets
from research.train import detection_metrics, optim, precision, steps, transfer
from research.train.objectives import base, classification


def head_defaults(name: str) -> ml_collections.ConfigDict:
  """config.objective's keys for the Fast R-CNN head, at the papers' settings where they carry over."""
  o = ml_collections.ConfigDict()
  o.name = name
  o.scale = 600        # Shorter side in pixels (Fast R-CNN §3, Faster R-CNN §3.3).
  o.max_size = 1000    # Longest side, and the padded square side.
  o.max_objects = 0    # Ground-truth slots per image; 0: the split's most.
  o.flip = True        # Fast R-CNN §2.3: horizontal flips with probability 0.5.
  o.num_rois = 128     # RoIs per image (R / N).
  o.foreground_fraction = 0.25
  o.foreground_iou = 0.5
  o.background_iou = (0.1, 0.5)
  return o


def validate_head_config(config, defaults: ml_collections.ConfigDict, model_class: type):
  """Stops impossible keys of the shared part, naming the key; returns the built model.

  defaults: the objective's full default_objective() (every key must be in
  config.objective); model_class: the class config.model.name must build.
  """
  o = config.objective
  for key in defaults:
    require(key in o, f"objective.{key}", None,
            f"the {defaults.name} objective needs it ({defaults.name}.default_objective()).")
  optim.validate_config(config.optimizer)
  datasets.normalization(config.data.name, config.data.mean, config.data.std)  # Raises.
  require(config.model.name in models.registry(), "model.name", config.model.name,
          f"unknown model. Known: {', '.join(sorted(models.registry()))}.")
  entry = models.registry()[config.model.name]
  cls = getattr(entry, "func", entry)
  # Exactly that kind: a subclass adds parts the objective would not train (FasterRCNN's RPN).
  require(isinstance(cls, type) and issubclass(cls, model_class)
          and not any(issubclass(cls, sub) for sub in model_class.__subclasses__()), "model.name",
          config.model.name, f"the {defaults.name} objective trains a {model_class.__name__}, "
          f"e.g. '{defaults.name}_small'.")
  try:
    model = models.get_model(config.model.name, **config.model.kwargs.to_dict())
  except ValueError as e:
    require(False, "model.kwargs", config.model.kwargs.to_dict(), str(e))
  require(0 < o.scale <= o.max_size, "objective.scale", o.scale,
          f"must be in (0, objective.max_size={o.max_size}].")
  require(o.max_objects >= 0, "objective.max_objects", o.max_objects, "must be >= 0.")
  require(o.num_rois > 0, "objective.num_rois", o.num_rois, "must be > 0.")
  require(0 < o.foreground_fraction <= 1, "objective.foreground_fraction",
          o.foreground_fraction, "must be in (0, 1].")
  lo, hi = (tuple(o.background_iou) + (None, None))[:2]
  require(len(o.background_iou) == 2 and 0 <= lo < hi <= o.foreground_iou,
          "objective.background_iou", o.background_iou,
          f"needs (lo, hi) with 0 <= lo < hi <= foreground_iou={o.foreground_iou}.")
  return model


def scenes_setting(config, model_name: str) -> None:
  """Sets config (in place) to the detectors' CPU-scale default: `model_name` on the
  128 px detection_scenes as stored (scale = max_size = 128), 64 RoIs per image, 4
  images per batch, 3,000 steps of Adam at 1e-3 (cosine, 100 warm-up steps),
  evaluated on the 1,000 test scenes every 1,000 steps. Fast and Faster R-CNN's
  defaults share it, so the two compare."""
  o = config.objective
  config.data.name = "detection_scenes"
  config.data.eval_split = "test"
  config.model.name = model_name
  o.scale = o.max_size = 128  # The scenes as stored.
  o.num_rois = 64
  config.batch_size = 4
  config.eval_batch_size = 50
  config.num_epochs, config.total_steps = 0.0, 3000
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 250
  config.log_every_steps = 50


def voc07_setting(config, model_name: str, *, total_steps: int, batch_size: int,
                  num_rois: int) -> None:
  """Sets config (in place) to the papers' VGG16 setting on PASCAL VOC 2007 (TFDS
  `voc/2007`, prepared by the user): trainval to train, test to evaluate, shorter
  side 600 (longest <= 1000); SGD, momentum 0.9, weight decay 0.0005, learning rate
  0.001 for the first 3/4 of total_steps, then 0.0001; conv1_1 to conv2_2 frozen."""
  o = config.objective
  config.data.name = "voc/2007"
  config.data.train_split = "train+validation"  # VOC 2007 trainval, 5,011 images.
  config.data.eval_split = "test"
  config.model.name = model_name
  o.scale, o.max_size = 600, 1000
  o.num_rois = num_rois
  config.batch_size = batch_size
  config.eval_batch_size = 1
  config.num_epochs, config.total_steps = 0.0, total_steps
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "step"
  config.optimizer.boundaries = (0.75,)  # 60k of 80k (Faster), 30k of 40k (Fast).
  config.optimizer.decay_factor = 0.1
  config.freeze = "^convs/conv[12]_"
  config.eval_every_steps = 10_000
  config.checkpoint_every_steps = 5_000


def pixels_in(images, image_hw, mean, std):
  """Standardised float32 images, zero beyond each image's (height, width): the
  padding then adds nothing to the convolutions, as the papers' zero-padded blobs."""
  x = steps.standardize(steps.to_unit_range(images), mean, std)
  h, w = x.shape[1:3]
  inside = ((jnp.arange(h)[None, :, None] < image_hw[:, 0, None, None])
            & (jnp.arange(w)[None, None, :] < image_hw[:, 1, None, None]))
  return jnp.where(inside[..., None], x, 0.0)


def recall_counts(proposals, proposal_mask, gt_boxes, gt_mask):
  """(found, total) of one image: ground-truth boxes with a proposal at IoU >= 0.5, and all."""
  gt_boxes, _, gt_mask = detection_targets.pad_empty_ground_truth(
      gt_boxes, jnp.zeros((gt_boxes.shape[0],), jnp.int32), gt_mask)
  iou = jnp.where(proposal_mask[:, None], box_ops.pairwise_iou(proposals, gt_boxes), 0.0)
  found = (iou.max(axis=0) >= 0.5) & gt_mask
  return found.sum(), gt_mask.sum()


class RegionObjective(base.Objective):
  """A Fast R-CNN head on config.data's detection dataset; state: steps.TrainState.

  Subclasses set `recall_name`, and define `init_variables(rng, images)`,
  `train_step` and `eval_step` (with `roi_targets`, `head_loss`, `apply_gradients`,
  `detection_outputs`), and may add input-split arguments (`split_kwargs`).
  """

  has_eval_split = True
  recall_name = "recall"
  # The classifier's: the model summary (self.model at self.image_shape), the learning rate.
  summary = classification.Objective.summary
  train_extras = classification.Objective.train_extras

  @classmethod
  def split_kwargs(cls, config, split: str, train: bool) -> dict:
    """Extra arguments of detection_inputs.open_detection_inputs for `split`."""
    return {}

  @classmethod
  def open_split(cls, config, split: str, train: bool) -> detection_inputs.DetectionInputSplit:
    """config.data's `split` at objective.scale, as this objective reads it (flipped
    when train and objective.flip; with split_kwargs' extras)."""
    o = config.objective
    return detection_inputs.open_detection_inputs(
        config.data, split, scale=o.scale, max_size=o.max_size, max_objects=o.max_objects,
        flip=bool(o.flip) and train, **cls.split_kwargs(config, split, train))

  @classmethod
  def open_inputs(cls, config, train_data=None):
    """Detection splits (detection_inputs.DetectionInputSplit) at objective.scale."""
    o, data = config.objective, config.data
    train = (train_data if train_data is not None else
             cls.open_split(config, data.train_split, train=True))
    require(isinstance(train, detection_inputs.DetectionInputSplit), "data.name", data.name,
            f"the {o.name} objective reads detection datasets (boxes and labels).")
    evals = {"test": cls.open_split(config, data.eval_split, train=False)}
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

  def init_variables(self, rng, images):
    """The model's variables for float images [1, H, W, 3] (model.init or a cheaper method)."""
    raise NotImplementedError

  def init_state(self):
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(self.config.seed))
    params = self.init_variables(init_rng, jnp.zeros((1, *self.image_shape)))["params"]
    return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                            opt_state=self.tx.init(params), rng=train_rng)

  def _apply(self, params, x, **kwargs):
    return precision.apply(self.model, {"params": params}, x,
                           compute_dtype=self.config.compute_dtype, **kwargs)

  def images(self, batch):
    """The batch's images, standardised, zero beyond each image."""
    return pixels_in(batch["image"], batch["image_hw"], *self.norm)

  def step_keys(self, state, num: int):
    """Step s's keys (state.step = s - 1 before it): fold_in(rng, s), split `num` ways."""
    return jax.random.split(jax.random.fold_in(state.rng, state.step + 1), num)

  def roi_targets(self, key, proposals, proposal_mask, batch) -> detection_targets.RoiTargets:
    """Each image's RoI mini-batch (sample_rois, objective's settings): fields [B, R, ...]."""
    o = self.config.objective
    sampler = functools.partial(
        detection_targets.sample_rois, num_rois=o.num_rois,
        foreground_fraction=o.foreground_fraction, foreground_iou=o.foreground_iou,
        background_iou=tuple(o.background_iou))
    return jax.vmap(sampler)(jax.random.split(key, proposals.shape[0]), proposals,
                             proposal_mask, batch["boxes"], batch["labels"], batch["gt_mask"])

  @staticmethod
  def head_loss(out, t: detection_targets.RoiTargets):
    """Fast R-CNN eq. 1 on the head's outputs for the RoIs of `t`: (loss, metrics)."""
    loss, parts = detection_losses.fast_rcnn_loss(
        out["class_logits"], out["box_deltas"], t.labels, t.box_targets, t.valid)
    return loss, {"head_loss": loss, "cls_loss": parts["cls_loss"],
                  "loc_loss": parts["loc_loss"], "accuracy": parts["accuracy"],
                  "foreground_rois": jnp.mean(jnp.sum(t.labels > 0, axis=-1))}

  def apply_gradients(self, state, loss_fn):
    """One optimizer step on loss_fn(params) -> (loss, metrics): (state, metrics with loss)."""
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    return state, {"loss": loss, **metrics}

  def detection_outputs(self, batch, out, proposals, proposal_mask):
    """eval_step's output: the detections of the head's outputs `out` on RoIs
    out["rois"] (mask out["roi_mask"]), the proposals' recall counts, and what
    eval_metrics reads of the batch."""
    hw = batch["image_hw"]
    dets = post.detect_batch(out["class_logits"], out["box_deltas"], out["rois"], hw,
                             out["roi_mask"])
    found, total = jax.vmap(recall_counts)(proposals, proposal_mask, batch["boxes"],
                                           batch["gt_mask"] & ~batch["difficult"])
    keep = ("boxes", "labels", "gt_mask", "difficult", "crowd", "scale", "image_hw", "mask",
            "proposal_seconds")
    return {"detections": dets, "found": found, "total": total,
            **{k: batch[k] for k in keep if k in batch}}

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
    real = lambda o, key: np.asarray(o[key])[np.asarray(o["mask"]) > 0]
    found = sum(float(np.sum(real(o, "found"))) for o in sums)
    total = sum(float(np.sum(real(o, "total"))) for o in sums)
    metrics = {"mAP": voc["mAP"], "coco_AP": coco["AP"], "coco_AP50": coco["AP50"],
               "coco_AP75": coco["AP75"], self.recall_name: found / max(total, 1.0),
               "detections_per_image": float(np.mean([len(d["scores"]) for d in dets]))}
    if sums and "proposal_seconds" in sums[0]:
      metrics["proposal_seconds_per_image"] = float(np.mean(np.concatenate(
          [real(o, "proposal_seconds") for o in sums])))
    return metrics


def evaluate(objective: RegionObjective, state, split, batch_size: int) -> dict[str, float]:
  """The objective's metrics of `split` (one pass of jitted eval_step), outside the loop."""
  step = jax.jit(objective.eval_step)
  sums = None
  for batch in split.eval_batches(batch_size):
    sums = objective.eval_accumulate(sums, step(state, batch))
  return objective.eval_metrics(sums)


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
