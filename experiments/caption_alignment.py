"""Karpathy & Fei-Fei 2015 ("Deep Visual-Semantic Alignments for Generating Image Descriptions", CVPR), §3.1: the alignment model.

The method, as §3.1 gives it: an image is the CNN embeddings of its regions
(the top 19 detections of a detection R-CNN plus the whole image, §3.1.1), a
sentence the embeddings of its words from a bidirectional RNN (§3.1.2); their
score is eq. 8, the sum over words of each word's best region dot product, and
the structured max-margin objective eq. 9 ranks each image's sentence above the
other sentences of a batch and each sentence's image above the other images.
Evaluated as Table 1: image annotation (image -> sentence) and image search
(sentence -> image) over a test set of images with 5 sentences each, R@1, R@5,
R@10 and the median rank. The baseline embeds the whole image only (R = 1).
Objective: research/train/objectives/caption_alignment.py; model:
research/models/captioning.py; ops: research/ops/captioning.py.

Default (CPU scale): the captioned scenes (caption_scenes: 5,000 training and
1,000 test 128-px scenes of Fashion-MNIST items and digits, 5 generated true
sentences each); regions: the whole image plus the top 19 detections of our
Faster R-CNN (experiments/faster_rcnn.py; its run's workdir in
objective.detector_workdir, default the sibling <dirname(workdir)>/faster_rcnn),
computed once per split and cached in <workdir>/regions/; the region CNN is
that detector's convs, fc6 and fc7 (as the paper's CNN is an R-CNN's), each
region warped to 32 px; embedding size 128, BRNN hidden size 64. Two variants
in one launch: `full` (20 regions) and `whole_image` (the baseline).
Deviations: Adam instead of SGD with momentum, batch 32 instead of 100, no
dropout and no gradient clipping (the paper's §4 uses both), a small CNN
trained on our scenes instead of an ImageNet-detection VGG.

After training, the `full` model's word-to-region alignment of test sentences
is drawn (alignment.png) and its inferred region-phrase pairs (each word's best
region; a region's phrase = the words aligned to it, in sentence order: a
simplified §3.1.4 without its MRF smoothing) are written to
<workdir>/region_phrases.json for the region-generation experiment, with their
agreement with the ground-truth object phrases where the region is a
detection matching an object box at IoU >= 0.5.

Command (the detector's run in the sibling runs/faster_rcnn, else
--config.objective.detector_workdir):

  python launch.py --config=experiments/caption_alignment.py --workdir=runs/caption_alignment

Runtime and result (2026-11-30, regions from runs/faster_rcnn, the 24.8%-mAP
default; 2,000 steps of 32 on the 5,000 training scenes): 30.7 min on 2 cores
shared with a test-suite run (load ~4): the detector's regions of the 5,000
training and 1,000 test scenes (~4 min), `full` 2,000 steps at 43 images/s
(24.5 min of steps) with its evaluations, `whole_image` (820 images/s: 1.3
min), the analysis. Test split, 1,000 images x 5 sentences
(results/caption_alignment/):

  model        annotation R@1 / R@5 / R@10 / Med r    search R@1 / R@5 / R@10 / Med r
  full         10.7 / 30.3 / 46.5 / 12                5.8 / 19.8 / 30.6 / 26.5
  whole_image   2.3 / 12.8 / 24.3 / 29.5              2.5 / 12.2 / 21.9 / 46

The region model beats the whole-image baseline in both directions (R@5 +17.5
and +7.6 points, search Med r 19.5 lower): the three retrieval claims hold,
and the inferred phrases put 36.7% of the words on an object's region in that
object's phrase, against 28.5% for random regions (holds): 4 of 4 claims. At
equal steps the baseline is 19x cheaper; given more it gains little: one
cosine schedule of 3,000 steps on the `ground_truth` argument (9.4 min),

  python launch.py --config=experiments/caption_alignment.py:ground_truth \
      --config.total_steps=3000 --config.eval_every_steps=1000 \
      --config.variants='("whole_image",)'

reached annotation R@5 / Med r 7.7 / 39, 9.5 / 32, 10.9 / 26 and search 7.5 /
51, 11.3 / 42, 11.8 / 39 at steps 1,000, 2,000, 3,000. The earlier default,
400 steps on 3,000 scenes (5.9 min on idle cores), had left both models near
chance (annotation R@5 2.5 vs 2.0, search 2.0 vs 3.1; 2 of 4 claims). Budget,
not a bug, as the slow test in tests/test_caption_alignment.py shows: trained
on 32 training scenes (ground-truth regions, CNN from scratch) for 150 steps
and evaluated on them, annotation R@1 93.8% and search R@1 97.5% (chance 3%).
The data's ceiling (research/eval/caption_ceiling.py; a sentence is true of 5
test scenes at the median): a truth oracle breaking ties at random gets
annotation R@1 / R@5 3.7 / 19.0 (80.7 / 88.6 ranking an image's true
sentences rarest first) and search 42.8 / 66.2, Med r 2; the full model's
annotation R@1 10.7 is above the random-tie oracle's, likely because it
ranks a scene's more specific sentences first, as the rarest-first oracle
does. Trained on the 32 scenes alone to R@1 100% (300 steps), the words on
object regions were in the object's phrase 27.9% of the time (28.7% on random
regions): the whole image suffices to tell 32 scenes apart; on the 5,000 at
2,000 steps the regions pay (36.7% against 28.5%).

Arguments (`--config=experiments/caption_alignment.py:ARG`):
  (none)   caption_scenes as above.
  ground_truth  the same, the objects' own boxes as the regions (no detector needed).
  coco     the paper's COCO setting, for a GPU: a user-prepared TFDS coco_captions
           (Karpathy's splits: train + restval to train, test to evaluate; the
           paper's 1K-image test protocol is its test split's first 1,000
           images, --config.data.eval_split='test[:1000]'), regions from a
           VGG-16 Faster R-CNN run (experiments/faster_rcnn.py:voc07; the paper
           uses an R-CNN trained on ImageNet detection's 200 classes) warped to
           224 px, its convs, fc6, fc7 as the region CNN, embedding size 1000
           (the paper's h is between 1000 and 1600, §3.1.1 as we recall it),
           batch 100 (§4: "mini-batches of 100 image-sentence pairs"). The
           paper's numbers, Table 1, "Our model: BRNN" (image annotation
           R@1 / R@5 / R@10 / Med r, then image search; PAPER_TABLE1, in the
           report beside ours): Flickr30K 22.2 / 48.2 / 61.4 / 4.8, 15.2 /
           37.7 / 50.5 / 9.2; COCO, 1K test images 38.4 / 69.9 / 80.5 / 1,
           27.4 / 60.2 / 74.8 / 3; COCO, 5K test images 16.5 / 39.2 / 52.0 /
           9, 10.7 / 29.6 / 42.2 / 14. As we read the table, not re-checked
           here (an independent listing, paperswithcode's, gives the same
           Flickr30K image-search R@1 15.2 and R@10 50.5). Flickr8K and
           Flickr30K have no TFDS builder, so no argument reads them.
"""

