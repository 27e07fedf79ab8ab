"""ResNet (He et al. 2015) §4.2, Fig. 6: plain nets degrade with depth, residual nets do not.

(Over 200 lines: the method and its scale-down, notes that read the depth
comparison at this budget, and six claims; the curves are drawn by
research/eval/plots.py.)

The method, as §4.2 gives it for CIFAR-10: 6n+2-layer nets (a 3x3 conv, three
stages of n pairs of 3x3 convs at 16, 32, 64 maps, global average pooling, a
10-way FC layer), batch norm after every conv, He initialization; the residual
nets add parameter-free identity shortcuts (option A, zero-padded where the
width doubles), the plain nets are the same stacks without them. SGD with
momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1 divided by 10 at
1/2 and 3/4 of training (the paper: at 32k and 48k of 64k iterations).

We train plain-20, plain-56, ResNet-20 and ResNet-56 on Fashion-MNIST at its
own 28x28 (28 -> 14 -> 7; the design needs no 32x32) and check Fig. 6's
comparison of training error: the degradation problem (plain-56 fits the
training set worse than plain-20) and its fix (ResNet-56 fits it better than
ResNet-20), plus the test errors. Scale: the convolutions run through
oneDNN (`conv_impl="onednn"`; issue 15: the ResNet-20 / ResNet-56 steps 1.5x /
1.8x XLA's on idle cores), ResNet-56 at about 190 images/s here, so the
default trains each net on a fixed subset of 10,000 training images for 12
epochs (936 steps, the schedule compressed to them), with no augmentation (the
paper pads, crops and flips). Deep plain nets are hardest to optimise early
on, which is where this budget looks. Training error is measured in eval mode
on the whole 10,000-image subset (`train_eval/error`); the curves of
`fig6_*.png` show the per-step training error (train-mode batch norm) as the
paper's thin lines.

Command:

  python launch.py --config=experiments/resnet.py --workdir=runs/resnet

Runtime: 50 min on 2 CPU cores shared with two other jobs' tests (load 4-9;
2026-11-30); alone about 30-35 min (estimated from the steps' speed on idle
cores, 520 images/s for ResNet-20 and 190 for ResNet-56; plain-20's first
3.5 minutes, which ran alone, went at 520).

Expected: plain-56 training error above plain-20's, ResNet-56's below
ResNet-20's; `report.md` has the claims table and `fig6_plain.png`,
`fig6_resnet.png`.

Measured (seed 0, the default; results/resnet/): training error plain-20
6.4%, plain-56 21.0% (the degradation holds), ResNet-20 4.3%, ResNet-56
12.4%: the shortcuts fix the degradation (ResNet-56 8.5 points below
plain-56) but ResNet-56 has not caught up with ResNet-20 (test errors 10.7%,
22.5%, 10.6%, 14.5%); 3 of 6 claims hold. At 6 epochs through XLA (the
default until issue 15) ResNet-56 barely trained at learning rate 0.1 in its
first epochs: 25.9% against ResNet-20's 10.3% and plain-56's 24.3% (2 of 6);
with a one-epoch warm-up, as the paper gave its 110-layer net,

  python launch.py --config=experiments/resnet.py --workdir=runs/resnet_warmup \
      --config.optimizer.warmup_steps=78 --config.num_epochs=6 --config.conv_impl=xla

it reached 11.1% against ResNet-20's 10.7% and plain-56's 31.1% in those 6
epochs (3 of 6 held).

Arguments (`--config=experiments/resnet.py:ARG`):
  (none)    10,000 Fashion-MNIST training images, 12 epochs.
  full      the same Fashion-MNIST study, longer: all 60,000 images, 40
            epochs, plain and residual nets of 20-110 layers. Not the paper's
            recipe (that is `cifar10`); hours on this CPU.
  cifar10   the paper's §4.2 recipe on CIFAR-10 (below).
  imagenet  the paper's §3.4 recipe on ImageNet (below).

The paper's recipes (a prepared TFDS `cifar10` / `imagenet2012` in
--config.data.data_dir; README, "Paper-scale recipes"):

  python launch.py --config=experiments/resnet.py:cifar10 --workdir=runs/resnet_cifar10

§4.2 as the paper gives it: plain-20/32/44/56 and ResNet-20/32/44/56/110
(option-A shortcuts), batch 128, SGD with momentum 0.9 and weight decay 1e-4,
learning rate 0.1 divided by 10 at 32k and 48k iterations, 64k iterations;
4 pixels padded on each side, a random 32x32 crop and a random horizontal
flip (`augment="crop_pad4,flip_lr"`, on the device). The paper chose this
schedule on a 45k/5k train/val split: we train on those 45k
(`train[:45000]`; `--config.data.train_split=train` for all 50k) and test on
the 10k test images. ResNet-110 warms up at 0.01 for 400 iterations, then
0.1: the paper warms it up "until the training error is below 80% (about 400
iterations)"; a fixed 400 is our reading. Deviation: per-channel
standardisation where the paper subtracts the per-pixel mean. The paper's
test errors (Table 6): ResNet-20 8.75%, -32 7.51%, -44 7.17%, -56 6.97%,
-110 6.43% (best of 5; mean 6.61 ± 0.16); the claims check Table 6 and Fig.
6's degradation (plain-56 above plain-20 in training error). Pick nets with
`--config.variants='("resnet110",)'`; each net is one subfolder of the workdir.
Runtime (an estimate: research/launch/recipes.py's compute bound, 30% of an
A100's bf16 peak, is 0.4 minutes for ResNet-20 and 2.2 for ResNet-110 on one
GPU, but steps this small are bound by per-layer latency, so expect minutes
to an hour per net; on this 2-core CPU, at the 155 img/s measured for
ResNet-56 on 28x28 images in README's benchmark, 64k steps of 128 take about
15 hours, more at 32x32).

  python launch.py --config=experiments/resnet.py:imagenet --workdir=runs/resnet50

§3.4 as the paper gives it: ResNet-50 (the paper's layout, the stride on the
first 1x1 conv of a bottleneck; ResNet-101/152 with
`--config.variants='("resnet101",)'`), batch 256, SGD with momentum 0.9 and
weight decay 1e-4, learning rate 0.1 x batch/256 (Goyal et al. 2017's linear
scaling; `--config.batch_size=1024` gives 0.4), divided by 10 at epochs 30,
60 and 80 of 90 (the paper divides "when the error plateaus", for up to 60e4
iterations, 120 epochs; 30/60/80 of 90 is Goyal et al.'s fixed version); scale
augmentation (the shorter side resized to a random S in [256, 480], a random
224x224 crop, a horizontal flip, AlexNet's PCA colour augmentation:
`scale_jitter(256,480)|random_crop(224)|flip_lr|pca_lighting(0.1)`); tested on
the 50k validation images resized to 256 on the shorter side (their central
256x256), by 10-crop testing (the first view, `test/accuracy`) and by the
centre 224 crop (`test/central_crop(224)/accuracy`). bf16 compute with
float32 parameters (the paper: float32; `--config.compute_dtype=float32`).
Deviations:
per-channel standardisation for the per-pixel mean; batch-norm statistics
over the whole global batch (the paper: per GPU, 32 images). The paper's
10-crop validation errors (Table 3), top-1 / top-5: ResNet-50 22.85 / 6.71%,
ResNet-101 21.75 / 6.05%, ResNet-152 21.43 / 5.71%. Runtime (an estimate,
research/launch/recipes.py `estimate_hours`: compute at 30% of an A100's bf16
peak, JPEG decoding at 8 ms per image on 8 cores per GPU): ResNet-50 on 8
GPUs about 4 hours (input-bound; compute alone 1.0 h), ResNet-152 about 4
(compute 2.9 h); on one GPU about 32 hours.
"""

