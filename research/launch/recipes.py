"""The papers' own training recipes at their scale: the pieces the `:imagenet`
and `:cifar10` arguments of experiments/{resnet,alexnet,vgg,googlenet,nin}.py share.

A recipe is one complete trainer config (the paper's dataset, augmentation,
optimizer, schedule and test-time evaluation) that the experiment trains
with its usual variant mechanism (research/launch/multirun.py), one subfolder
per net; its claims put our top-1 and top-5 errors beside the paper's table.
Runtimes in the experiments' docstrings are estimates
(no GPU was lent where they were written): `estimate_hours`.
"""

import dataclasses

import ml_collections

from research.launch import multirun
from research.report import Claim

IMAGENET_TRAIN_IMAGES = 1_281_167   # ILSVRC-2012 (TFDS imagenet2012 "train").
# What a recipe may miss the paper's error by and still count as reproduced:
# one point, about the spread of published reproductions of these nets.
TOLERANCE = 0.01

# The estimate's assumptions (README, "Paper-scale recipes"): an NVIDIA A100's
# dense bf16 peak, of which convolutional training reaches about a third.
A100_BF16_FLOPS = 312e12
UTILISATION = 0.3
# One core's time per ImageNet training image: 5.9 ms measured for decoding a
# 500x375 JPEG with PIL on one core of the machines here, plus about 2 ms
# assumed for the random-resized crop, resize and flip.
DECODE_S = 0.008


def imagenet(config: ml_collections.ConfigDict, *, batch_size: int, num_epochs: float,
             train_pp: str, eval_pp: str, eval_views: tuple[str, ...],
             num_workers: int = 8) -> ml_collections.ConfigDict:
  """Sets `config`'s data, length and evaluation keys for ILSVRC-2012, in place.

  TFDS `imagenet2012` (prepared by the user: its variable-size JPEGs are
  decoded per example by the streaming pipeline, never held in memory),
  trained on "train" and evaluated on "validation" (the papers' numbers are
  validation errors), top-1 and top-5, for each of `eval_views`.
  `num_workers` is the grain worker processes per host: about the CPU cores
  a GPU host can spare for JPEG decoding.
  """
  config.data.name = "imagenet2012"
  config.data.train_split, config.data.eval_split = "train", "validation"
  config.data.pipeline = "streaming"
  config.data.num_workers = num_workers
  config.data.train_pp, config.data.eval_pp = train_pp, eval_pp
  config.eval_views = tuple(eval_views)
  config.batch_size = batch_size
  config.eval_batch_size = 256
  config.num_epochs, config.total_steps = float(num_epochs), 0
  config.eval_every_epochs = 10.0
  config.checkpoint_every_steps, config.checkpoint_every_epochs = 2_000, 0.0
  config.log_every_steps = 100
  config.eval_train_examples = 0
  return config


def scale_learning_rate(config: ml_collections.ConfigDict, lr: float, batch: int) -> None:
  """learning_rate = lr x batch_size / batch, kept as a reference to batch_size.

  Goyal et al. 2017's linear scaling rule (ResNet: 0.1 at batch 256): a
  later `--config.batch_size=1024` sets the learning rate to 0.4, and an
  explicit `--config.optimizer.learning_rate` still wins. Sweeps and variants
  set their keys on a resolved copy (`config.override`), where the rate no
  longer follows the batch: sweep both.
  """
  config.optimizer.learning_rate = config.get_ref("batch_size").to_float() * (lr / batch)


def train(config: ml_collections.ConfigDict, workdir: str, study_keys) -> dict:
  """Trains a one-net recipe into workdir/<model name> (so it resumes and is
  kept when finished, as every variant is); its metrics as `<model>/<metric>`."""
  return multirun.merge(multirun.run_variants(config, {config.model.name: {}}, workdir,
                                              study_keys=study_keys))


@dataclasses.dataclass(frozen=True)
class PaperError:
  """A paper's top-1 / top-5 error for one net (None: not reported)."""
  top1: float | None
  top5: float | None
  where: str   # e.g. "Table 3, 10-crop testing"


