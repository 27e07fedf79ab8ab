"""The detection reader (issue 16) on TFDS voc/2007 and coco/2017 layouts: pixel boxes,
a prepared COCO copy, and bad annotations in a user's data refused in one line.
`_voc_record` and `_mock_voc` also serve the detectors' experiment tests."""

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from research.data import detection
from research.ops import boxes as box_ops
from tests import coco_layouts


class _Records(list):
  """A data source of given records (tfds.data_source's interface)."""
  dataset_info = None

  def __getitems__(self, keys):
    return [self[k] for k in keys]


def _voc_record(boxes, labels, difficult, size=(40, 60)):
  return {"image": np.zeros((*size, 3), np.uint8), "image/filename": b"000001.jpg",
          "objects": {"bbox": np.asarray(boxes, np.float32).reshape(-1, 4),
                      "label": np.asarray(labels, np.int64),
                      "is_difficult": np.asarray(difficult, bool),
                      "is_truncated": np.zeros(len(labels), bool),
                      "pose": np.zeros(len(labels), np.int64)},
          "labels": sorted(set(labels)), "labels_no_difficult": sorted(set(labels))}


def _mock_voc(records):
  def as_data_source(builder, split, **kwargs):
    del split, kwargs
    source = _Records(records)
    source.dataset_info = builder.info
    return source
  return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=as_data_source)


def test_reader_maps_voc_2007_records_to_pixel_boxes(tmp_path):
  records = [_voc_record([[0.1, 0.5, 0.6, 1.0], [0.0, 0.0, 1.0, 0.25]], [14, 0], [False, True]),
             _voc_record([], [], [])]
  with _mock_voc(records):
    data = detection.open_detection("voc/2007", "test", str(tmp_path))
  assert data.layout == "voc" and data.num_classes == 20
  assert data.class_names[:2] == ("aeroplane", "bicycle") and data.class_names[14] == "person"
  e = data[0]
  np.testing.assert_allclose(e.boxes, [[4, 30, 24, 60], [0, 0, 40, 15]], atol=1e-5)
  assert e.labels.tolist() == [14, 0] and e.difficult.tolist() == [False, True]
  assert not e.crowd.any() and e.filename == "000001.jpg" and e.image_id == 0
  batch = data.batch([0, 1])
  assert batch["labels"].tolist() == [[14, 0], [-1, -1]]
  assert batch["valid"].tolist() == [[True, True], [False, False]]


def test_tfds_random_voc_mock_is_refused_for_its_unequal_lengths(tmp_path):
  # tfds.testing.mock_data draws each sequence's length on its own. Depending on
  # the mock's path, TFDS's decoder finds it first, or our own count check does.
  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.raises(detection.AnnotationError,
                       match=r"voc/2007\[train\] example 0 (cannot be decoded: .*length of all "
                             r"elements of one sequence should be the same|\(.*\): its objects' "
                             r"fields differ in number \(bbox 15, .*label 11)"):
      detection.open_detection("voc/2007", "train", str(tmp_path))


class _CocoScenes(coco_layouts.CocoLayout, skip_registration=True):
  """coco/2017's layout; SPLITS: per split, [[(bbox, label, is_crowd), ...] per image]."""

  def _generate_examples(self, images):
    for i, objects in enumerate(images):
      yield i, {"image": Image.fromarray(np.full((50, 80, 3), 40 * i, np.uint8)),
                "image/filename": f"{i:012d}.jpg", "image/id": 1000 + i,
                "objects": [coco_layouts.coco_object(7 * i + j, b, label, crowd)
                            for j, (b, label, crowd) in enumerate(objects)]}


def _coco_dir(tmp_path, objects):
  return coco_layouts.prepare_layout(_CocoScenes, tmp_path, SPLITS=objects)


def test_reader_opens_a_prepared_coco_2017_copy(tmp_path):
  data_dir = _coco_dir(tmp_path, {"validation": [
      [([0.2, 0.25, 0.6, 0.5], 2, False), ([0.0, 0.0, 1.0, 1.0], 0, True)], []]})
  data = detection.open_detection("coco/2017", "validation", data_dir)
  assert data.layout == "coco" and data.class_names == ("person", "bicycle", "car")
  e = data[0]
  assert e.image.shape == (50, 80, 3) and e.image_id == 1000 and e.filename == "000000000000.jpg"
  np.testing.assert_allclose(e.boxes, [[10, 20, 30, 40], [0, 0, 50, 80]], atol=1e-4)
  assert e.labels.tolist() == [2, 0] and e.crowd.tolist() == [False, True]
  coco = detection.to_coco(data)
  assert [im["id"] for im in coco["images"]] == [1000, 1001]
  assert coco["images"][0]["height"] == 50  # Read from the JPEG header, not decoded.
  assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1]


def test_a_zero_area_box_in_user_data_is_a_one_line_error(tmp_path):
  data_dir = _coco_dir(tmp_path, {"train": [[([0.1, 0.1, 0.5, 0.5], 0, False)],
                                            [([0.1, 0.3, 0.5, 0.3], 1, False)]]})
  with pytest.raises(box_ops.InvalidBoxError) as e:
    detection.open_detection("coco/2017", "train", data_dir)
  assert str(e.value).count("\n") == 0
  assert "coco/2017[train] example 1 ('000000000001.jpg'): box 0 " in str(e.value)
  assert "has zero or negative width (xmax <= xmin)" in str(e.value)
  assert str(e.value).endswith("correct or remove that object's annotation.")


def test_labels_outside_the_class_list_are_refused(tmp_path):
  data_dir = _coco_dir(tmp_path, {"train": [[([0.1, 0.1, 0.5, 0.5], 2, False)]]})
  with pytest.raises(detection.AnnotationError,
                     match=r"object 0 has label 2, outside the class list of 2 classes \[0, 2\)"):
    detection.open_detection("coco/2017", "train", data_dir, class_names=("person", "bicycle"))


@pytest.mark.parametrize("record,error,match", [
    (_voc_record([[0.5, 0.1, 0.2, 0.3]], [3], [False]), box_ops.InvalidBoxError,
     r"box 0 .* has zero or negative height"),
    (_voc_record([[0.1, 0.1, 0.2, 1.5]], [3], [False]), box_ops.InvalidBoxError,
     r"box 0 .* lies outside the image \[0, 1.0\] x \[0, 1.0\]"),
    ({**_voc_record([[0.1, 0.1, 0.2, 0.3]] * 2, [3, 4], [False, False]),
      "objects": {"bbox": np.zeros((2, 4), np.float32), "label": np.array([3])}},
     detection.AnnotationError, r"objects' fields differ in number \(bbox 2, label 1\)"),
])
def test_bad_voc_annotations_are_refused(tmp_path, record, error, match):
  with _mock_voc([_voc_record([], [], []), record]):
    with pytest.raises(error, match=r"voc/2007\[test\] example 1 .*" + match):
      detection.open_detection("voc/2007", "test", str(tmp_path))
