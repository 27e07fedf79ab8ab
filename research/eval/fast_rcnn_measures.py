"""Fast R-CNN measured as the paper measures it: detection time per image, with
and without truncated SVD of the fully connected layers (Girshick 2015, §3.1,
Fig. 2, Table 4).

`svd_and_time` evaluates the trained detector with fc6 and fc7 replaced by
their truncated SVD (detection.truncate_head: W ~ U_t S_t V_t^T, two layers
of rank t each) on the whole test split, and times both detectors one image
at a time (batch 1, after compilation), taking turns over two passes so both
see the same load, the better pass counting (timing.best_mean_seconds).
"""

import copy

import jax
import ml_collections

from research.eval import timing
from research.models import detection as detection_models
from research.train import region_detection


def svd_config(config, svd_ranks) -> ml_collections.ConfigDict:
  """A copy of config whose model has fc6/fc7 as truncated SVD of ranks svd_ranks."""
  svd = copy.deepcopy(config)
  svd.model.kwargs.svd_ranks = tuple(svd_ranks)
  return svd


def svd_and_time(objective, state, split, metrics: dict, *, svd_ranks, timed_images: int,
                 batch_size: int) -> dict:
  """Test-time measurements beside the loop's evaluation.

  Args:
    objective: a fast_rcnn Objective (batch 1) on the test split `split`.
    state: its trained state.
    metrics: the loop's final metrics (test/proposal_seconds_per_image, the
      selective-search seconds stored in the proposal cache, is read).
    svd_ranks: (fc6 rank, fc7 rank) of the truncated SVD (the paper: 1024, 256).
    timed_images: how many of the split's first images to time.
    batch_size: the SVD detector's evaluation batch.

  Returns:
    test/network_seconds_per_image: the detector on one image (convs, RoI
      pooling, head, box decoding, NMS), batch 1, after compilation, mean over
      the timed images; the better of two passes (the machine is shared);
    test/seconds_per_image: that plus selective search's stored seconds per image;
    test/svd/network_seconds_per_image, test/svd/seconds_per_image: the same
      with the truncated SVD, and test/svd/{mAP, coco_AP, coco_AP50, coco_AP75}
      on the whole test split;
    test/svd/time_ratio: SVD's network time / the full network time;
    timed_images: the count timed.
  """
  svd = type(objective)(svd_config(objective.config, svd_ranks), split, 1, objective.workdir)
  svd_state = state.replace(params=detection_models.truncate_head(state.params,
                                                                  tuple(svd_ranks)))
  svd_metrics = region_detection.evaluate(svd, svd_state, split, batch_size)
  n = min(timed_images, len(split))
  batches = timing.one_image_batches(split, n)
  seconds = timing.best_mean_seconds({  # Taking turns, so both see the same load.
      "full": (jax.jit(objective.eval_step), [(state, b) for b in batches]),
      "svd": (jax.jit(svd.eval_step), [(svd_state, b) for b in batches])}, passes=2)
  net, net_svd = seconds["full"], seconds["svd"]
  proposal_s = metrics.get("test/proposal_seconds_per_image", float("nan"))
  out = {"test/network_seconds_per_image": net, "test/seconds_per_image": net + proposal_s,
         "test/svd/network_seconds_per_image": net_svd,
         "test/svd/seconds_per_image": net_svd + proposal_s,
         "test/svd/time_ratio": net_svd / net, "timed_images": n}
  out.update({f"test/svd/{k}": v for k, v in svd_metrics.items()
              if k in ("mAP", "coco_AP", "coco_AP50", "coco_AP75")})
  return out
