"""Training objectives by name: what differs between training problems.

The one training loop (`research.train.trainer.train`) owns the cadence:
progress lines and metrics, periodic evaluations, checkpoints and exact
resume, preemption, the NaN/inf stop, and sharding over the device mesh. It
takes everything that differs from the objective named by
`config.objective.name` (big_vision resolves its losses by name the same way);
the objective's own keys sit beside the name in `config.objective`:

  classification  cross-entropy (+ GoogLeNet's auxiliary heads, label
                  smoothing, augmentation, frozen layers); the default.
  adversarial     Goodfellow et al. 2014's eq. 6: the FGSM inner step is part
                  of the loss (keys: epsilon, alpha).
  gan             Goodfellow et al. 2014's Algorithm 1, one D then one G
                  update per step (keys: gan, generator, discriminator,
                  optimizer, generator_loss, ...).
  faster_rcnn     Ren et al. 2015's approximate joint training of the RPN and
                  the Fast R-CNN head on a detection dataset, VOC 2007 mAP
                  and COCO AP as its evaluation (keys: scale, max_size,
                  num_rois, rpn_batch_size, ...).
  rcnn_finetune   R-CNN's fine-tuning (Girshick et al. 2014, §2.3): the
                  classification objective on warped proposals, K + 1 classes
                  (keys: config.rcnn, config.proposals; experiments/rcnn.py).
  fast_rcnn       Girshick 2015's Fast R-CNN head trained on cached
                  selective-search proposals carried in the batches (keys:
                  scale, max_size, num_rois, num_proposals, proposals, ...).
  caption_alignment  Karpathy & Fei-Fei 2015's image-sentence alignment model
                  on its ranking loss (eq. 9), retrieval R@K as its
                  evaluation (keys: regions, detector_workdir, num_regions, ...).
  caption_generation  Karpathy & Fei-Fei 2015's multimodal RNN (or an LSTM):
                  teacher-forced cross-entropy; beam-search captions scored
                  with BLEU-1..4 and CIDEr-D as its evaluation (keys:
                  generator, encoder, beam_size, grad_clip, ...).

A module `research/train/objectives/<name>.py` defines `validate_config(config)`
(raises ValueError naming the key, before any work) and `Objective`, a subclass
of `base.Objective`. Adding one is adding a module: nothing here needs editing.
"""

import importlib
import pkgutil
import types

from research.errors import require


def names() -> list[str]:
  """Every objective's name (the modules of this package but `base`)."""
  return sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name != "base")


def get(name: str) -> types.ModuleType:
  """The objective module `name`; ValueError naming the choices when unknown."""
  require(name in names(), "objective.name", name, f"unknown objective; choose one of {names()}.")
  return importlib.import_module(f"{__name__}.{name}")
