"""A streamed ImageNet run of seconds, for tests: TFDS's mock `imagenet2012`
(variable-size images such as 47x17x3) through launch.py. Run it inside
`tfds.testing.mock_data` (tests/test_streaming.py does).

Arguments: (none) read in the training process; `workers` 2 grain worker
processes; `memory` decoded into memory first (the same batches).
"""

import ml_collections

from research.train import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.base_config()
  c.arg = arg or ""
  c.data.name = "imagenet2012"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.data.pipeline = "memory" if arg == "memory" else "streaming"
  c.data.num_workers = 2 if arg == "workers" else 0
  c.data.train_pp = "inception_crop(32)|flip_lr|pca_lighting(0.1)"
  c.data.eval_pp = "resize_small(36)|central_crop(32)"
  c.model.name = "cnn"
  c.model.kwargs = ml_collections.ConfigDict(
      {"filters": (4, 4), "kernels": (3, 3), "dropout": 0.3})
  c.optimizer.name, c.optimizer.learning_rate = "sgd", 0.01
  c.batch_size, c.eval_batch_size = 8, 8
  c.num_epochs, c.total_steps = 0.0, 6
  c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 2, 3, 2
  c.eval_train_examples = 8
  return c
