"""How transferable are features (Yosinski, Clune, Bengio & Lipson 2014), Fig. 2.

(Over 200 lines: Fig. 2's four conditions at seven depths and the fine-tuning
recipe are two studies, each with its variants and claims.)

The method, as the paper's §3-4 give it: split the classes into two halves, A
and B, and train an 8-layer network on each ("baseA", "baseB"). For each n
from 1 to 7 make four new networks for task B whose first n layers are copied
from a base network and whose upper layers are new (randomly initialised) and
trained on B:
  BnB   first n layers from baseB, frozen: can the upper layers re-learn
        what they had, on top of the layers they were trained with?
  BnB+  the same, but all layers fine-tuned on B;
  AnB   first n layers from baseA, frozen: are A's layer-n features general
        enough for B?
  AnB+  the same, fine-tuned.
The paper (ImageNet, 500 + 500 classes, AlexNet-like) finds: AnB degrades as
n grows (upper-layer features are specific to their task); BnB dips in the
middle (n = 3-5, "fragile co-adaptation" of neighbouring layers that the
upper layers cannot re-learn); BnB+ matches baseB; and AnB+ beats baseB at
every n (transferred features, even fine-tuned, improve generalisation).

At our scale: Fashion-MNIST's 10 classes split at random (seed 0) into
A = (0, 1, 5, 8, 9) = T-shirt, trouser, sandal, bag, ankle boot and
B = (2, 3, 4, 6, 7) = pullover, dress, coat, shirt, sneaker; 30,000
training images per task. The random split happened to put the confusable
upper-body garments in one half, so we transfer *to* that half: a first run
the other way round had baseB at 0.980 test accuracy and its first
transferred networks (n = 1, 2) all within 0.3 points of it (a ceiling),
whereas the paper's task B is far from solved (ImageNet, about 62% top-1).

The network is ZF Net's layout (5 convolutions, fc6, fc7, fc8: the paper's
8 layers) narrowed to run 34 trainings on a CPU: widths 16-32-64-64-32,
fc 256, a 5x5 stride-2 first layer, no contrast normalisation, dropout 0.5
in fc6-fc7. Every network trains the same way (Adam 1e-3 with cosine decay,
700 steps of 64, 1.5 epochs). Freezing is `config.freeze` and copying
`config.init_from` (research/train/transfer.py); each network trains in its
own subfolder (research/launch/multirun.py), so a killed run resumes where
it stopped. One seed per network: differences under about 0.5 points are
noise.

The practical recipe (the paper's conclusion, §5): a network pretrained on
one dataset (all of Fashion-MNIST), its last layer replaced, fine-tuned on
another, small one (the 4,000 training digits of `mnist_5k`), against the same
network trained from scratch on those digits, and against training only the
new last layer on the frozen pretrained features.

Command (34 runs; about 35 minutes on 2 CPU cores shared with other jobs):

  python launch.py --config=experiments/transfer.py --workdir=runs/transfer

Expected (`transfer.png` is Fig. 2 at our scale, `recipe.png` the recipe):
baseB 0.837; AnB falls steadily from 0.84 (n = 1) to 0.57 (n = 7), far
more than the paper's drop, as Fashion-MNIST's halves are less alike than
ImageNet's random halves; AnB+ about 0.846 at every n, above baseB but
below BnB+ (about 0.855): our base networks are not trained to convergence,
so copying and training on gains from the extra training alone, and the
paper's control (BnB+ = baseB) does not hold here; no BnB dip (0.83-0.85,
lowest at n = 1). Recipe: fine-tuned 0.956 vs scratch 0.958 on the digits
(fine-tuning gets there sooner, not higher; 4,000 digits suffice for this
network), frozen Fashion-MNIST features only 0.44.
"""

import os

import ml_collections
import numpy as np

from research import models
from research.eval import plots
from research.launch import multirun
from research.report import Claim
from research.train import config as config_lib, metrics as metrics_lib, transfer
from research.errors import require


LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")  # fc8: the classifier.
# np.random.default_rng(0).permutation(10) halves; B is the harder one (see below).
TASK_A, TASK_B = (0, 1, 5, 8, 9), (2, 3, 4, 6, 7)
CONDITIONS = ("BnB", "BnB+", "AnB", "AnB+")


