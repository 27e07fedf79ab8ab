"""What trained spatial transformers do, and their Table 1 beside the paper's
(Jaderberg et al. 2015, §4.1: Fig. 3 and Table 1 (left)), for experiments/stn.py.

`transformed_test_images` runs a trained ST model (research/models, its
features' "transformed": the sampler's output) on the first test images;
`write_table` writes the errors beside the paper's as markdown and a picture;
`failure_reason` says why an ST model can miss its baseline: noise of the
test set (paper_tables.difference_standard_error) or a transformer that has
not learnt the distortion. The pictures are stn_plots.py's.
"""

import os

import jax
import numpy as np

from research import models
from research.data import tfds_source
from research.eval import paper_tables, stn_plots
from research.train import checkpoint


def transformed_test_images(config, run_dir: str, n: int, name: str) -> dict:
  """The first n test images of a trained ST model's run, its transformer's
  outputs and its predictions: one block of stn_plots.pose_figure.

  Args:
    config: the run's trainer config (data.name, data.eval_split, model); its
      data are [0, 1] images (mean 0, std 1), as experiments/stn.py trains.
    run_dir: the run's workdir (its checkpoints are read).
    n: how many test images.
    name: the block's label (the dataset's, e.g. "RTS").

  Returns:
    {"name", "inputs" float32 [n, H, W, 1] in [0, 1], "outputs" float32
     [n, H', W', 1] (the sampler's), "predicted" int [n], "labels" int [n]}.
  """
  test = tfds_source.load_split(config.data.name, config.data.eval_split, config.data.data_dir)
  model = models.get_model(config.model.name, num_classes=test.num_classes,
                           **config.model.kwargs.to_dict())
  _, state = checkpoint.load_arrays(run_dir)
  images = test.images[:n].astype(np.float32) / 255.0  # The data's mean 0, std 1.
  logits, features = jax.jit(lambda p, x: model.apply({"params": p}, x))(
      state["params"], images)
  return {"name": name, "inputs": images, "outputs": np.asarray(features["transformed"]),
          "predicted": np.asarray(logits).argmax(-1), "labels": test.labels[:n]}


def write_table(workdir: str, title: str, row_labels, col_labels, ours, paper) -> str:
  """Writes table1.md (the title, then paper_tables.markdown's table) and table1.png
  (stn_plots.results_table) into workdir and prints the table; returns the PNG's path.
  ours, paper: float [rows, cols] errors in %, NaN where none."""
  table = paper_tables.markdown(row_labels, col_labels, ours, paper)
  with open(os.path.join(workdir, "table1.md"), "w") as f:
    f.write(f"{title}.\n\n{table}\n")
  print(f"{title}.\n\n{table}", flush=True)
  return stn_plots.results_table(row_labels, col_labels, ours, paper,
                                 os.path.join(workdir, "table1.png"), title=title)


def failure_reason(st_error: float, base_error: float, num_test: int | None) -> str:
  """Why an ST model's test error (a fraction) is not below its baseline's: within
  two standard errors of num_test images (None: unknown, no noise check), noise;
  else the transformer has likely not learnt to undo the distortion."""
  if num_test:
    se = paper_tables.difference_standard_error(st_error, base_error, num_test)
    if st_error - base_error <= 2 * se:
      return (f"the gap ({100 * (st_error - base_error):.1f}%) is within two standard errors "
              f"({200 * se:.1f}%) of {num_test:,} test images: noise, not a reversal")
  return ("the transformer may not yet have learned to undo this distortion in this short "
          "training (see the pose pictures), or its localisation net, sized from our reading "
          "of Appendix A, is too small for it")
