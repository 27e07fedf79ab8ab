"""Fast R-CNN trained on selective-search proposals (Girshick 2015, §2).

One step, on a batch of N images (research/data/detection_inputs.py: one
scale, padded ground truth, flips) carrying each image's cached selective
search proposals (research/data/proposals.py; P slots, padded with a mask,
rescaled and flipped with the image, so the step stays a pure function of
the batch), with config.model a FastRCNN (research/models/detection.py,
"fast_rcnn_small" or "fast_rcnn_vgg16"):

  1. each image's RoI mini-batch from its proposals plus its ground truth
     (§2.3 "Mini-batch sampling", detection_targets.sample_rois:
     objective.num_rois RoIs per image, R = N x num_rois, 25% foreground at
     IoU >= 0.5 labelled with the object's class, background at IoU in
     [0.1, 0.5));
  2. the shared convs once per image, RoI max pooling of each sampled RoI,
     the fc head and its two sibling outputs (§2.1, §2.2);
  3. the multi-task loss, softmax log loss + lambda [u >= 1] smooth-L1 of
     the class-specific box offsets (eq. 1, lambda = 1), one gradient step
     for the whole network ("single-stage training").

Keys, in config.objective: region_detection.head_defaults' (scale, max_size,
max_objects, flip, num_rois, foreground_fraction, foreground_iou,
background_iou = (0.1, 0.5) as §2.3), train_examples (> 0: the first this
many images of the training split; 0: all), num_proposals (P, the slots per image:
the first P of selective search's ranking, at train and test time; 2000 in
the paper), proposals (selective search's settings, proposals.
ProposalSettings' fields; resize_width 0 = the image's own size) and
proposal_cache ("" = proposals.default_cache_dir(config.data.data_dir),
beside the prepared datasets, shared with R-CNN). Opening the inputs fills
the cache for the training and evaluation splits first (progress lines; a
killed run resumes where it stopped), so training never waits for it.

Evaluation (config.data.eval_split): the head on each image's P proposals,
detection_postprocess.detect (score > 0.05, per-class NMS at 0.3, 100 per
image), mapped back to the image's original pixels: `<split>/mAP` (VOC 2007's
11-point mAP at IoU 0.5), `coco_AP`, `coco_AP50`, `coco_AP75`,
`proposal_recall` (ground-truth boxes with a proposal at IoU >= 0.5) and
`proposal_seconds_per_image` (selective search's seconds, as stored in the
cache). research/train/region_detection.py holds what this shares with
Faster R-CNN's objective.
"""

from absl import logging
import ml_collections

from research.data import proposals as proposals_lib
from research.errors import require
from research.models import detection as detection_models
from research.train import region_detection


def default_objective() -> ml_collections.ConfigDict:
  """config.objective for Fast R-CNN at the paper's settings (VGG16, VOC 2007)."""
  o = region_detection.head_defaults("fast_rcnn")
  o.num_rois = 64                  # §2.3: N = 2 images, R = 128 RoIs: 64 per image.
  o.num_proposals = 2000           # §4: "about 2000" selective search boxes per image.
  o.proposals = ml_collections.ConfigDict({
      "mode": "fast", "max_proposals": 2000, "min_side": 8.0, "resize_width": 0, "seed": 0})
  o.proposal_cache = ""
  o.train_examples = 0             # > 0: train on the first this many images of the split.
  return o


def proposal_settings(config) -> proposals_lib.ProposalSettings:
  """config.objective.proposals as ProposalSettings (resize_width 0 -> None); checked."""
  return proposals_lib.settings_from_config(config.objective.proposals, "objective.proposals")


def proposal_source(config, split: str) -> proposals_lib.SplitProposals:
  """The cached proposals of config.data's `split`, config.objective.num_proposals slots."""
  o = config.objective
  return proposals_lib.SplitProposals.open(
      proposal_settings(config), config.data.name, split, o.num_proposals,
      cache_dir=o.proposal_cache, data_dir=config.data.data_dir)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops impossible model, sampling, proposal and optimizer settings, naming the key."""
  o = config.objective
  region_detection.validate_head_config(config, default_objective(), detection_models.FastRCNN)
  require(o.train_examples >= 0, "objective.train_examples", o.train_examples,
          "must be >= 0 (0: the whole training split).")
  require(o.num_proposals > 0, "objective.num_proposals", o.num_proposals,
          "must be > 0 (2000 in the paper).")
  require(set(o.proposals) == set(default_objective().proposals), "objective.proposals",
          sorted(o.proposals), f"needs exactly the keys {sorted(default_objective().proposals)}.")
  require(o.proposals.resize_width >= 0, "objective.proposals.resize_width",
          o.proposals.resize_width, "must be 0 (the image's own size) or a width in pixels.")
  proposal_settings(config)  # Raises naming objective.proposals.<field>.
  require(o.num_proposals <= o.proposals.max_proposals, "objective.num_proposals",
          o.num_proposals, f"exceeds objective.proposals.max_proposals="
          f"{o.proposals.max_proposals}: the cache holds no more per image.")


class Objective(region_detection.RegionObjective):
  """config.model (a FastRCNN) on config.data's detection dataset with its
  cached selective-search proposals; state: steps.TrainState."""

  progress_keys = ("loss", "cls_loss", "loc_loss", "accuracy")
  recall_name = "proposal_recall"

  @classmethod
  def split_kwargs(cls, config, split: str, train: bool) -> dict:
    return {"proposals": proposal_source(config, split)}

  @classmethod
  def open_inputs(cls, config, train_data=None):
    """The detection splits with their proposals, computed into the cache
    first where missing (before training: its time is not training time)."""
    train, evals = super().open_inputs(config, train_data)
    if config.objective.train_examples and train_data is None:
      train = train.take(config.objective.train_examples)
    for inputs in (evals["test"], train):
      require(inputs.proposals is not None, "data", config.data.name,
              "the fast_rcnn objective needs splits with proposals (split_kwargs).")
      inputs.proposals.precompute(lambda i, s=inputs.split: s[i].image, inputs.indices,
                                  log=lambda line: logging.info("%s", line))
    return train, evals

  def init_variables(self, rng, images):
    return self.model.init({"params": rng}, images)  # One whole-image RoI per image.

  def train_step(self, state, batch):
    k_roi, k_drop = self.step_keys(state, 2)  # RoIs, dropout.
    x = self.images(batch)
    t = self.roi_targets(k_roi, batch["proposals"], batch["proposal_mask"], batch)

    def loss_fn(params):
      out, _ = self._apply(params, x, rois=t.rois, train=True, rngs={"dropout": k_drop})
      return self.head_loss(out, t)

    return self.apply_gradients(state, loss_fn)

  def eval_step(self, state, batch):
    """Detections of the batch on its proposals, with what the metrics need."""
    rois, mask = batch["proposals"], batch["proposal_mask"]
    out, _ = self._apply(state.params, self.images(batch), rois=rois, train=False)
    return self.detection_outputs(batch, {**out, "rois": rois, "roi_mask": mask}, rois, mask)