import os

import ml_collections

from research.eval import plots
from research.launch import multirun, recipes
from research.report import Claim
from research.train import config as config_lib, metrics as metrics_lib, preflight, trainer
from research.errors import require

# The paper's CIFAR-10 test errors (Table 6).
PAPER_TEST_ERROR = {"resnet20": 0.0875, "resnet32": 0.0751, "resnet44": 0.0717,
                    "resnet56": 0.0697, "resnet110": 0.0643}
# ImageNet validation errors with 10-crop testing (Table 3).
PAPER_IMAGENET = {
    "resnet50": recipes.PaperError(0.2285, 0.0671, "Table 3, 10-crop testing"),
    "resnet101": recipes.PaperError(0.2175, 0.0605, "Table 3, 10-crop testing"),
    "resnet152": recipes.PaperError(0.2143, 0.0571, "Table 3, 10-crop testing"),
}
ARGS = ("", "full", "cifar10", "imagenet")
CIFAR10_NETS = ("plain20", "plain32", "plain44", "plain56",
                "resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
# §4.2: "we use 0.01 to warm up the training until the training error is below
# 80% (about 400 iterations), and then go back to 0.1".
WARMUP = {"resnet110": {"optimizer.warmup_steps": 400}}

# This experiment's own config keys (research/launch/multirun.py's schema).
STUDY_KEYS = ("variants", "arg")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or ""
  if arg not in ARGS:
    raise ValueError(f"Unknown argument {arg!r} for experiments/resnet.py; use one of "
                     f"{ARGS}.")
  config = config_lib.base_config()
  config.model.name = "resnet20"  # The base run; each variant names its net.
  config.data.train_split = "train[:10000]"
  config.batch_size = 128
  config.num_epochs = 12.0
  # oneDNN's convolution on the CPU (XLA's elsewhere): 1.5-1.8x XLA's step here,
  # which bought the default its 12 epochs (issue 15).
  config.conv_impl = "onednn"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = "step"
  config.optimizer.boundaries = (0.5, 0.75)
  config.optimizer.decay_factor = 0.1
  config.eval_train_examples = 10_000   # The whole training subset.
  config.eval_every_epochs = 2.0
  config.log_every_steps = 10           # Dense training-error curves.
  config.checkpoint_every_steps = 200
  # The nets compared; the claims need plain20, plain56, resnet20, resnet56.
  config.variants = ("plain20", "plain56", "resnet20", "resnet56")
  if arg == "full":
    config.data.train_split = "train"
    config.num_epochs = 40.0
    config.eval_every_epochs = 1.0
    config.variants = ("plain20", "plain32", "plain44", "plain56", "plain110",
                       "resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
  elif arg == "cifar10":
    _cifar10(config)
  elif arg == "imagenet":
    _imagenet(config)
  config.arg = arg
  return config


def _cifar10(config: ml_collections.ConfigDict) -> None:
  """§4.2's recipe (the module docstring); the base run is ResNet-20's."""
  config.data.name = "cifar10"   # Its own 3-channel statistics (research/data/datasets.py).
  config.data.train_split, config.data.eval_split = "train[:45000]", "test"
  config.augment = "crop_pad4,flip_lr"
  config.num_epochs, config.total_steps = 0.0, 64_000   # 32k, 48k: boundaries 0.5, 0.75.
  config.optimizer.warmup = "constant"   # For the nets WARMUP gives warmup_steps.
  config.optimizer.warmup_factor = 0.1   # 0.01 = 0.1 x 0.1.
  config.eval_train_examples = 10_000    # Fig. 6's training error.
  config.eval_every_epochs, config.eval_every_steps = 0.0, 2_000
  config.log_every_steps, config.checkpoint_every_steps = 100, 2_000
  config.variants = CIFAR10_NETS


def _imagenet(config: ml_collections.ConfigDict) -> None:
  """§3.4's recipe (the module docstring); the base run is ResNet-50's."""
  config.model.name = "resnet50"
  # The paper's stride; the widths (every ImageNet ResNet's) as a flag for smaller tries.
  config.model.kwargs = ml_collections.ConfigDict(
      {"stride_on_1x1": True, "widths": (64, 128, 256, 512)})
  recipes.imagenet(config, batch_size=256, num_epochs=90,
                   train_pp="scale_jitter(256,480)|random_crop(224)|flip_lr|pca_lighting(0.1)",
                   eval_pp="resize_small(256)|central_crop(256)",
                   eval_views=("ten_crop(224)", "central_crop(224)"))
  config.compute_dtype = "bfloat16"
  recipes.scale_learning_rate(config, 0.1, 256)
  config.optimizer.boundaries = (30 / 90, 60 / 90, 80 / 90)
  config.variants = ("resnet50",)


def validate_config(config: ml_collections.ConfigDict) -> None:
  trainer.validate_config(config)
  from research import models
  unknown = [v for v in config.variants if v not in models.registry()]
  require(not unknown, "variants", config.variants, f"unknown models {unknown}.")
  if config.arg == "imagenet":
    require(all(v in PAPER_IMAGENET or v in ("resnet18", "resnet34") for v in config.variants),
            "variants", config.variants,
            "the ImageNet recipe trains ImageNet ResNets: resnet18, resnet34, "
            f"{', '.join(PAPER_IMAGENET)}.")
  else:
    preflight.require_train_eval(config, "the claims and notes (training error, Fig. 6)")


def _plot_fig6(config, workdir: str, steps_per_epoch: float) -> dict[str, tuple]:
  """Fig. 6: training error (thin) and test error (bold) against epochs; returns
  each net's test curve {name: (epochs, errors)}."""
  test_curves = {}
  for family in ("plain", "resnet"):
    curves, styles = {}, {}
    for i, name in enumerate(v for v in config.variants if v.startswith(family)):
      color = f"C{i}"
      steps, acc = metrics_lib.series(os.path.join(workdir, name), "train/accuracy")
      curves[f"{name} train"] = ([s / steps_per_epoch for s in steps], [1 - a for a in acc])
      styles[f"{name} train"] = dict(color=color, linewidth=0.8)
      steps, err = metrics_lib.series(os.path.join(workdir, name), "test/error")
      curves[f"{name} test"] = test_curves[name] = ([s / steps_per_epoch for s in steps], err)
      styles[f"{name} test"] = dict(color=color, linewidth=2.5, marker="o")
    plots.plot_curves(
        curves, os.path.join(workdir, f"fig6_{family}.png"), xlabel="epoch", ylabel="error",
        title=f"{family} nets on {config.data.name} ({config.data.train_split})", styles=styles,
        ylim=(0, 0.5))
  return test_curves


def variants(config: ml_collections.ConfigDict) -> dict[str, dict]:
  """One run per net in config.variants: the base run with that model (and, in
  the CIFAR-10 recipe, ResNet-110's warm-up)."""
  warmup = WARMUP if config.arg == "cifar10" else {}
  return {name: {"model.name": name, **warmup.get(name, {})} for name in config.variants}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  results = multirun.run_variants(config, variants(config), workdir, study_keys=STUDY_KEYS)
  metrics = multirun.merge(results)
  if config.arg == "imagenet":
    return metrics
  steps_per_epoch = metrics[f"{config.variants[0]}/steps"] / metrics[f"{config.variants[0]}/epochs"]
  test_curves = _plot_fig6(config, workdir, steps_per_epoch)
  for name, (epochs, err) in test_curves.items():  # How far each got by its first evaluation.
    if epochs:
      metrics[f"{name}/first_eval_epoch"] = epochs[0]
      metrics[f"{name}/test/error_first_eval"] = err[0]
  return metrics


def notes(config: ml_collections.ConfigDict, metrics: dict) -> str:
  """The errors side by side, and what the depth comparisons show at this length."""
  if config.arg == "imagenet":
    return recipes.error_table(config, metrics, PAPER_IMAGENET)
  names = [v for v in config.variants if f"{v}/test/error" in metrics]
  if not names:
    return ""
  lines = ["## What the numbers say", "",
           "| net | training error (eval mode) | test error | paper's CIFAR-10 test error |",
           "|---|---|---|---|"]
  for v in names:
    paper = f"{PAPER_TEST_ERROR[v]:.2%}" if v in PAPER_TEST_ERROR else "—"
    lines.append(f"| {v} | {metrics[f'{v}/train_eval/error']:.2%} | "
                 f"{metrics[f'{v}/test/error']:.2%} | {paper} |")
  train = {v: metrics[f"{v}/train_eval/error"] for v in names}
  findings = []
  if {"plain20", "plain56"} <= set(train):
    worse = train["plain56"] > train["plain20"]
    findings.append(
        f"- Plain nets: 56 layers fit the training set {'worse' if worse else 'better'} than "
        f"20 ({train['plain56']:.2%} against {train['plain20']:.2%})"
        + (": the degradation problem, with no overfitting to blame." if worse else
           f". The degradation does not show in {multirun.budget_text(config)}."))
  if {"resnet20", "resnet56"} <= set(train):
    better = train["resnet56"] < train["resnet20"]
    findings.append(
        f"- Residual nets: 56 layers fit {'better' if better else 'worse'} than 20 "
        f"({train['resnet56']:.2%} against {train['resnet20']:.2%})"
        + ("." if better else ": the deeper net had not caught up within "
           f"{multirun.budget_text(config)}."))
    first = "resnet56/test/error_first_eval"
    if not better and first in metrics:
      warm = config.optimizer.warmup_steps
      findings.append(
          f"  After epoch {metrics['resnet56/first_eval_epoch']:.0f} ResNet-56's test error "
          f"was {metrics[first]:.1%} (ResNet-20: {metrics['resnet20/test/error_first_eval']:.1%}"
          f"): it barely trained at learning rate {config.optimizer.learning_rate:g} "
          + ("from the first step" if not warm else f"after a {warm}-step warm-up")
          + ", and the schedule divides the rate by 10 at "
          f"{config.optimizer.boundaries[0]:.0%} and {config.optimizer.boundaries[1]:.0%} of "
          "training, before it recovered. The paper warmed its deepest net (110 layers) up at "
          "0.01 for this reason (§4.2); `--config.optimizer.warmup_steps=78` (one epoch) "
          "tries that here.")
  return "\n".join(lines + [""] + findings) + "\n"


def _difference(a: str, b: str):
  """Our a - b, for a claim's measure."""
  return lambda m: m[a] - m[b]


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  if config.arg == "imagenet":
    return recipes.error_claims("He et al. 2015, §3.4", PAPER_IMAGENET, config)
  scale = multirun.budget_text(config) + (", crops and flips" if config.augment
                                          else ", no augmentation")
  fig6 = [
      Claim(source="He et al. 2015, §4.2, Fig. 6 left",
            statement="Degradation: plain-56 has higher training error than plain-20 "
                      "(ours: plain-56 minus plain-20, eval-mode error on the training set).",
            paper="plain-56 above plain-20 throughout training",
            measure=_difference("plain56/train_eval/error", "plain20/train_eval/error"),
            check=lambda d: d > 0, check_text=f"> 0 ({scale})", fmt="{:+.2%}"),
      Claim(source="He et al. 2015, §4.2, Fig. 6 right",
            statement="With shortcuts, depth helps: ResNet-56 has lower training error "
                      "than ResNet-20 (ours: ResNet-56 minus ResNet-20).",
            paper="ResNet-56 below ResNet-20",
            measure=_difference("resnet56/train_eval/error", "resnet20/train_eval/error"),
            check=lambda d: d < 0, check_text=f"< 0 ({scale})", fmt="{:+.2%}"),
      Claim(source="He et al. 2015, §4.2, Fig. 6",
            statement="Shortcuts fix the degradation: ResNet-56 fits the training set "
                      "better than plain-56 (ours: ResNet-56 minus plain-56 training error).",
            paper="ResNet-56 well below plain-56",
            measure=_difference("resnet56/train_eval/error", "plain56/train_eval/error"),
            check=lambda d: d < 0, check_text="< 0", fmt="{:+.2%}"),
      Claim(source="He et al. 2015, §4.2, Table 6",
            statement="ResNet-56 has lower test error than ResNet-20 (ours: the "
                      f"difference on the {config.data.name} test set).",
            paper=f"{PAPER_TEST_ERROR['resnet56'] - PAPER_TEST_ERROR['resnet20']:+.2%} "
                  f"({PAPER_TEST_ERROR['resnet56']:.2%} vs {PAPER_TEST_ERROR['resnet20']:.2%}, "
                  "CIFAR-10)",
            measure=_difference("resnet56/test/error", "resnet20/test/error"),
            check=lambda d: d < 0, check_text=f"< 0 ({scale})", fmt="{:+.2%}"),
      Claim(source="He et al. 2015, §4.2, Fig. 6 left (bold)",
            statement="The degradation shows on the test set too: plain-56 has higher "
                      "test error than plain-20.",
            paper="plain-56 above plain-20",
            measure=_difference("plain56/test/error", "plain20/test/error"),
            check=lambda d: d > 0, check_text="> 0", fmt="{:+.2%}"),
  ]
  if config.arg == "cifar10":
    return fig6 + recipes.error_claims(
        "He et al. 2015, §4.2", {n: recipes.PaperError(e, None, "Table 6")
                                 for n, e in PAPER_TEST_ERROR.items()}, config)
  return fig6 + [
      Claim(source="Fashion-MNIST benchmark (submitted, untested): ResNet-18",
            statement="ResNet-18 reaches 0.949 test accuracy with augmentation (ours: "
                      "ResNet-56, CIFAR layout, no augmentation).",
            paper="0.949",
            measure="resnet56/test/accuracy",
            check=lambda a: a >= 0.949 - 0.03,
            check_text=f">= 0.919 (3 points below; ours: {scale})"),
  ]
