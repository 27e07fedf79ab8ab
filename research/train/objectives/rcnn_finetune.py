"""R-CNN's fine-tuning (Girshick et al. 2014, §2.3): the classifier trained on warped proposals.

The classification objective unchanged (softmax cross-entropy, here over K +
1 classes: background and the K object classes), on R-CNN's windows instead
of images: `open_inputs` builds them from config.data's detection dataset
(research/train/rcnn.finetune_inputs: proposals at IoU >= 0.5 with a
ground-truth box are positives of its class, the rest background; batches of
config.rcnn.positives_per_batch positives, the rest background). Its eval
split is a fixed draw of windows from config.rcnn.finetune_eval_split, so
test/accuracy here is window accuracy, not detection. Keys: the
classification objective's, and config.rcnn / config.proposals
(experiments/rcnn.py).
"""

import ml_collections

from research.errors import require
from research.train import rcnn
from research.train.objectives import classification


def validate_config(config: ml_collections.ConfigDict) -> None:
  """The classification objective's checks, and R-CNN's window settings."""
  classification.validate_config(config)
  require("rcnn" in config and "proposals" in config, "objective.name", config.objective.name,
          "needs config.rcnn and config.proposals (experiments/rcnn.py's config).")
  r = config.rcnn
  require(0 < r.positives_per_batch < config.batch_size, "rcnn.positives_per_batch",
          r.positives_per_batch, f"must be in (0, batch_size={config.batch_size}) "
          "(R-CNN: 32 of 128).")
  require(r.warp_size >= 8, "rcnn.warp_size", r.warp_size, "must be >= 8 pixels (R-CNN: 227).")
  require(0 <= 2 * r.context < r.warp_size, "rcnn.context", r.context,
          f"must be in [0, {r.warp_size / 2:g}) pixels per side at warp_size={r.warp_size} "
          "(R-CNN: 16 of 227).")
  rcnn.proposal_settings(config)  # Raises on a bad config.proposals.


class Objective(classification.Objective):
  """The classification objective on R-CNN's warped windows (K + 1 classes)."""

  @classmethod
  def open_inputs(cls, config, train_data=None):
    if train_data is not None:
      return train_data, {}
    return rcnn.finetune_inputs(config)
