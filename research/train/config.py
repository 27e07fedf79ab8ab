"""The trainer's config keys and their defaults; experiments start from here."""

import ml_collections
from ml_collections import config_dict

# Fashion-MNIST's pixel mean and standard deviation (training split, [0, 1] scale).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


def base_config() -> ml_collections.ConfigDict:
  """Every key `research.train.trainer` and the classification objective read, with defaults."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.data_dir = config_dict.placeholder(str)  # Default: $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.data.download = False
  c.data.mean = FASHION_MNIST_MEAN
  c.data.std = FASHION_MNIST_STD
  c.data.classes = ()  # Keep only these labels, remapped to 0..len-1; () keeps all.

  # What is trained, by name (research/train/objectives/): classification |
  # adversarial | gan; an objective's own keys go beside the name.
  c.objective = ml_collections.ConfigDict()
  c.objective.name = "classification"

  c.model = ml_collections.ConfigDict()
  c.model.name = "lenet5"
  c.model.kwargs = ml_collections.ConfigDict()

  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = 10.0  # Or total_steps; exactly one of the two is > 0.
  c.total_steps = 0

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"          # sgd | adam | adamw
  c.optimizer.learning_rate = 1e-3
  c.optimizer.momentum = 0.9         # sgd
  c.optimizer.nesterov = False       # sgd
  c.optimizer.b1 = 0.9               # adam, adamw
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "constant"  # constant | cosine | step
  c.optimizer.warmup_steps = 0
  c.optimizer.boundaries = (0.5, 0.75)  # step: fractions of training
  c.optimizer.decay_factor = 0.1        # step: lr multiplier at each boundary

  # Augmentations by name, applied per example in the step (research/data/augment.py),
  # e.g. "crop_pad4,flip_lr"; "" for none.
  c.augment = ""

  # Transfer (research/train/transfer.py): parameters whose path ("conv1/kernel")
  # matches the `freeze` regex are never updated ("" freezes nothing); a new run
  # copies the parameters matching init_from.include_regex ("" matches all) from
  # the newest checkpoint of init_from.workdir ("" starts from scratch).
  c.freeze = ""
  c.init_from = ml_collections.ConfigDict()
  c.init_from.workdir = ""
  c.init_from.include_regex = ""

  c.label_smoothing = 0.0
  c.aux_loss_weight = 0.0       # GoogLeNet's auxiliary classifiers: 0.3.
  c.eval_train_examples = 0     # > 0: also evaluate on this many training examples.

  # Intervals in steps, or in epochs when the *_epochs key is > 0.
  c.log_every_steps = 100
  c.eval_every_steps = 0        # 0: evaluate at the end only.
  c.eval_every_epochs = 0.0
  c.checkpoint_every_steps = 1000
  c.checkpoint_every_epochs = 0.0
  c.keep_checkpoints = 3
  return c
