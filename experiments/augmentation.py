"""Data augmentation on a small training set (AlexNet §4.1, VGG §3.1).

The method, as Krizhevsky et al. 2012 (§4.1) give it: "the easiest and most
common method to reduce overfitting on image data is to artificially enlarge
the dataset using label-preserving transformations" — random crops
(translations) and horizontal reflections, and a PCA colour shift; Simonyan &
Zisserman 2014 (§3.1) add scale jittering. The transformations are computed
on the fly, per example, inside the training step (research/data/augment.py),
so every epoch sees new versions of the same images.

We train a small convolutional network (ZF Net's five-conv layout narrowed to
16-32-64-64-32 maps and fc 256, 150k parameters, no dropout) on the first
5,000 Fashion-MNIST training images, once without augmentation, once with
each augmentation alone, and once with AlexNet's recipe (crops + horizontal
flips), with the same schedule for all (2,000 steps of 128, about 51 epochs,
Adam with cosine decay). We measure the test accuracy (all 10,000 test
images) and the train/test gap (accuracy on the 5,000 training images,
unaugmented, minus test accuracy). Upside-down flips are included as a
transformation that is *not* label-preserving here (no garment or shoe is
upside down in the test set). The colour augmentations need RGB images and
Fashion-MNIST is gray, so they are drawn (`examples_photo.png`, on
scikit-learn's sample photos) and tested, not measured.

Scale matters. A first version trained LeNet-5 (61k parameters) for 1,500
steps with stronger ops (pad-4 crops, 3-pixel translations, 15 degree
rotations, 1.25x scale): no augmentation helped (crops + flips: 0.822 vs
0.857 without), because LeNet-5 could no longer fit the augmented data in
that budget (0.85 accuracy on its own training images): it underfit rather
than overfit. Augmentation pays when the network can memorise the training
set, as AlexNet could; hence the larger network and the milder ops for 28x28
images here. One seed per variant: with 10,000 test images a difference under
about 0.5 points is within noise.

Command (8 runs; about 25 minutes on 2 CPU cores shared with other jobs):

  python launch.py --config=experiments/augmentation.py --workdir=runs/augmentation

Expected: crops + flips raise the test accuracy over no augmentation (about
0.85 -> 0.86) and shrink the train/test gap (0.15 -> 0.06); `report.md` has one claim per
augmentation and `effects.png` (the table as bars), `curves.png` (test
accuracy over training), `examples_*.png` (what each op does).
"""

import os

import ml_collections

from research import models
from research.data import tfds_source
from research.eval import augment_examples, plots
from research.launch import multirun
from research.report import Claim
from research.train import config as config_lib, metrics as metrics_lib
from research.errors import require

# This experiment's own config keys (research/launch/multirun.py's schema).
STUDY_KEYS = ("variants", "arg")
# Each variant's config.augment; "none" is the baseline.
# Strengths for 28x28 images: 2 pixels of shift is 7% of the side (AlexNet's
# 224-of-256 crops shift by up to 12%; CIFAR's pad-4 crops by 12% of 32).
VARIANTS = {
    "none": "",
    "crop_pad2": "crop_pad2",
    "flip_lr": "flip_lr",
    "translate2": "translate2",
    "rotate10": "rotate10",
    "scale1.15": "scale1.15",
    "flip_ud": "flip_ud",
    "crop_pad2+flip_lr": "crop_pad2,flip_lr",
}
RECIPE = "crop_pad2+flip_lr"  # AlexNet §4.1: crops (translations) and horizontal reflections.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  # ZF Net's layout narrowed (as in experiments/transfer.py), without dropout:
  # like AlexNet without augmentation, it can memorise the training set.
  config.model.name = "zfnet_small"
  config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs(
      "zfnet_small", widths=(16, 32, 64, 64, 32), fc_width=256, conv1_stride=2, lrn=False,
      dropout=0.0))
  config.data.train_split = "train[:5000]"
  config.batch_size = 128
  config.total_steps, config.num_epochs = 2000, 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.schedule = "cosine"
  config.eval_train_examples = 5000   # The whole (unaugmented) training subset.
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  config.variants = tuple(VARIANTS)
  if arg:
    raise ValueError(f"Unknown argument {arg!r} for experiments/augmentation.py; use ''.")
  config.arg = ""
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  from research.train import preflight, trainer
  trainer.validate_config(config)
  preflight.require_train_eval(config, "the train/test gaps")
  require(all(v in VARIANTS for v in config.variants) and "none" in config.variants,
          "variants", config.variants, f"need 'none' and names from {list(VARIANTS)}.")


