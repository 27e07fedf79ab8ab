"""Faster R-CNN measured as the paper measures it: test time (Table 5) and the
proposals behind its recall-vs-proposals figure (Fig. 2).

Ren et al. 2015 (Table 5) time one image at a time: the shared convs, the
"proposal" part (the RPN's layers and the proposal layer's decoding and NMS
on the computed feature map: 10 ms of 198 ms for VGG-16 on a K40) and the
region-wise rest. `faster_rcnn_seconds` times, on the eval split's first
images one at a time (batch 1), after compilation:

  test/seconds_per_image: the whole detector (the objective's jitted
    eval_step: convs, RPN, proposals, RoI pooling, head, box decoding,
    per-class NMS), mean wall seconds per image;
  test/proposal_seconds_per_image: `FasterRCNN.propose` alone (RPN + proposal
    decoding + NMS) on each image's precomputed feature map.

Each is the better of `passes` passes over the images, the two taking turns
(timing.best_mean_seconds): on a shared machine the slower pass measures the
other processes.

`ranked_proposals` gives each test image's RPN proposals (objectness order,
after the proposal layer's NMS, up to any count) and selective search's (its
own rank, from the cache the Fast R-CNN experiment fills, under the settings
of the config it is given), with the ground truth, in original pixels:
proposal_recall.recall_vs_proposals' input.
"""

from absl import logging
import jax
import numpy as np

from research.data import proposals as proposal_lib
from research.eval import timing


def faster_rcnn_seconds(objective, state, split, num_images: int, passes: int = 2) -> dict:
  """Per-image test time of a Faster R-CNN objective's detector (see the module docstring).

  Args:
    objective: a faster_rcnn Objective (its model a FasterRCNN, its eval_step,
      its `_apply` in config.compute_dtype and `images(batch)`, the standardised input).
    state: its trained state.
    split: the eval split (a DetectionInputSplit).
    num_images: how many of the split's first images to time (>= 1).
    passes: timed passes (the best counts).

  Returns:
    {"test/seconds_per_image", "test/proposal_seconds_per_image": float seconds,
     "test/timed_images": the count timed}.

  Raises:
    ValueError: num_images < 1 or an empty split.
  """
  n = min(num_images, len(split))
  if n < 1:
    raise ValueError(f"faster_rcnn_seconds: num_images={num_images} on a split of "
                     f"{len(split)} images; time at least one image.")
  batches = timing.one_image_batches(split, n)
  params = state.params

  @jax.jit
  def feature_map(params, batch):
    x = objective.images(batch)
    return objective._apply(params, x, method=lambda m, x: m.feature_map(x))

  @jax.jit
  def proposals(params, fmap, image_hw):
    out = objective._apply(params, fmap, image_hw=image_hw,
                           method=lambda m, f, image_hw: m.propose(f, image_hw))
    return out["proposals"], out["proposal_mask"]

  seconds = timing.best_mean_seconds({
      "test/seconds_per_image": (jax.jit(objective.eval_step), [(state, b) for b in batches]),
      "test/proposal_seconds_per_image": (
          proposals, [(params, feature_map(params, b), b["image_hw"]) for b in batches])},
      passes)
  return {**seconds, "test/timed_images": n}


def ranked_proposals(config, objective, state, split, split_name: str, num_images: int,
                     max_proposals: int, batch_size: int = 50) -> dict:
  """Each of the split's first images' ranked proposals and ground truth, original pixels.

  Args:
    config: the run's config. Selective search's boxes are read from the cache
      Fast R-CNN's run shares (proposals.SplitProposals) under its settings
      config.proposals (ProposalSettings' fields; resize_width 0: the image's own
      size) and config.proposals.cache_dir ("": proposals.default_cache_dir(
      config.data.data_dir)), keyed by config.data.name; images missing from it are
      computed and stored, with progress lines.
    objective, state: a trained faster_rcnn Objective and its state.
    split: the eval split (DetectionInputSplit).
    split_name: the split's name (the cache key's).
    num_images: the first this many images.
    max_proposals: RPN proposals kept per image after the proposal layer's NMS
      (its post_nms_test raised to this; the paper's Fig. 2 goes to 2000).
    batch_size: RPN images per jitted call.

  Returns:
    {"rpn": [float32 [P_i, 4]], "selective_search": [float32 [K_i, 4]],
     "ground_truth": [float32 [G_i, 4]] (difficult and crowd boxes left out),
     "selective_search_seconds": [float]}, one entry per image.

  Raises:
    errors.ConfigError: impossible selective search settings in config.proposals.
  """
  source = proposal_lib.SplitProposals.open(
      proposal_lib.settings_from_config(config.proposals, "proposals"), config.data.name,
      split_name, config.proposals.max_proposals, cache_dir=config.proposals.cache_dir,
      data_dir=config.data.data_dir)
  n = min(num_images, len(split))
  model = objective.model.clone(post_nms_test=max_proposals,
                                pre_nms_test=max(objective.model.pre_nms_test, max_proposals))

  @jax.jit
  def rpn(params, batch):
    x = objective.images(batch)
    fmap = objective._apply(params, x, method=lambda m, x: m.feature_map(x))
    out = model.apply({"params": params}, fmap, batch["image_hw"],
                      method=lambda m, f, hw: m.propose(f, hw))
    return out["proposals"], out["proposal_mask"]

  out = {"rpn": [], "ground_truth": []}
  for batch in split.eval_batches(batch_size):
    boxes, mask = jax.device_get(rpn(state.params, batch))
    for r in range(len(boxes)):
      if len(out["rpn"]) < n and batch["mask"][r] > 0:
        out["rpn"].append(boxes[r][mask[r]] / batch["scale"][r])
    if len(out["rpn"]) >= n:
      break
  examples = split.examples(n)
  images = {int(i): e.image for i, e in zip(split.indices[:n], examples)}
  boxes, seconds = source.read(images.__getitem__, list(images),
                               log=lambda line: logging.info("%s", line))
  out["selective_search"], out["selective_search_seconds"] = boxes, [float(s) for s in seconds]
  for example in examples:
    out["ground_truth"].append(np.asarray(example.boxes, np.float32)[
        ~(np.asarray(example.difficult, bool) | np.asarray(example.crowd, bool))])
  return out