# This experiment's own config keys (research/launch/multirun.py's schema).
STUDY_KEYS = ("task_a", "task_b", "layers", "conditions", "recipe", "arg")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  config.model.name = "zfnet_small"
  config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs(
      "zfnet_small", widths=(16, 32, 64, 64, 32), fc_width=256, conv1_stride=2, lrn=False))
  config.batch_size = 64
  config.total_steps, config.num_epochs = 700, 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 350
  config.task_a, config.task_b = TASK_A, TASK_B
  config.layers = tuple(range(1, len(LAYERS) + 1))  # The n of Fig. 2.
  config.conditions = CONDITIONS
  config.recipe = ml_collections.ConfigDict(dict(
      data="mnist_5k", total_steps=500, eval_every_steps=50))  # total_steps 0: no recipe.
  if arg:
    raise ValueError(f"Unknown argument {arg!r} for experiments/transfer.py; use ''.")
  config.arg = ""
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  from research.train import trainer
  trainer.validate_config(config)
  require(sorted(set(config.task_a) | set(config.task_b)) == sorted(config.task_a + config.task_b),
          "task_a", config.task_a,
          f"must not overlap task_b={config.task_b} (nor repeat a class).")
  require(all(1 <= n <= len(LAYERS) for n in config.layers), "layers", config.layers,
          f"each n in 1..{len(LAYERS)}.")
  require(set(config.conditions) <= set(CONDITIONS), "conditions", config.conditions,
          f"choose from {CONDITIONS}.")


# --- Fig. 2: the base networks and the 4 x 7 transferred ones ----------------


def _transferred(config, base_dir: str, n: int, fine_tune: bool) -> dict:
  """Overrides for a task-B network whose first n layers come from base_dir;
  its upper layers start from a new random initialisation (another seed)."""
  first_n = transfer.layer_regex(LAYERS[:n])
  return {"data.classes": config.task_b, "seed": 1,
          "init_from.workdir": base_dir, "init_from.include_regex": first_n,
          "freeze": "" if fine_tune else first_n}


def fig2_variants(config, workdir: str) -> dict[str, dict]:
  """baseA, baseB, then BnB1, BnB+1, AnB1, AnB+1, BnB2, ... in that order."""
  variants = {"baseA": {"data.classes": config.task_a},
              "baseB": {"data.classes": config.task_b}}
  for n in config.layers:
    for condition in config.conditions:
      base = os.path.join(workdir, "baseA" if condition.startswith("A") else "baseB")
      variants[f"{condition}{n}"] = _transferred(config, base, n, condition.endswith("+"))
  return variants


# --- The recipe: pretrained on Fashion-MNIST, fine-tuned on 4,000 digits ----


def recipe_variants(config, workdir: str) -> dict[str, dict]:
  # The digits' own statistics (empty: data/datasets.py's), not Fashion-MNIST's.
  digits = {"data.name": config.recipe.data, "data.mean": (), "data.std": (),
            "total_steps": config.recipe.total_steps,
            "eval_every_steps": config.recipe.eval_every_steps}
  features = transfer.layer_regex(LAYERS)  # Everything but the classifier fc8.
  pretrained = {"init_from.workdir": os.path.join(workdir, "fashion10"),
                "init_from.include_regex": features, "seed": 1}
  return {"fashion10": {},
          "digits_scratch": {**digits, "seed": 1},
          "digits_finetuned": {**digits, **pretrained},
          "digits_frozen": {**digits, **pretrained, "freeze": features}}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  results = multirun.run_variants(config, fig2_variants(config, workdir), workdir,
                                  study_keys=STUDY_KEYS)
  metrics = multirun.merge(results)
  _plot_fig2(config, metrics, os.path.join(workdir, "transfer.png"))
  if not config.recipe.total_steps:  # 0: Fig. 2 only.
    return metrics
  results = multirun.run_variants(config, recipe_variants(config, workdir), workdir,
                                  study_keys=STUDY_KEYS)
  metrics.update(multirun.merge(results))
  curves = {}
  for name in ("digits_scratch", "digits_finetuned", "digits_frozen"):
    label = f"{name.split('_')[1]} (final {metrics[f'{name}/test/accuracy']:.3f})"
    curves[label] = metrics_lib.series(os.path.join(workdir, name), "test/accuracy")
  plots.plot_curves(curves, os.path.join(workdir, "recipe.png"), xlabel="step",
                    ylabel="test accuracy", ylim=(0.8, 1.0),
                    title="mnist_5k (4,000 digits): pretrained on Fashion-MNIST vs scratch")
  return metrics


def _plot_fig2(config, metrics: dict, path: str) -> None:
  """Test accuracy on task B against the number of copied layers n (Fig. 2)."""
  accuracies = {}
  for condition in ("BnB", "BnB+", "AnB", "AnB+"):
    ns = [n for n in config.layers if f"{condition}{n}/test/accuracy" in metrics]
    accuracies[condition] = (ns, [metrics[f"{condition}{n}/test/accuracy"] for n in ns])
  plots.transfer_figure(accuracies, metrics["baseB/test/accuracy"],
                        (list(config.layers), [f"{n}\n{LAYERS[n - 1]}" for n in config.layers]),
                        path)


