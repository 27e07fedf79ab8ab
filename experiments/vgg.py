"""VGG (Simonyan & Zisserman 2014): stacks of 3x3 convolutions, and depth.

§2.3's argument, checked analytically and on real modules: two stacked 3x3
convolutions (stride 1) see a 5x5 window and three see 7x7, and for C maps in
and out three 3x3 layers have 3 (3^2 C^2) = 27 C^2 weights where one 7x7 layer
has 7^2 C^2 = 49 C^2, 81% more, with two more nonlinearities. We compute the
receptive field with `research.ops.receptive_field` and also measure it as
the support of an output pixel's gradient through a real (linear) conv stack,
and count the weights of real Flax conv stacks at C = 512.

§4.1, Table 3: deeper configurations beat shallower ones at equal training
(top-1 / top-5 validation error, trained and tested at scale 256: A, 11
layers, 29.6% / 10.4%; D, 16 layers, 27.0% / 8.8%; with scale jittering D
reaches 25.6% / 8.1%). We train `vgg_small` (Table 1's layouts at 1/4 width,
256-wide FC layers, 28x28 images zero-padded to 32x32 so the five 2x2 pools
divide evenly) in configurations A and D for the same 3 epochs of the
60,000 Fashion-MNIST training images, with Glorot initialization (which §3.1
found trains the deep nets without staged pre-training), dropout 0.5 on the
FC layers, and Adam (learning rate 1e-3, cosine decay) in place of the
paper's SGD at 0.01, the same for both. One seed each: differences under
about half a point are within run-to-run noise.

Command (not timed in one piece: the runs were split over two sessions on
cores shared with other jobs; D's last 800 steps ran at about 700 img/s alone,
so each configuration should take about 5 minutes on an idle machine):

  python launch.py --config=experiments/vgg.py --workdir=runs/vgg

Measured (seed 0): test error A 9.9%, D 11.9% (D still catching up: 21.1%
against 13.6% after the first epoch); 4 of 7 claims hold (the receptive
fields and weight counts; not depth at 3 epochs, nor the benchmark's 0.935).
`report.md` has the claims table and `vgg_depth.png`.

Arguments (`--config=experiments/vgg.py:ARG`):
  (none)    configurations A and D, 3 epochs.
  full      the same Fashion-MNIST study, longer: configurations A to E, 30
            epochs (not the paper's recipe; that is `imagenet`).
  imagenet  the paper's §3 recipe on ImageNet (a prepared TFDS
            `imagenet2012` in --config.data.data_dir; README, "Paper-scale
            recipes"):

  python launch.py --config=experiments/vgg.py:imagenet --workdir=runs/vgg_imagenet

Configuration D (VGG-16; E with `--config.configurations='("E",)'`), Glorot
initialisation (§3.1's note: it trains D without the staged pre-training
from A), dropout 0.5 in fc6 and fc7. Training images (§3.1): scale
jittering, the shorter side resized to a random S in [256, 512], a random
224 crop, a horizontal flip and AlexNet's colour shift
(`scale_jitter(256,512)|random_crop(224)|flip_lr|pca_lighting(0.1)`). SGD:
batch 256, momentum 0.9, weight decay 5e-4, learning rate 0.01 x batch/256;
the paper divided it by 10 when the validation accuracy stopped improving,
three times, and stopped after 370K iterations (74 epochs): we divide at
epochs 30, 50 and 65 of 74, a fixed schedule of our choosing. Test (§3.2):
dense multi-scale evaluation, the fully connected layers applied as
convolutions to the image rescaled to Q = 256, 384 and 512 on its shorter
side, class scores averaged over the positions, the scales and the
horizontal flip (`dense(256,384,512)`), and at the single scale Q = 384
(`dense(384)`, Table 3), on the 512x512 centre of each validation image (the
paper: the whole image; a batch needs one size). bf16
compute with float32 parameters (the paper: float32;
`--config.compute_dtype=float32`). Deviation: per-channel standardisation
for the per-pixel mean. Paper (Table 4, S in [256, 512], Q in {256, 384,
512}): D top-1 24.8%, top-5 7.5%; E 24.8%, 7.5%; (Table 3, Q = 384): D 25.6%,
8.1%; E 25.5%, 8.0%. Runtime (an estimate,
research/launch/recipes.py `estimate_hours`): about 3.3 hours on 8 GPUs, 26
on one (compute at 30% of an A100's bf16 peak and JPEG decoding at 8 cores
per GPU both bound it).
"""

import os

import ml_collections

from research import models, ops
from research.eval import conv_stacks, plots
from research.launch import multirun, recipes
from research.report import Claim
from research.train import config as config_lib, preflight, trainer
from research.errors import require

