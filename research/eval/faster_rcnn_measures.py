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

Each is the better of `passes` passes over the images: on a shared machine the
slower pass measures the other processes.

`ranked_proposals` gives each test image's RPN proposals (objectness order,
after the proposal layer's NMS, up to any count) and selective search's (its
own rank, from the cache the Fast R-CNN and R-CNN experiments share), with
the ground truth, in original pixels: proposal_recall.recall_vs_proposals'
input.
"""

import time

import jax
import numpy as np

from research.data import proposals as proposal_lib


def best_mean_seconds(fn, inputs: list, passes: int = 2) -> float:
  """Mean wall seconds of fn(*args) over `inputs` (waiting for the results), the
  best of `passes` passes; one call before the timed ones compiles."""
  jax.block_until_ready(fn(*inputs[0]))
  best = float("inf")
  for _ in range(passes):
    start = time.perf_counter()
    for args in inputs:
      jax.block_until_ready(fn(*args))
    best = min(best, (time.perf_counter() - start) / len(inputs))
  return best


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
  batches = []
  for batch in split.eval_batches(1):
    batches.append(jax.device_put(batch))
    if len(batches) == n:
      break
  params = state.params
  eval_step = jax.jit(objective.eval_step)
  total = best_mean_seconds(eval_step, [(state, b) for b in batches], passes)

  @jax.jit
  def feature_map(params, batch):
    x = objective.images(batch)
    return objective._apply(params, x, method=lambda m, x: m.feature_map(x))

  @jax.jit
  def proposals(params, fmap, image_hw):
    out = objective._apply(params, fmap, image_hw=image_hw,
                           method=lambda m, f, image_hw: m.propose(f, image_hw))
    return out["proposals"], out["proposal_mask"]

  inputs = [(params, feature_map(params, b), b["image_hw"]) for b in batches]
  proposal = best_mean_seconds(proposals, inputs, passes)
  return {"test/seconds_per_image": total, "test/proposal_seconds_per_image": proposal,
          "test/timed_images": n}


def ranked_proposals(objective, state, split, num_images: int, max_proposals: int,
                     dataset: str, split_name: str, cache_dir: str | None = None,
                     settings=proposal_lib.ProposalSettings(), batch_size: int = 50) -> dict:
  """Each of the split's first images' ranked proposals and ground truth, original pixels.

  Args:
    objective, state: a trained faster_rcnn Objective and its state.
    split: the eval split (DetectionInputSplit).
    num_images: the first this many images.
    max_proposals: RPN proposals kept per image after the proposal layer's NMS
      (its post_nms_test raised to this; the paper's Fig. 2 goes to 2000).
    dataset, split_name: the selective-search cache's key (config.data.name and
      the split's name).
    cache_dir: the cache's root (default proposals.default_cache_dir()); images
      missing from it are computed and stored.
    settings: selective search's ProposalSettings (the detectors' defaults).
    batch_size: RPN images per jitted call.

  Returns:
    {"rpn": [float32 [P_i, 4]], "selective_search": [float32 [K_i, 4]],
     "ground_truth": [float32 [G_i, 4]] (difficult and crowd boxes left out),
     "selective_search_seconds": [float]}, one entry per image.
  """
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

  out = {"rpn": [], "selective_search": [], "ground_truth": [], "selective_search_seconds": []}
  for batch in split.eval_batches(batch_size):
    boxes, mask = jax.device_get(rpn(state.params, batch))
    for r in range(len(boxes)):
      if len(out["rpn"]) < n and batch["mask"][r] > 0:
        out["rpn"].append(boxes[r][mask[r]] / batch["scale"][r])
    if len(out["rpn"]) >= n:
      break
  cache = proposal_lib.ProposalCache(cache_dir or proposal_lib.default_cache_dir(), settings)
  for index, example in zip(split.indices[:n], split.examples(n)):
    found = cache.get(dataset, split_name, int(index), example.image)
    out["selective_search"].append(found.boxes)
    out["selective_search_seconds"].append(found.seconds)
    out["ground_truth"].append(np.asarray(example.boxes, np.float32)[
        ~(np.asarray(example.difficult, bool) | np.asarray(example.crowd, bool))])
  return out