# --- Claims ------------------------------------------------------------------


def _accuracies(m: dict, condition: str, ns) -> np.ndarray:
  """Test accuracies of condition at each n; KeyError (claim "not measured") if none."""
  if not ns:
    raise KeyError(f"{condition} at no n")
  return np.array([m[f"{condition}{n}/test/accuracy"] for n in ns])


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  ns = tuple(config.layers)
  middle = tuple(n for n in ns if n in (3, 4, 5))
  base_b = lambda m: m["baseB/test/accuracy"]
  return [
      Claim(source="Yosinski et al. 2014, §4.1, Fig. 2 (AnB+)",
            statement="Transfer + fine-tuning is at least as good as training on B alone: "
                      "AnB+ minus baseB, averaged over n.",
            paper="AnB+ above baseB at every n (about +1 to +2 points top-1)",
            measure=lambda m: float(np.mean(_accuracies(m, "AnB+", ns) - base_b(m))),
            check=lambda d: d >= 0, check_text=">= 0", fmt="{:+.4f}"),
      Claim(source="Yosinski et al. 2014, §4.1, Fig. 2 (AnB+ vs BnB+)",
            statement="... and the gain is the transfer's, not extra training: AnB+ is at least "
                      "as good as BnB+, the control trained as long (mean over n).",
            paper="AnB+ above BnB+ (BnB+ stays at baseB)",
            measure=lambda m: float(np.mean(_accuracies(m, "AnB+", ns)
                                            - _accuracies(m, "BnB+", ns))),
            check=lambda d: d >= 0, check_text=">= 0", fmt="{:+.4f}"),
      Claim(source="Yosinski et al. 2014, §4.1, Fig. 2 (AnB)",
            statement="Frozen features from task A get worse for B as n grows toward the top "
                      "(specificity): AnB at the top n minus AnB at n = 1.",
            paper="AnB falls from about baseB at n = 1-2 to about -9 points at n = 7",
            measure=lambda m: float(_accuracies(m, "AnB", ns[-1:])[0]
                                    - _accuracies(m, "AnB", ns[:1])[0]),
            check=lambda d: d < 0, check_text="< 0", fmt="{:+.4f}"),
      Claim(source="Yosinski et al. 2014, §4.1, Fig. 2 (BnB)",
            statement="Fragile co-adaptation: BnB dips in the middle layers and recovers at "
                      "the top: the worst BnB at n = 3-5 minus the worse of BnB at the ends.",
            paper="a dip of about 2-3 points at n = 4-5; none at n = 1-2, 6-7",
            measure=lambda m: float(np.min(_accuracies(m, "BnB", middle)) - min(
                _accuracies(m, "BnB", (ns[0], ns[-1])))),
            check=lambda d: d < -0.005, check_text="< -0.005 (beyond single-seed noise)",
            fmt="{:+.4f}"),
      Claim(source="Yosinski et al. 2014, §4.1, Fig. 2 (BnB+)",
            statement="Fine-tuning removes the dip: BnB+ matches baseB (mean |BnB+ - baseB| "
                      "over n).",
            paper="BnB+ = baseB within noise",
            measure=lambda m: float(np.mean(np.abs(_accuracies(m, "BnB+", ns) - base_b(m)))),
            check=lambda d: d < 0.01, check_text="< 0.01", fmt="{:.4f}"),
      Claim(source="Yosinski et al. 2014, §4.2, Fig. 3 (dissimilar tasks)",
            statement="Frozen features transfer worse between dissimilar tasks: the top-layer "
                      "features of Fashion-MNIST for digits (new classifier only, relative to "
                      "digits from scratch) keep less than A's for B (AnB7 / baseB).",
            paper="the drop at n = 7 is larger for man-made -> natural than for random halves",
            measure=lambda m: (m["digits_frozen/test/accuracy"] / m["digits_scratch/test/accuracy"]
                               - m[f"AnB{ns[-1]}/test/accuracy"] / base_b(m)),
            check=lambda d: d < 0, check_text="< 0 (relative accuracies)", fmt="{:+.3f}"),
      Claim(source="Yosinski et al. 2014, §5 (the practical recipe)",
            statement="Pretrained on Fashion-MNIST, last layer replaced, fine-tuned on 4,000 "
                      "MNIST digits beats the same network trained from scratch on them "
                      "(ours: test accuracy difference on mnist_5k's 1,000 test digits).",
            paper="transferred features improve generalisation",
            measure=lambda m: (m["digits_finetuned/test/accuracy"]
                               - m["digits_scratch/test/accuracy"]),
            check=lambda d: d > 0, check_text="> 0", fmt="{:+.4f}"),
  ]
