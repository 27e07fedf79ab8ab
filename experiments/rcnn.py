"""R-CNN (Girshick, Donahue, Darrell & Malik 2014): regions with CNN features, end to end.

The method, as the paper gives it (§2): about 2,000 selective-search
proposals per image ("fast mode"); each proposal dilated by 16 pixels of
context and warped to the CNN's 227 x 227 input; the CNN, pre-trained on
ImageNet, fine-tuned as a (K + 1)-way classifier on warped proposals (§2.3:
IoU >= 0.5 with a ground-truth box positive for its class, the rest
background; SGD at 0.001, mini-batches of 32 positive and 96 background
windows); its fc7 features scored by one linear SVM per class (positives:
the ground-truth boxes; negatives: proposals with IoU < 0.3; hard-negative
mining; appendix B), class-specific ridge regression of the box from pool5
features (appendix C, lambda 1000, pairs at IoU > 0.6); at test, greedy NMS
per class at IoU 0.3. mAP is VOC 2007's 11-point mAP at IoU 0.5, beside
COCO's AP (the same evaluators as experiments/faster_rcnn.py).

The stages (research/train/rcnn_stages.py, its pieces research/train/rcnn.py):
1. proposals for the training, held-out and test images (the cache beside the
TFDS data, <data_dir>/proposals, the SplitProposals Fast R-CNN reads: same
settings, same files); 2. fine-tuning in the one
training loop (objective `rcnn_finetune`, checkpoints in the workdir); 3.
features of every region of the first rcnn.svm_images training images, the
SVMs, the box regressors; 4. detection of the test images, timed per image
(batch 1, after compilation). Stages 3 and 4 write their results to
<workdir>/rcnn_stages/<stage>-<config hash>.npz, so a killed run resumes at
the stage it was in.

Default (CPU scale): `alexnet_small` slimmed (AlexNet's layout at 32 x 32:
five convs of 16, 32, 48, 48, 32 maps in one stream, no LRN, pool5 3 x 3 x
32, fc6 and fc7 of 256) on 32 x 32 warps (2.26 pixels of context, the
paper's 16 of 227) of the `detection_scenes` (128 px scenes of Fashion-MNIST
items and MNIST digits on photographs, 20 classes); all selective-search
proposals (fast mode at the scenes' own size, at most 2,000; about 130 per
scene); fine-tuning on the regions of the first 1,500 training scenes, 1,200
steps of 32 + 96 windows, Adam; SVMs and regressors on the regions of the
first 1,000 of them; tested on the first 500 test scenes. Deviations: no
ImageNet pre-training (the paper fine-tunes an ImageNet CaffeNet; nothing of
the kind exists for these scenes, so the network learns from the windows
alone), Adam (1e-3, cosine) instead of SGD at 0.001, a 32-pixel warp and a
network of about 1/100 of CaffeNet's multiply-adds (6.6M of 720M per
window), since a 2-core CPU runs every region through it.

Command:

  python launch.py --config=experiments/rcnn.py --workdir=runs/rcnn

Runtime on 2 idle cores (2026-11-29, rerun with every selective-search box
already cached): 9.0 min from start to report (train_time_s 366 s: fine-tuning
158 s, features 43 s, SVMs 165 s; detection 0.32 s per test image plus the
cached 0.50 s of selective search), the same 28.5% mAP. The first run, on 2
cores shared with other runs (load average 13-15): 58 min from start to report (about 15 min of CPU time), of which
selective search for 1,700 scenes 12 min (the 500 test scenes' proposals
were already in the shared cache, from the Fast R-CNN run), fine-tuning 18
min (1,092 s;
held-out window accuracy 0.80 over K + 1 classes, 0.75 for always
background), features of the 133,595 regions of 1,000 training scenes 218 s,
SVMs 679 s, regressors 6 s (train_time_s 1,994 s), testing 500 scenes 13 min.
Test VOC07 mAP@0.5 28.5% with box regression and 28.5% without (28.47 vs
28.51); COCO AP 0.181 with, 0.166 without (AP50 0.275, AP75 0.211); 2.01 s
per test image (0.50 s of it selective search, 127 proposals per image) on
the loaded machine (results/rcnn/). The detection claim (>= 25% mAP, set
before the run) holds; box regression raising mAP@0.5 does not (see the
report's note: the SVM scores all lie in [-1, -0.39], C = 0.001 on 256-d
features, and the score > -1 cut caps recall).

Arguments (`--config=experiments/rcnn.py:ARG`):
  (none)  alexnet_small on detection_scenes, as above.
  voc07   the paper's setting on PASCAL VOC 2007 (TFDS `voc/2007`, prepared by
          the user; for a GPU): AlexNet (`alexnet_paper`, CaffeNet's layout) at
          227 x 227 with 16 pixels of context; selective search fast mode on
          images 500 pixels wide, up to 2,000 proposals (min side 20 pixels,
          R-CNN's code); fine-tuning on trainval, 128 windows (32 positive),
          SGD at 0.001, momentum 0.9, weight decay 0.0005 (§2.3; the schedule,
          40k iterations with a step at 30k, is ours); SVMs C = 0.001; ridge
          lambda 1000. The paper starts from ImageNet CaffeNet weights
          (config.init_from); without them this trains from scratch. The
          paper's numbers, VOC 2007 test: 58.5% mAP with box regression, 54.2%
          without (Table 1, "R-CNN FT fc7 BB" / "FT fc7"), 13 s per image on a
          GPU and 53 s on a CPU for proposals and features (§2.2).
"""