# Table 3 (single test scale, training scale 256): top-1 validation error.
PAPER_TOP1 = {"A": 0.296, "D": 0.270}
PAPER_TOP5 = {"A": 0.104, "D": 0.088}
# Table 4 (trained with S in [256, 512], dense test at Q in {256, 384, 512}).
PAPER_IMAGENET = {"D": recipes.PaperError(0.248, 0.075, "Table 4, multi-scale test"),
                  "E": recipes.PaperError(0.248, 0.075, "Table 4, multi-scale test")}
# Table 3 (the same training, one test scale Q = 384).
PAPER_IMAGENET_Q384 = {"D": recipes.PaperError(0.256, 0.081, "Table 3, Q = 384"),
                       "E": recipes.PaperError(0.255, 0.080, "Table 3, Q = 384")}
ARGS = ("", "full", "imagenet")
# This experiment's own config keys (research/launch/multirun.py's schema).
STUDY_KEYS = ("configurations", "arg")
WIDTH = 512  # C, the width of §2.3's comparison (VGG's last stages).


def analytic_metrics() -> dict:
  return {
      "rf/two_3x3": ops.receptive_field([3, 3]),
      "rf/three_3x3": ops.receptive_field([3, 3, 3]),
      "rf/two_3x3_measured": conv_stacks.measured_receptive_field((3, 3)),
      "rf/three_3x3_measured": conv_stacks.measured_receptive_field((3, 3, 3)),
      "weights/three_3x3": conv_stacks.stack_weights((3, 3, 3), WIDTH),
      "weights/one_7x7": conv_stacks.stack_weights((7,), WIDTH),
      "weights/7x7_over_3x3_stack": (conv_stacks.stack_weights((7,), WIDTH)
                                     / conv_stacks.stack_weights((3, 3, 3), WIDTH)),
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or ""
  if arg not in ARGS:
    raise ValueError(f"Unknown argument {arg!r} for experiments/vgg.py; use one of {ARGS}.")
  config = config_lib.base_config()
  config.model.name = "vgg_small"
  config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs("vgg_small", config="A"))
  config.num_epochs = 3.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.eval_train_examples = 10_000
  config.eval_every_epochs = 1.0
  config.checkpoint_every_steps = 500
  config.configurations = ("A", "D")  # Table 1's columns to train; the claims need A and D.
  if arg == "full":
    config.num_epochs = 30.0
    config.configurations = ("A", "B", "C", "D", "E")
  elif arg == "imagenet":   # The module docstring.
    config.model.name = "vgg16"
    config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs("vgg16"))
    recipes.imagenet(config, batch_size=256, num_epochs=74,
                     train_pp="scale_jitter(256,512)|random_crop(224)|flip_lr|pca_lighting(0.1)",
                     eval_pp="resize_small(512)|central_crop(512)",
                     eval_views=("dense(256,384,512)", "dense(384)"))
    config.compute_dtype = "bfloat16"
    config.optimizer.name, config.optimizer.momentum = "sgd", 0.9
    config.optimizer.weight_decay = 5e-4
    recipes.scale_learning_rate(config, 0.01, 256)
    config.optimizer.schedule = "step"
    config.optimizer.boundaries = (30 / 74, 50 / 74, 65 / 74)
    config.configurations = ("D",)
  config.arg = arg
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  trainer.validate_config(config)
  if config.arg != "imagenet":
    preflight.require_train_eval(config, "the depth claim (training error, A vs D)")
  from research.models import vgg
  unknown = [c for c in config.configurations if c not in vgg.CONFIGS]
  require(not unknown, "configurations", config.configurations,
          f"unknown {unknown}; Table 1 has {sorted(vgg.CONFIGS)}.")


def variants(config: ml_collections.ConfigDict) -> dict[str, dict]:
  """One run per Table 1 column in config.configurations."""
  return {c: {"model.kwargs.config": c} for c in config.configurations}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  results = multirun.run_variants(config, variants(config), workdir, study_keys=STUDY_KEYS)
  if config.arg == "imagenet":
    return multirun.merge(results)
  metrics = {**analytic_metrics(), **multirun.merge(results)}
  first = config.configurations[0]
  steps_per_epoch = metrics[f"{first}/steps"] / metrics[f"{first}/epochs"]
  curves = plots.plot_error_curves(
      workdir, {c: f"C{i}" for i, c in enumerate(config.configurations)},
      os.path.join(workdir, "vgg_depth.png"), steps_per_epoch=steps_per_epoch,
      title="vgg_small configurations on Fashion-MNIST")
  for c in config.configurations:  # How far each got by its first evaluation.
    epochs, err = curves[f"{c} test"]
    if epochs:
      metrics[f"{c}/first_eval_epoch"] = epochs[0]
      metrics[f"{c}/test/error_first_eval"] = err[0]
  return metrics