import json
import os

from absl import logging
import jax
import ml_collections

from research import models
from research.errors import require
from research.eval import alignment_plots, region_phrases
from research.launch import multirun
from research.report import Claim
from research.train import config as config_lib, trainer
from research.train.objectives import caption_alignment as objective_lib

STUDY_KEYS = ("variants", "arg")
VARIANTS = {"full": {}, "whole_image": {"model.kwargs.whole_image_only": True}}
FIGURE = "alignment.png"
PHRASES = "region_phrases.json"
SEARCH_KEYS = ("R@1", "R@5", "R@10", "median_rank")
# Karpathy & Fei-Fei 2015, Table 1, "Our model: BRNN": image annotation R@1, R@5, R@10, Med r,
# then image search's; as we read the table, not re-checked here.
PAPER_TABLE1 = {"Flickr30K": (22.2, 48.2, 61.4, 4.8, 15.2, 37.7, 50.5, 9.2),
                "COCO, 1K test images": (38.4, 69.9, 80.5, 1.0, 27.4, 60.2, 74.8, 3.0),
                "COCO, 5K test images": (16.5, 39.2, 52.0, 9.0, 10.7, 29.6, 42.2, 14.0)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  config.objective = objective_lib.default_objective()
  o = config.objective
  config.model.name = "alignment"
  config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs("alignment"))
  config.data.name = "caption_scenes"
  config.data.train_split, config.data.eval_split = "train", "test"
  if not arg or arg == "ground_truth":
    if arg == "ground_truth":
      o.regions, o.init_from_detector = "ground_truth", False
    # All 5,000 training scenes, each seen about 13 times in 2,000 steps of 32:
    # 400 steps left test retrieval near chance while more kept raising it (the
    # docstring's "Budget, not a bug"); ~16 min of the full model's steps here.
    config.batch_size = 32
    config.eval_batch_size = 100
    config.num_epochs, config.total_steps = 0.0, 2000
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 5e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 30
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 200
    config.log_every_steps = 50
  elif arg == "coco":
    config.data.name = "coco_captions"
    config.data.train_split, config.data.eval_split = "train+restval", "test"
    config.data.mean, config.data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    config.model.kwargs.update({"backbone": "vgg16", "crop_size": 224, "embed_dim": 1000,
                                "word_dim": 300, "hidden": 1000})
    config.batch_size = 100
    config.eval_batch_size = 50
    config.num_epochs, config.total_steps = 15.0, 0
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.momentum = 0.9
    config.optimizer.schedule = "cosine"
    config.eval_every_epochs = 5.0
    config.checkpoint_every_steps = 1_000
  else:
    raise ValueError(f"Unknown argument {arg!r} for experiments/caption_alignment.py; use '', "
                     "'ground_truth' or 'coco'.")
  config.variants = tuple(VARIANTS)
  config.arg = arg or ""
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  require(config.variants and all(v in VARIANTS for v in config.variants), "variants",
          config.variants, f"choose from {tuple(VARIANTS)}.")
  # The detector's workdir may still be the default (resolved in run()); the
  # trainer's checks then run there, before any work.
  o = config.objective
  if o.detector_workdir or not (o.regions == "detector" or o.init_from_detector):
    trainer.validate_config(multirun.base_config(config, STUDY_KEYS))


