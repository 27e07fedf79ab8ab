"""The trainer's input splits: decoded into memory, or streamed, chosen per split.

`config.data.pipeline`:
  "memory"     decode the whole split once (reader.decode), gather batches by
               index: fastest, for data that fits (Fashion-MNIST, CIFAR-10)
  "streaming"  read and decode each batch's records (streaming.StreamingSplit),
               in `data.num_workers` grain worker processes: ImageNet
  "auto"       memory when the split's images have a fixed stored size and
               the decoded split fits `data.memory_budget_gb`, else streaming;
               the choice and its reason are logged in one line

Both apply `data.train_pp` / `data.eval_pp` (research/data/preprocess.py) per
example with the same generators, so they give the same batches.
"""

from absl import logging
import ml_collections
import numpy as np

from research.data import pipeline, preprocess, reader, streaming, tfds_source
from research.data.reader import ArraySplit
from research.errors import require

PIPELINES = ("auto", "memory", "streaming")
# pca_lighting's colour statistics from this many training images, for RGB
# datasets without published ones.
_PCA_SAMPLE = 1000


def validate(data: ml_collections.ConfigDict) -> None:
  """Stops bad input keys before any work, naming the key (ConfigError)."""
  require(data.pipeline in PIPELINES, "data.pipeline", data.pipeline,
          f"choose one of {PIPELINES}.")
  require(data.num_workers >= 0, "data.num_workers", data.num_workers,
          "must be >= 0 (0: read in the training process).")
  require(data.memory_budget_gb > 0, "data.memory_budget_gb", data.memory_budget_gb,
          "must be > 0.")
  for key in ("train_pp", "eval_pp"):
    try:
      preprocess.parse(data[key])
    except ValueError as e:
      require(False, f"data.{key}", data[key], str(e))


def _image_key(info) -> str:
  return (info.supervised_keys or ("image",))[0]


def _lighting_eigh(data, source, info, channels: int):
  """(eigvals, eigvecs) for pca_lighting, or None when no pp uses it."""
  ops = [name for key in ("train_pp", "eval_pp") for name, _ in preprocess.parse(data[key])]
  if "pca_lighting" not in ops:
    return None
  require(channels == 3, "data.train_pp", data.train_pp,
          f"pca_lighting needs RGB images; {data.name}'s have {channels} channel(s).")
  if data.name.partition(":")[0].partition("/")[0] == "imagenet2012":
    logging.info("pca_lighting: ImageNet's published RGB eigen-decomposition (AlexNet §4.1).")
    return preprocess.IMAGENET_EIGVALS, preprocess.IMAGENET_EIGVECS
  n = min(_PCA_SAMPLE, len(source))
  eigh = preprocess.rgb_covariance_eigh(
      [r[_image_key(info)] for r in reader.read_records(source, range(n))])
  logging.info("pca_lighting: the RGB covariance of the first %d images of %s[%s].", n,
               data.name, data.train_split)
  return eigh


def choose(data, num_examples: int, stored_shape: tuple) -> tuple[str, str]:
  """(pipeline, reason): data.pipeline, or for "auto" memory when the stored
  images have a fixed size and num_examples of them fit data.memory_budget_gb."""
  if data.pipeline != "auto":
    return data.pipeline, f"data.pipeline={data.pipeline!r}"
  if None in stored_shape:
    return "streaming", f"its images vary in size {stored_shape}"
  gb = num_examples * int(np.prod(stored_shape)) / 1e9
  if gb > data.memory_budget_gb:
    return "streaming", (f"decoded it would take {gb:.1f} GB, over data.memory_budget_gb="
                         f"{data.memory_budget_gb}")
  return "memory", (f"decoded it takes {gb:.2f} GB, within data.memory_budget_gb="
                    f"{data.memory_budget_gb}")


def open_split(data: ml_collections.ConfigDict, split: str, *,
               rgb_eigh=None) -> pipeline.InputSplit:
  """`split` of config.data's dataset as the trainer reads it (see the module doc).

  Raises (before decoding anything) ConfigError: preprocessing that does not
  end at a fixed size on variable-size images, or data.classes with
  streaming. train_pp and eval_pp may end at different sizes (e.g. 224 and
  256 for config.eval_views' ten_crop(224)); the eval step is traced on the
  eval size before any work.
  """
  source, info = tfds_source.open_source(data.name, split, data.data_dir,
                                         download=data.download)
  stored = tuple(info.features[_image_key(info)].shape)
  out = {key: preprocess.output_hw(data[key], stored[:2]) for key in ("train_pp", "eval_pp")}
  for key, hw in out.items():
    require(None not in hw, f"data.{key}", data[key],
            f"{data.name}'s images vary in size {stored}, and batches need one size: end "
            "it with a crop or resize, e.g. 'inception_crop(224)|flip_lr' (train_pp) or "
            "'resize_small(256)|central_crop(224)' (eval_pp).")
  mode, reason = choose(data, len(source), stored)
  logging.info("Input %s[%s]: %s (%s).", data.name, split,
               "decoded into memory" if mode == "memory" else
               f"streamed, {data.num_workers} worker process(es)", reason)
  if mode == "streaming":
    require(not len(data.classes), "data.classes", data.classes,
            "needs every label of the split, which the streaming reader does not read "
            "ahead; use data.pipeline='memory' or leave data.classes empty.")
    return streaming.StreamingSplit(source, info, train_pp=data.train_pp,
                                    eval_pp=data.eval_pp, rgb_eigh=rgb_eigh,
                                    num_workers=data.num_workers)
  decoded = reader.select_classes(reader.decode(source, info, what=f"{data.name}[{split}]"),
                                  data.classes)
  return pipeline.MemorySplit(decoded, data.train_pp, data.eval_pp, rgb_eigh)


def training_inputs(config: ml_collections.ConfigDict,
                    train_data: ArraySplit | pipeline.InputSplit | None = None,
                    with_eval: bool = True):
  """(train split, {"test": ..., "train_eval": ...}) for the trainer.

  train_data: the caller's own training split (kept as given, an ArraySplit
  with config.data's preprocessing); default config.data.train_split.
  "test" is config.data.eval_split (when `with_eval`); "train_eval" the first
  config.eval_train_examples training examples, evaluated like the test split.
  """
  data = config.data
  if train_data is None:
    source, info = tfds_source.open_source(data.name, data.train_split, data.data_dir,
                                           download=data.download)
    rgb_eigh = _lighting_eigh(data, source, info, info.features[_image_key(info)].shape[-1])
    train = open_split(data, data.train_split, rgb_eigh=rgb_eigh)
  elif isinstance(train_data, ArraySplit):
    rgb_eigh = None
    if "pca_lighting" in data.train_pp + data.eval_pp:
      rgb_eigh = preprocess.rgb_covariance_eigh(list(train_data.images[:_PCA_SAMPLE]))
    train = pipeline.MemorySplit(train_data, data.train_pp, data.eval_pp, rgb_eigh)
  else:
    train, rgb_eigh = train_data, getattr(train_data, "rgb_eigh", None)
  evals = {}
  if with_eval:
    evals["test"] = open_split(data, data.eval_split, rgb_eigh=rgb_eigh)
    if config.eval_train_examples:
      evals["train_eval"] = train.take(config.eval_train_examples)
  return train, evals