import os

import jax
import ml_collections

from research import models
from research.eval import detection_plots
from research.launch import detectors
from research.models import rcnn as rcnn_model
from research.report import Claim
from research.train import bbox_regression, config as config_lib, rcnn_stages, svm, trainer

PAPER_MAP_BB, PAPER_MAP_NO_BB = 0.585, 0.542  # Table 1, VOC 2007 test, CaffeNet fine-tuned.
FIGURE = "detections.png"
# Detections drawn in the figure. Our SVMs' scores stay below 0 (C = 0.001 on 256-d
# features shrinks w; the default run's best were about -0.4), so 0 would draw none.
FIGURE_SCORE = -0.9


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  config.objective.name = "rcnn_finetune"
  config.data.name = "detection_scenes"
  config.data.train_split, config.data.eval_split = "train", "test"
  config.eval_train_examples = 0
  config.proposals = ml_collections.ConfigDict(dict(
      mode="fast", max_proposals=2000, min_side=8.0, resize_width=0, seed=0, cache_dir=""))
  config.rcnn = ml_collections.ConfigDict(dict(
      warp_size=32, context=round(rcnn_model.scaled_context(32), 4),
      train_images=1500, svm_images=1000, test_images=500,
      finetune_eval_split="validation", finetune_eval_images=200, finetune_eval_windows=2048,
      positives_per_batch=32, finetune_iou=0.5, svm_negative_iou=0.3, regression_iou=0.6,
      svm_c=svm.RCNN_C, svm_rounds=3, svm_initial_negatives=1000,
      ridge_lambda=bbox_regression.RCNN_LAMBDA, nms_iou=0.3, score_threshold=-1.0,
      chunk=128, figure_images=8))
  config.batch_size = 128  # 32 positive + 96 background windows (§2.3).
  config.eval_batch_size = 256
  if not arg:
    config.model.name = "alexnet_small"
    # AlexNet's layout, slimmer for a 2-core CPU: one stream (no groups), no LRN.
    config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs(
        "alexnet_small", widths=(16, 32, 48, 48, 32), groups=(1,) * 5, lrn=False,
        fc_width=256))
    config = config_lib.override(config, {
        "num_epochs": 0.0, "total_steps": 1200, "optimizer.name": "adam",
        "optimizer.learning_rate": 1e-3, "optimizer.schedule": "cosine",
        "optimizer.warmup_steps": 100, "eval_every_steps": 0, "checkpoint_every_steps": 250,
        "log_every_steps": 50})
  elif arg == "voc07":
    config.data.name = "voc/2007"
    config.data.train_split = "train+validation"  # VOC 2007 trainval, 5,011 images.
    config.model.name = "alexnet_paper"
    config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs("alexnet_paper"))
    config.proposals.resize_width, config.proposals.min_side = 500, 20.0
    r = config.rcnn
    r.warp_size, r.context = rcnn_model.INPUT_SIZE, float(rcnn_model.CONTEXT_PADDING)
    r.train_images = r.svm_images = r.test_images = 0  # 0: all.
    r.finetune_eval_images = 500
    r.chunk = 128
    # §2.3: SGD at 0.001; momentum and weight decay as Caffe's ImageNet recipe; 40k
    # iterations with a 10x drop at 30k is our schedule (the paper gives none).
    config = config_lib.override(config, {
        "num_epochs": 0.0, "total_steps": 40_000, "optimizer.name": "sgd",
        "optimizer.learning_rate": 1e-3, "optimizer.momentum": 0.9,
        "optimizer.weight_decay": 5e-4, "optimizer.schedule": "step",
        "optimizer.boundaries": (0.75,), "optimizer.decay_factor": 0.1,
        "eval_every_steps": 10_000, "checkpoint_every_steps": 2_000})
  else:
    raise ValueError(f"Unknown argument {arg!r} for experiments/rcnn.py; use '' or 'voc07'.")
  config.arg = arg or ""
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  trainer.validate_config(config)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The four stages (research/train/rcnn_stages.py), each resumed from its files,
  and the figure of the first test scenes with their detections; returns the metrics."""
  out = rcnn_stages.run_stages(config, workdir)
  if jax.process_index() == 0:
    k = min(config.rcnn.figure_images, len(out.test_examples))
    detection_plots.scene_grid(
        out.test_examples[:k], out.class_names, os.path.join(workdir, FIGURE),
        detections=out.detections[:k], score_threshold=FIGURE_SCORE,
        title=f"R-CNN on {config.data.name}[{config.data.eval_split}]: ground truth (solid), "
              f"detections with SVM score >= {FIGURE_SCORE} (dashed)")
  return out.metrics


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  bb = Claim(
      source="Girshick et al. 2014, Table 1 and §3.4 (appendix C)",
      statement="Class-specific bounding-box regression on pool5 features raises mAP "
                "(54.2% -> 58.5% on VOC 2007 test).",
      paper="+4.3 points mAP (54.2% -> 58.5%)",
      measure=lambda m: m["test/mAP"] - m["test/mAP_no_bbox_regression"],
      check=lambda d: d > 0,
      check_text="mAP with box regression > mAP without",
      fmt="{:+.1%}")
  if config.arg == "voc07":
    return [detectors.paper_map_claim(
        "Girshick et al. 2014, Table 1",
        "R-CNN (CaffeNet fine-tuned, fc7 SVMs, box regression) reaches 58.5% mAP on VOC 2007 "
        "test.", PAPER_MAP_BB), bb]
  return [detectors.scenes_map_claim(
      "Girshick et al. 2014, §1 and Table 1",
      "Region proposals + a fine-tuned CNN's features + linear SVMs detect objects: on our "
      "scenes (no VOC number applies) the VOC-style mAP@0.5 is far above a detector that "
      "guesses (about 0).", "58.5% mAP (VOC 2007, CaffeNet)", minimum=0.25), bb]


def notes(config: ml_collections.ConfigDict, metrics: dict) -> str:
  paper = {"test/mAP": "58.5% (Table 1, FT fc7 BB)",
           "test/mAP_no_bbox_regression": "54.2% (Table 1, FT fc7)",
           "test/seconds_per_image": "13 s GPU, 53 s CPU (§2.2)"}
  rows = [("VOC07 mAP@0.5 (11-point), with box regression", "test/mAP", "{:.1%}"),
          ("VOC07 mAP@0.5, without box regression", "test/mAP_no_bbox_regression", "{:.1%}"),
          ("COCO AP@[.5:.95]", "test/coco_AP", "{:.3f}"),
          ("COCO AP@[.5:.95], without box regression", "test/coco_AP_no_bbox_regression",
           "{:.3f}"),
          ("COCO AP50", "test/coco_AP50", "{:.3f}"), ("COCO AP75", "test/coco_AP75", "{:.3f}"),
          ("proposals per test image", "test/proposals_per_image", "{:.0f}"),
          ("seconds per test image (proposals + features + SVMs + BB + NMS)",
           "test/seconds_per_image", "{:.3f}"),
          ("  of which selective search", "test/proposal_seconds_per_image", "{:.3f}"),
          ("training seconds (fine-tuning + features + SVMs + regressors)", "train_time_s",
           "{:.0f}"),
          ("  fine-tuning", "finetune_seconds", "{:.0f}"),
          ("  features of the SVMs' regions", "feature_seconds", "{:.0f}"),
          ("  SVMs (hard-negative mining)", "svm_seconds", "{:.0f}"),
          ("  box regressors", "regression_seconds", "{:.1f}"),
          ("fine-tuned window accuracy (held-out windows, K + 1 classes)",
           "finetune/window_accuracy", "{:.3f}")]
  table = ["| measure | ours | paper (VOC 2007 test, CaffeNet) |", "|---|---|---|"]
  table += [f"| {name} | {detectors.cell(metrics, key, fmt)} | {paper.get(key, '')} |"
            for name, key, fmt in rows]
  scale = ("Our scenes are not VOC, and the network learns from the windows alone (no "
           "ImageNet pre-training): the paper's numbers are for orientation, not a comparison."
           if config.arg != "voc07" else "")
  figure = f"![detections]({FIGURE})" if "test/mAP" in metrics else ""
  if "test/mAP" in metrics and metrics["test/mAP"] <= metrics["test/mAP_no_bbox_regression"]:
    scale += (
        f"\n\nBox regression does not raise mAP@0.5 here ({metrics['test/mAP']:.1%} with, "
        f"{metrics['test/mAP_no_bbox_regression']:.1%} without), while COCO's AP over IoU "
        f"0.5:0.95 moves from {metrics['test/coco_AP_no_bbox_regression']:.3f} to "
        f"{metrics['test/coco_AP']:.3f}. Likely reasons: selective search's boxes on these "
        "scenes (flat backgrounds, sharp objects) already reach IoU 0.5 where the class is "
        "right, so tighter boxes change few matches at 0.5 and more at stricter IoUs; and "
        f"detections need an SVM score > {config.rcnn.score_threshold} (the margin), which "
        "caps recall equally with and without the regressors (R-CNN's test code keeps the "
        "best-scoring detections whatever their score).")
  return "\n".join(table) + f"\n\n{scale}\n\n{figure}\n"