def resolved(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """The config with the detector's workdir (default: the sibling faster_rcnn
  run) and the regions' cache (<workdir>/regions) filled in."""
  config = config.copy_and_resolve_references()
  o = config.objective
  with config.unlocked():
    if not o.detector_workdir and (o.regions == "detector" or o.init_from_detector):
      o.detector_workdir = os.path.join(os.path.dirname(os.path.abspath(workdir)), "faster_rcnn")
    if not o.regions_cache:
      o.regions_cache = os.path.join(os.path.abspath(workdir), "regions")
  return config


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  config = resolved(config, workdir)
  trainer.validate_config(multirun.base_config(config, STUDY_KEYS))  # The detector: here.
  variants = {v: VARIANTS[v] for v in config.variants}
  metrics = multirun.merge(multirun.run_variants(config, variants, workdir,
                                                 study_keys=STUDY_KEYS))
  if jax.process_index() == 0 and "full" in config.variants:
    metrics.update(analyse(multirun.base_config(config, STUDY_KEYS),
                           os.path.join(workdir, "full"), workdir))
  return metrics


def analyse(config, run_dir: str, workdir: str, num_images: int = 0) -> dict:
  """The full model's word-region alignments on the test split: the figure, the
  region-phrase pairs (PHRASES) and their agreement with the objects' phrases."""
  pairs, test = region_phrases.infer_split(config, run_dir, config.data.eval_split,
                                           num_images=num_images)
  agreement = region_phrases.agreement(pairs, test)
  with open(os.path.join(workdir, PHRASES), "w") as f:
    json.dump({"method": region_phrases.METHOD, "agreement": agreement, "images": pairs}, f)
  firsts = [p for p in pairs if p["sentence_index"] == 0]  # One sentence of each image.
  alignment_plots.draw(firsts[:4], test, os.path.join(workdir, FIGURE))
  logging.info("Region phrases: %s", agreement)
  return {f"phrases/{k}": v for k, v in agreement.items()}


def _gap(key: str, higher_better: bool = True):
  sign = 1.0 if higher_better else -1.0
  return lambda m: sign * (m[f"full/test/{key}"] - m[f"whole_image/test/{key}"])


def _paper(side: str, key: str) -> str:
  """The paper's BRNN number for one column of Table 1, Flickr30K and COCO 1K."""
  i = (0 if side == "image_annotation" else 4) + SEARCH_KEYS.index(key)
  f30k, coco = PAPER_TABLE1["Flickr30K"][i], PAPER_TABLE1["COCO, 1K test images"][i]
  return f"BRNN (regions) {f30k:g} on Flickr30K, {coco:g} on COCO 1K"


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  table = "Karpathy & Fei-Fei 2015, Table 1 and §4.1"
  above = "; region model above the whole-image models (see Table 1)"
  return [
      Claim(source=table,
            statement="Image annotation: the alignment model (regions + BRNN) retrieves an "
                      "image's sentences better than the whole-image baseline (ours: full "
                      "minus whole_image, R@5 percentage points, test split).",
            paper=f"R@5: {_paper('image_annotation', 'R@5')}{above}",
            measure=_gap("image_annotation/R@5"), check=lambda d: d > 0,
            check_text="> 0 points", fmt="{:+.1f}"),
      Claim(source=table,
            statement="Image search: the alignment model retrieves a sentence's image better "
                      "than the whole-image baseline (ours: full minus whole_image, R@5).",
            paper=f"R@5: {_paper('image_search', 'R@5')}{above}",
            measure=_gap("image_search/R@5"), check=lambda d: d > 0,
            check_text="> 0 points", fmt="{:+.1f}"),
      Claim(source=table,
            statement="The alignment model's median rank is lower (better) than the "
                      "whole-image baseline's, image search (ours: whole_image minus full).",
            paper=f"Med r: {_paper('image_search', 'median_rank')}{above}",
            measure=_gap("image_search/median_rank", higher_better=False),
            check=lambda d: d > 0, check_text="> 0 ranks", fmt="{:+.1f}"),
      Claim(source="Karpathy & Fei-Fei 2015, §3.1.4 and Fig. 5",
            statement="The inferred alignments put words on the regions they describe: of the "
                      "words aligned to a detection that matches an object (IoU >= 0.5), more "
                      "are in that object's phrase than when the words are given random "
                      "regions of the same image (ours: the difference, points).",
            paper="qualitative (Fig. 5)",
            measure=lambda m: 100 * (m["phrases/word_precision"]
                                     - m["phrases/random_word_precision"]),
            check=lambda d: d > 0, check_text="> 0 points", fmt="{:+.1f}"),
  ]


def notes(config: ml_collections.ConfigDict, metrics: dict) -> str:
  lines = ["| model | annotation R@1 | R@5 | R@10 | Med r | search R@1 | R@5 | R@10 | Med r |",
           "|---|---|---|---|---|---|---|---|---|"]
  for v in config.variants:
    cells = []
    for side in ("image_annotation", "image_search"):
      for k in SEARCH_KEYS:
        value = metrics.get(f"{v}/test/{side}/{k}")
        cells.append("—" if value is None else f"{value:.1f}")
    lines.append(f"| {v} | " + " | ".join(cells) + " |")
  for data, row in PAPER_TABLE1.items():
    lines.append(f"| paper, {data}: BRNN (Table 1) | " + " | ".join(f"{x:g}" for x in row)
                 + " |")
  lines += ["", f"Test split {config.data.eval_split} of {config.data.name}: every image "
            "against every sentence (5 per image). The paper's rows (Table 1, as we read it) "
            "are other data: for orientation only."]
  if "phrases/pairs" in metrics:
    lines += ["", "## Inferred region phrases", "",
              f"{region_phrases.METHOD} Pairs where the region is a detection matching an "
              f"object (IoU >= 0.5): {metrics['phrases/pairs']:.0f}; their words in the "
              f"object's phrase: {metrics['phrases/word_precision']:.1%} (random regions of "
              f"the same image: {metrics['phrases/random_word_precision']:.1%}); the object "
              f"phrase's words found: {metrics['phrases/word_recall']:.1%}. File: {PHRASES}.",
              "", f"![word-to-region alignment]({FIGURE})"]
  return "\n".join(lines) + "\n"