def variants(config: ml_collections.ConfigDict) -> dict[str, dict]:
  """One run per augmentation named in config.variants ("none": the base run)."""
  return {name: {"augment": VARIANTS[name]} for name in config.variants}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  # 1. Train every variant, each in its own subfolder (each resumes on its own).
  results = multirun.run_variants(config, variants(config), workdir, study_keys=STUDY_KEYS)
  metrics = multirun.merge(results)
  # 2. The train/test gap: accuracy on the training images minus on the test set.
  for name in config.variants:
    metrics[f"{name}/gap"] = (metrics[f"{name}/train_eval/accuracy"]
                              - metrics[f"{name}/test/accuracy"])
    metrics[f"{name}/test_gain"] = (metrics[f"{name}/test/accuracy"]
                                    - metrics["none/test/accuracy"])
  # 3. Figures: the effects, the curves, and what each op does to an image.
  names = list(config.variants)
  plots.accuracy_bars(names, [metrics[f"{n}/test/accuracy"] for n in names],
                      [metrics[f"{n}/train_eval/accuracy"] for n in names],
                      os.path.join(workdir, "effects.png"),
                      title=f"Each augmentation alone, Fashion-MNIST {config.data.train_split}")
  curves = {name: metrics_lib.series(os.path.join(workdir, name), "test/accuracy")
            for name in config.variants}
  plots.plot_curves(curves, os.path.join(workdir, "curves.png"), xlabel="step",
                    ylabel="test accuracy",
                    title="5,000 Fashion-MNIST images, each augmentation")
  data = tfds_source.load_split(config.data.name, "train[:8]", config.data.data_dir)
  augment_examples.draw(data.images, [VARIANTS[n] for n in config.variants if n != "none"],
                        workdir)
  return metrics


def _gain(name: str):
  return lambda m: m[f"{name}/test_gain"]


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  scale = f"{config.data.train_split} of Fashion-MNIST, {config.total_steps} steps"
  result = [
      Claim(source="Krizhevsky et al. 2012, §4.1",
            statement="Label-preserving augmentation (crops + horizontal reflections) "
                      "reduces overfitting: higher test accuracy than no augmentation "
                      "(ours: the difference).",
            paper="without it, 'substantial overfitting'",
            measure=_gain(RECIPE), check=lambda d: d > 0, check_text=f"> 0 ({scale})",
            fmt="{:+.4f}"),
      Claim(source="Krizhevsky et al. 2012, §4.1",
            statement="... and a smaller train/test gap (ours: the recipe's gap minus "
                      "no augmentation's; accuracy on the 5,000 training images minus test).",
            paper="smaller gap",
            measure=lambda m: m[f"{RECIPE}/gap"] - m["none/gap"],
            check=lambda d: d < 0, check_text="< 0", fmt="{:+.4f}")]
  singles = {"crop_pad2": ("Krizhevsky et al. 2012, §4.1", "random crops (translations)"),
             "flip_lr": ("Krizhevsky et al. 2012, §4.1", "horizontal reflections"),
             "translate2": ("Krizhevsky et al. 2012, §4.1", "sub-pixel translations"),
             "rotate10": ("Simard et al. 2003, §2 (affine distortions)", "small rotations"),
             "scale1.15": ("Simonyan & Zisserman 2014, §3.1, Table 3",
                           "scale jittering (VGG config D: 26.9% -> 25.6% top-1 error)")}
  for name, (source, what) in singles.items():
    if name in config.variants:
      result.append(Claim(
          source=source, statement=f"{name} alone: {what} raise test accuracy over none "
                                   "(ours: the difference).",
          paper="helps", measure=_gain(name), check=lambda d: d > 0, check_text="> 0",
          fmt="{:+.4f}"))
  if "flip_ud" in config.variants and "flip_lr" in config.variants:
    result.append(Claim(
        source="Krizhevsky et al. 2012, §4.1 (horizontal only)",
        statement="A transformation that is not label-preserving here (upside-down flips) "
                  "helps less than horizontal flips (ours: flip_ud's gain minus flip_lr's).",
        paper="only horizontal reflections used",
        measure=lambda m: m["flip_ud/test_gain"] - m["flip_lr/test_gain"],
        check=lambda d: d < 0, check_text="< 0", fmt="{:+.4f}"))
  return result
