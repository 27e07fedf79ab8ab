"""Tiny datasets in TFDS coco's feature layouts, prepared offline where a user's copy
would be (<data_dir>/<name>/<config>/<version>): coco/2017's (the detection reader's
tests) and coco_captions/2014's (the caption reader's and caption generation's).

A test subclasses `CocoLayout` or `CocoCaptionsLayout` and writes `_generate_examples`
(each example's objects made by `coco_object`); `prepare_layout` prepares it, SPLITS
({split: what its `_generate_examples` takes}) given, into a data_dir; `prepare`
prepares any builder offline."""

import os

import numpy as np
import tensorflow_datasets as tfds


def prepare(builder_class, root, **kwargs) -> str:
  """Prepares builder_class into the data_dir `root` (array_record, nothing
  downloaded); kwargs go to the builder (e.g. config="2017"). Returns its folder."""
  builder = builder_class(data_dir=str(root), file_format="array_record", **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder.data_dir


def prepare_layout(layout, root, **attrs) -> str:
  """Prepares the CocoLayout subclass `layout`, its class attributes `attrs` set (e.g.
  SPLITS), into the data_dir `root` where a user's copy would be,
  <root>/<DATASET>/<config>/<version> (checked); returns root."""
  config = layout.BUILDER_CONFIGS[0]
  # A subclass's TFDS name comes from its class name: give it the dataset's.
  builder = type(layout.DATASET, (layout,), {"name": layout.DATASET, **attrs},
                 skip_registration=True)
  path = prepare(builder, root, config=config.name)
  assert path == os.path.join(str(root), layout.DATASET, config.name, str(config.version)), path
  return str(root)


def coco_object(object_id: int, bbox, label: int, is_crowd: bool = False) -> dict:
  """One entry of an example's "objects": bbox normalised [ymin, xmin, ymax, xmax]."""
  return {"id": object_id, "area": 1, "bbox": np.array(bbox, np.float32), "label": label,
          "is_crowd": is_crowd}


class CocoLayout(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """TFDS coco/2017's features (TFDS's coco.py `_info`): image (JPEG), image/filename,
  image/id and objects {id, area, bbox, label, is_crowd}, label a ClassLabel(**LABEL)."""

  name = DATASET = "coco"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="2017", version="1.1.0")]
  LABEL = {"names": ("person", "bicycle", "car")}
  SPLITS = {}

  def _features(self) -> dict:
    return {
        "image": tfds.features.Image(encoding_format="jpeg"),
        "image/filename": tfds.features.Text(),
        "image/id": np.int64,
        "objects": tfds.features.Sequence({
            "id": np.int64, "area": np.int64, "bbox": tfds.features.BBoxFeature(),
            "label": tfds.features.ClassLabel(**self.LABEL), "is_crowd": np.bool_}),
    }

  def _info(self):
    return tfds.core.DatasetInfo(builder=self,
                                 features=tfds.features.FeaturesDict(self._features()))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(rows) for split, rows in self.SPLITS.items()}


class CocoCaptionsLayout(CocoLayout, skip_registration=True):
  """TFDS coco_captions/2014's features: coco's (80 classes) plus captions {text, id}."""

  name = DATASET = "coco_captions"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="2014", version="1.1.0")]
  LABEL = {"num_classes": 80}

  def _features(self) -> dict:
    return {**super()._features(),
            "captions": tfds.features.Sequence({"text": np.str_, "id": np.int64})}
