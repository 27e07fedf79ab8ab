"""The trainer's config keys and their defaults; experiments start from here.

Also `override`, the one way to set dotted keys (variants of a multi-run
experiment, sweep runs). The one form of a config check, `require`, lives in
research/errors.py, below every layer.
"""

import ml_collections
from ml_collections import config_dict


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
  # Per-channel pixel statistics ([0, 1] scale) to standardise with; empty:
  # the dataset's own, from research/data/datasets.py.
  c.data.mean = ()
  c.data.std = ()
  c.data.classes = ()  # Keep only these labels, remapped to 0..len-1; () keeps all.
  # The reader (research/data/inputs.py): "memory" decodes a split once, "streaming"
  # reads and decodes each batch's records (data that does not fit, ImageNet),
  # "auto" picks memory for fixed-size images that fit memory_budget_gb (logged).
  c.data.pipeline = "auto"
  c.data.memory_budget_gb = 8.0  # Decoded size (GB) of a split that auto keeps in memory.
  c.data.num_workers = 0         # Grain worker processes of the streaming reader (0: none).
  # CPU-side preprocessing per example, ops joined by "|" (research/data/preprocess.py),
  # e.g. "inception_crop(224)|flip_lr|pca_lighting(0.1)" and
  # "resize_small(256)|central_crop(224)"; "" keeps the images as stored.
  c.data.train_pp = ""
  c.data.eval_pp = ""

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
  c.optimizer.name = "adam"          # sgd | adam | adamw | rmsprop
  c.optimizer.learning_rate = 1e-3
  c.optimizer.momentum = 0.9         # sgd
  c.optimizer.nesterov = False       # sgd
  c.optimizer.b1 = 0.9               # adam, adamw
  c.optimizer.b2 = 0.999             # adam, adamw; rmsprop: its decay
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "constant"  # constant | cosine | step | exponential (train/optim.py)
  c.optimizer.warmup_steps = 0
  c.optimizer.warmup = "linear"         # linear: warmup_factor x lr up to lr; constant: at it
  c.optimizer.warmup_factor = 0.0       # The warm-up's (starting) lr as a fraction of lr.
  c.optimizer.boundaries = (0.5, 0.75)  # step: fractions of training
  c.optimizer.decay_factor = 0.1        # step, exponential: lr multiplier at each decay
  c.optimizer.decay_every = 0.0         # exponential: fraction of training between decays

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

  # The network's arithmetic (research/train/precision.py): "float32" | "bfloat16"
  # (bf16 compute; parameters, optimizer state, batch-norm statistics and the
  # loss stay float32). Every objective follows it.
  c.compute_dtype = "float32"
  # Which convolution computes the models' nn.Conv layers (research/models/conv_impl.py):
  # "xla" (lax) | "onednn" (oneDNN on the CPU backend, lax on GPU/TPU; issue 15). "xla"
  # here so that runs recorded before issue 15 reproduce; experiments rerun since choose.
  c.conv_impl = "xla"

  c.label_smoothing = 0.0
  c.aux_loss_weight = 0.0       # GoogLeNet's auxiliary classifiers: 0.3.
  c.eval_train_examples = 0     # > 0: also evaluate on this many training examples.
  # Test-time views of classification evals (research/ops/views.py): "central",
  # "central_crop(s)", "ten_crop(s)" (AlexNet §4.1), "dense(q1,q2,...)" (VGG §3.2,
  # models with FC layers as convolutions). Metrics <split>/accuracy, top5_accuracy
  # are the first view's, <split>/<view>/accuracy etc. the others'.
  c.eval_views = ("central",)

  # Intervals in steps, or in epochs when the *_epochs key is > 0.
  c.log_every_steps = 100
  c.eval_every_steps = 0        # 0: evaluate at the end only.
  c.eval_every_epochs = 0.0
  c.checkpoint_every_steps = 1000
  c.checkpoint_every_epochs = 0.0
  c.keep_checkpoints = 3
  return c


def override(config: ml_collections.ConfigDict, overrides: dict, *,
             what: str = "Override") -> ml_collections.ConfigDict:
  """A copy of `config` with dotted keys set, e.g. {"model.kwargs.activation": "tanh"}.

  Only existing keys can be set, with ConfigDict's type checks; a list may
  set a tuple key (JSON, which sweeps store overrides in, has no tuples).
  `config` itself is not changed.

  Raises:
    ValueError: a key the config does not have, or a value of the wrong type;
      the message starts with `what` (e.g. "Sweep override") and names the key.
  """
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"{what} {key}={value!r}: the config has no key {key!r}. See the keys "
                       "with `python launch.py --config=... --print_config`.")
    if isinstance(node[leaf], tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      node[leaf] = value
    except TypeError as e:
      raise ValueError(f"{what} {key}={value!r}: {e}") from e
  return config