def metric(variant: str, view: str, views, k: int) -> str:
  """The name of a net's top-k accuracy for `view` among the config's eval views:
  `<net>/test/accuracy` for the first view, `<net>/test/<view>/accuracy` for others."""
  name = "accuracy" if k == 1 else f"top{k}_accuracy"
  return f"{variant}/test/{name}" if view == views[0] else f"{variant}/test/{view}/{name}"


def error_claims(source: str, paper: dict[str, PaperError], config, view: str | None = None,
                 variants: tuple[str, ...] | None = None) -> list[Claim]:
  """One claim per reported error of each trained net (`variants`, default
  `config_variants(config)`): ours (1 - accuracy for `view`, default the
  config's first view, where each recipe puts the paper's) at most TOLERANCE
  above the paper's."""
  views, claims = tuple(config.eval_views), []
  view = view or views[0]
  for variant in variants or config_variants(config):
    if variant not in paper:
      continue
    p = paper[variant]
    for k, value in ((1, p.top1), (5, p.top5)):
      if value is None:
        continue
      name = metric(variant, view, views, k)
      claims.append(Claim(
          source=f"{source}, {p.where}",
          statement=f"{variant} reaches the paper's top-{k} error ({view} evaluation on "
                    f"{config.data.eval_split}; ours: {multirun.budget_text(config)}).",
          paper=f"{value:.2%}",
          measure=lambda m, name=name: 1 - m[name],
          check=lambda e, value=value: e <= value + TOLERANCE,
          check_text=f"<= {value + TOLERANCE:.2%} (the paper's + {TOLERANCE:.0%})",
          fmt="{:.2%}"))
  return claims


def config_variants(config) -> tuple[str, ...]:
  """The nets a recipe trains: config.variants (or configurations) when the
  experiment has them, else the model's name."""
  for key in ("variants", "configurations"):
    if key in config:
      return tuple(config[key])
  return (config.model.name,)


def error_table(config, metrics: dict, paper: dict[str, PaperError]) -> str:
  """report.md's section: each net's error for each view beside the paper's."""
  views = tuple(config.eval_views)
  lines = ["## Our errors and the paper's", "",
           "| net | view | top-1 error | top-5 error | paper (top-1 / top-5) |",
           "|---|---|---|---|---|"]
  for variant in config_variants(config):
    p = paper.get(variant)
    ref = "—" if p is None else (
        " / ".join("—" if v is None else f"{v:.2%}" for v in (p.top1, p.top5)) + f" ({p.where})")
    for view in views:
      cells = [f"{1 - metrics[m]:.2%}" if m in metrics else "not measured"
               for m in (metric(variant, view, views, 1), metric(variant, view, views, 5))]
      lines.append(f"| {variant} | {view} | {cells[0]} | {cells[1]} | {ref} |")
  return "\n".join(lines) + "\n"


def estimate_hours(train_macs: float, images: float, gpus: int = 8,
                   cores_per_gpu: int = 8) -> dict[str, float]:
  """Estimated hours to train on `images` images (epochs x split size), an
  estimate, not a measurement; the larger of its two bounds limits the run:

  - compute: a training step costs about 3 forward passes (forward, and
    backward to the inputs and to the weights), 2 FLOPs per multiply-add of
    `train_macs` (the forward pass per image, research/models/summary.py), at
    UTILISATION of A100_BF16_FLOPS on each of `gpus` GPUs;
  - input: DECODE_S of one CPU core per image (JPEG decoding and the crops),
    on `cores_per_gpu` grain workers per GPU (0 for datasets held in memory).
  Evaluation and gradient communication are left out.
  """
  compute = images * 3 * 2 * train_macs / (gpus * A100_BF16_FLOPS * UTILISATION) / 3600
  decode = images * DECODE_S / (gpus * cores_per_gpu) / 3600 if cores_per_gpu else 0.0
  return {"compute": compute, "input": decode, "hours": max(compute, decode)}