def notes(config: ml_collections.ConfigDict, metrics: dict) -> str:
  """Whether the deeper net was still catching up when training stopped."""
  if config.arg == "imagenet":
    return recipes.error_table(config, metrics, PAPER_IMAGENET)
  if not {"A/test/error", "D/test/error", "A/test/error_first_eval"} <= set(metrics):
    return ""
  first = {c: metrics[f"{c}/test/error_first_eval"] for c in ("A", "D")}
  last = {c: metrics[f"{c}/test/error"] for c in ("A", "D")}
  if last["D"] <= last["A"]:
    return ""
  return "\n".join([
      "## What the numbers say", "",
      f"D was still catching up with A when training stopped: after epoch "
      f"{metrics['A/first_eval_epoch']:.0f} its test error was {first['D']:.1%} against A's "
      f"{first['A']:.1%} (a gap of {100 * (first['D'] - first['A']):.1f} points), at the end "
      f"{last['D']:.1%} against {last['A']:.1%} ({100 * (last['D'] - last['A']):.1f} points; "
      "`vgg_depth.png`). Deep stacks start slowly from a random initialisation, which is why "
      "the paper (§3.1) initialised D's first four conv layers and its FC layers from a "
      f"trained A, and trained for 74 epochs; {multirun.budget_text(config)} is too short for "
      "depth to pay off here. "
      "`--config=experiments/vgg.py:imagenet` is the paper's recipe.", ""])


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  if config.arg == "imagenet":
    return (recipes.error_claims("Simonyan & Zisserman 2015, §4.2", PAPER_IMAGENET, config)
            + recipes.error_claims("Simonyan & Zisserman 2015, §4.1", PAPER_IMAGENET_Q384,
                                   config, "dense(384)"))
  length = multirun.budget_text(config)
  c2 = WIDTH ** 2
  return [
      Claim(source="Simonyan & Zisserman 2014, §2.3",
            statement="Two stacked 3x3 convolutions have a 5x5 receptive field "
                      "(ours: the gradient's support through a real stack).",
            paper="5x5", measure="rf/two_3x3_measured", check=lambda r: r == 5,
            check_text="= 5 (and ops.receptive_field gives 5)", fmt="{:.0f}"),
      Claim(source="Simonyan & Zisserman 2014, §2.3",
            statement="Three stacked 3x3 convolutions have a 7x7 receptive field.",
            paper="7x7", measure="rf/three_3x3_measured", check=lambda r: r == 7,
            check_text="= 7 (and ops.receptive_field gives 7)", fmt="{:.0f}"),
      Claim(source="Simonyan & Zisserman 2014, §2.3",
            statement=f"Three 3x3 layers of C maps have 27C^2 weights (C = {WIDTH}).",
            paper=f"27C^2 = {27 * c2:,}", measure="weights/three_3x3",
            check=lambda n: n == 27 * c2, check_text=f"= {27 * c2:,}", fmt="{:,.0f}"),
      Claim(source="Simonyan & Zisserman 2014, §2.3",
            statement="One 7x7 layer has 49C^2 weights, 81% more than the 3x3 stack "
                      "(ours: the ratio of the real layers' counts).",
            paper="49/27 = 1.81", measure="weights/7x7_over_3x3_stack",
            check=lambda r: abs(r - 49 / 27) < 1e-9, check_text="= 49/27", fmt="{:.3f}"),
      Claim(source="Simonyan & Zisserman 2014, §4.1, Table 3",
            statement="The deeper configuration D (16 layers) has lower error than A "
                      "(11 layers) at equal training (ours: D minus A test error).",
            paper=f"top-1 {PAPER_TOP1['D']:.1%} vs {PAPER_TOP1['A']:.1%} (-2.6 points); "
                  f"top-5 {PAPER_TOP5['D']:.1%} vs {PAPER_TOP5['A']:.1%}",
            measure=lambda m: m["D/test/error"] - m["A/test/error"], check=lambda d: d < 0,
            check_text=f"< 0 (vgg_small, {length}, one seed)", fmt="{:+.2%}"),
      Claim(source="Simonyan & Zisserman 2014, §4.1",
            statement="Depth also fits the training set better: D has lower training "
                      "error than A (ours: D minus A, eval mode, 10,000 training images).",
            paper="(training error not reported)",
            measure=lambda m: m["D/train_eval/error"] - m["A/train_eval/error"],
            check=lambda d: d < 0, check_text="< 0", fmt="{:+.2%}"),
      Claim(source="Fashion-MNIST benchmark (submitted, untested): VGG-16",
            statement="VGG-16 reaches 0.935 test accuracy (ours: vgg_small in "
                      "configuration D, VGG-16's layout at 1/4 width).",
            paper="0.935", measure="D/test/accuracy", check=lambda a: a >= 0.935 - 0.03,
            check_text=f">= 0.905 (3 points below; ours: {length})"),
  ]
