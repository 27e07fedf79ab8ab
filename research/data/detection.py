"""Reading object-detection datasets: TFDS's voc/2007 and coco/2017 layouts, and our scenes.

One reader for three sources (issue 16):
- `voc/2007` (or any voc config), through `tfds.data_source`, prepared in the
  data_dir; its objects carry `is_difficult`, which VOC's AP ignores.
- `detection_scenes` (`scene_builders.py`), in voc/2007's layout, prepared
  from local files on first use.
- `coco/2017`-layout datasets (objects `id`, `area`, `bbox`, `label`,
  `is_crowd`, and `image/id`): a user's prepared copy in `<data_dir>/coco/2017/
  <version>/` opens through `tfds.builder_from_directory` (TFDS's coco builder
  imports TensorFlow when constructed; a prepared folder does not need it).

Opening a split checks every annotation before any work, without decoding an
image: each object has one box and one label (equal sequence lengths), each
box is finite with positive area inside [0, 1] (`research.ops.boxes.
validate_boxes`), each label is in the class list. The first fault is one
line naming the example, the object and the fix (`AnnotationError`, or
`InvalidBoxError` for a box; both ConfigErrors).

Boxes: TFDS stores normalised [ymin, xmin, ymax, xmax]; `DetectionExample`
gives them in pixels (times the image's height and width), as continuous
coordinates of pixel edges: [0, 0, 1, 1] is the top-left pixel, so the box of
pixel rows r0..r1 is [r0, ., r1 + 1, .]. COCO's [x, y, w, h] (`coco_export`)
and our IoUs use the same convention (no +1 as in VOC's devkit).
"""

import dataclasses
import io

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from research import errors
from research.ops import boxes as box_ops
from research.data import reader, tfds_source


_CHUNK = 2048  # Annotations read at once.


class AnnotationError(errors.ConfigError):
  """A dataset annotation that cannot be used (a box, a label, a count).

  A ConfigError, so launch.py prints it as its one line: the fix is in the
  data, or in the config's choice of data or classes.
  """


@dataclasses.dataclass(frozen=True)
class DetectionExample:
  """One image and its objects.

  image: uint8 [H, W, 3]. boxes: float32 [K, 4], pixels, [ymin, xmin, ymax,
  xmax]. labels: int32 [K] in [0, num_classes). difficult: bool [K] (VOC's
  is_difficult; False for COCO). crowd: bool [K] (COCO's is_crowd; False for
  VOC). image_id: COCO's image/id, else the example's index in its split.
  """
  image: np.ndarray
  boxes: np.ndarray
  labels: np.ndarray
  difficult: np.ndarray
  crowd: np.ndarray
  image_id: int
  filename: str


@dataclasses.dataclass(frozen=True)
class Annotation:
  """An example's annotation without its pixels: boxes normalised float32 [K, 4];
  image_size (height, width) when known without decoding, else None."""
  boxes: np.ndarray
  labels: np.ndarray
  difficult: np.ndarray
  crowd: np.ndarray
  image_id: int
  filename: str
  image_size: tuple[int, int] | None


def _layout(info, what: str) -> str:
  features = info.features
  objects = features["objects"] if "objects" in features else None
  keys = set(objects.keys()) if objects is not None and hasattr(objects, "keys") else set()
  if {"bbox", "label"} <= keys:
    return "coco" if "is_crowd" in keys else "voc"
  raise AnnotationError(
      f"{what} is not a detection dataset in voc/2007's or coco/2017's layout (it needs "
      f"objects/bbox and objects/label; its features are {sorted(features.keys())}). To fix: "
      "point config.data.name at a detection dataset.")


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _image_size(image) -> tuple[int, int] | None:
  """(H, W) of a decoded image array or of encoded bytes (from the header)."""
  if isinstance(image, np.ndarray) and image.ndim == 3:
    return image.shape[:2]
  if isinstance(image, bytes):
    try:
      w, h = Image.open(io.BytesIO(image)).size
      return h, w
    except OSError:
      return None
  return None


def parse_annotation(record: dict, index: int, num_classes: int, what: str,
                     class_names=()) -> Annotation:
  """An example's checked annotation.

  Raises:
    AnnotationError: naming `what`, the example, the object and the fix, when
      its objects' fields differ in number or a label is outside
      [0, num_classes).
    research.ops.boxes.InvalidBoxError: likewise, when a box is not finite,
      has zero or negative area or lies outside [0, 1] (both are ConfigErrors:
      launch.py prints them as one line).
  """
  objects = record["objects"]
  filename = _text(record.get("image/filename", f"#{index}"))
  where = f"{what} example {index} ({filename!r})"
  counts = {k: len(v) for k, v in objects.items()}
  if len(set(counts.values())) > 1:
    listed = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    raise AnnotationError(f"{where}: its objects' fields differ in number ({listed}); each "
                          "object needs one of each. To fix: repair this example's annotation "
                          "and prepare the dataset again.")
  boxes = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
  labels = np.asarray(objects["label"], np.int64).reshape(-1)
  box_ops.validate_boxes(boxes, where, image_size=(1.0, 1.0),  # TFDS's normalised boxes.
                         fix="correct or remove that object's annotation")
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    k = int(bad[0])
    shown = f" ({class_names[0]!r} .. {class_names[-1]!r})" if len(class_names) else ""
    raise AnnotationError(
        f"{where}: object {k} has label {labels[k]}, outside the class list of {num_classes} "
        f"classes [0, {num_classes}){shown}. To fix: give the full class list, or remove or "
        "relabel that object.")
  def flag(key):  # VOC has is_difficult, COCO is_crowd.
    return (np.asarray(objects[key], bool).reshape(-1) if key in objects
            else np.zeros(len(labels), bool))
  image_id = int(record["image/id"]) if "image/id" in record else index
  return Annotation(boxes, labels.astype(np.int32), flag("is_difficult"), flag("is_crowd"),
                    image_id, filename, _image_size(record.get("image")))


def _read_checked(source, keys: range, what: str) -> list[dict]:
  """Records `keys`; a record TFDS cannot decode (its own check of equal
  sequence lengths) is an AnnotationError naming it."""
  try:
    return reader.read_records(source, keys)
  except ValueError:
    pass
  for i in keys:  # Find the first record that fails, to name it.
    try:
      source[i]
    except ValueError as e:
      reason = " ".join(str(e).split())
      raise AnnotationError(f"{what} example {i} cannot be decoded: {reason}. To fix: repair "
                            "this example's annotation and prepare the dataset again.") from e
  return reader.read_records(source, keys)


class DetectionSplit:
  """A split of a detection dataset, checked, with random access.

  `len(split)`, `split[i]` (a `DetectionExample`, image decoded),
  `split.examples(indices)` (a batched read), `split.annotation(i)` (no
  pixels), `split.class_names`, `split.max_objects`, `split.image_size(i)`,
  `split.batch(indices, max_objects)` (padded arrays for a jitted step).
  """

  def __init__(self, source, annotation_source, info, what: str, class_names=None):
    self.what = what
    self.layout = _layout(info, what)
    names = tuple(getattr(info.features["objects"]["label"], "names", ()) or ())
    self.class_names = tuple(class_names) if class_names is not None else names
    if not self.class_names:
      raise AnnotationError(f"{what} has no class names; pass the class list.")
    self._source, self._annotation_source = source, annotation_source
    image_shape = info.features["image"].shape
    self.image_shape = tuple(image_shape) if None not in image_shape else None
    # Every annotation is read (images left encoded) and checked before any
    # work, in chunks: the encoded images of a whole COCO split would not fit.
    n, self._annotations = len(annotation_source), []
    for lo in range(0, n, _CHUNK):
      keys = range(lo, min(n, lo + _CHUNK))
      try:
        records = _read_checked(annotation_source, keys, what)
      except ModuleNotFoundError:
        # tfds.testing.mock_data makes encoded images with TensorFlow; its
        # decoded ones need none. Real prepared data never gets here.
        annotation_source = source
        records = _read_checked(annotation_source, keys, what)
      self._annotations.extend(
          parse_annotation(r, lo + j, len(self.class_names), what, self.class_names)
          for j, r in enumerate(records))
    self.max_objects = max((len(a.labels) for a in self._annotations), default=0)

  def __len__(self) -> int:
    return len(self._annotations)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def annotation(self, index: int) -> Annotation:
    return self._annotations[index]

  def image_size(self, index: int) -> tuple[int, int]:
    """(H, W) of example `index`, decoding its image only if it must."""
    a = self._annotations[index]
    if self.image_shape is not None:
      return self.image_shape[:2]
    return a.image_size or self[index].image.shape[:2]

  def __getitem__(self, index: int) -> DetectionExample:
    return self.examples([index])[0]

  def examples(self, indices) -> list[DetectionExample]:
    """Examples `indices`, their images read in one batched call (several
    times faster than one `split[i]` at a time)."""
    indices = [int(i) for i in indices]
    out = []
    for i, record in zip(indices, reader.read_records(self._source, indices)):
      a = self._annotations[i]
      image = np.asarray(record["image"])
      h, w = image.shape[:2]
      boxes = (a.boxes * np.array([h, w, h, w], np.float32)).astype(np.float32)
      out.append(DetectionExample(image, boxes, a.labels, a.difficult, a.crowd, a.image_id,
                                  a.filename))
    return out

  def batch(self, indices, max_objects: int | None = None) -> dict[str, np.ndarray]:
    """Examples `indices` as padded arrays: image uint8 [B, H, W, 3], boxes
    float32 [B, M, 4] (pixels), labels int32 [B, M] (-1 where padded), valid,
    difficult, crowd bool [B, M]; M = max_objects (default the split's).

    Raises ValueError if the images differ in size (resize them first) or an
    example has more than M objects.
    """
    m = self.max_objects if max_objects is None else max_objects
    examples = self.examples(indices)
    shapes = {e.image.shape for e in examples}
    if len(shapes) > 1:
      raise ValueError(f"{self.what}: images of sizes {sorted(shapes)} cannot share a batch; "
                       "resize them to one size first.")
    out = {"image": np.stack([e.image for e in examples]),
           "boxes": np.zeros((len(examples), m, 4), np.float32),
           "labels": np.full((len(examples), m), -1, np.int32)}
    for key in ("valid", "difficult", "crowd"):
      out[key] = np.zeros((len(examples), m), bool)
    for b, (i, e) in enumerate(zip(indices, examples)):
      k = len(e.labels)
      if k > m:
        raise ValueError(f"{self.what} example {i} has {k} objects, more than max_objects={m}.")
      out["boxes"][b, :k], out["labels"][b, :k] = e.boxes, e.labels
      out["valid"][b, :k], out["difficult"][b, :k], out["crowd"][b, :k] = True, e.difficult, e.crowd
    return out


def open_detection(name: str, split: str, data_dir: str | None = None, *,
                   download: bool = False, class_names=None) -> DetectionSplit:
  """Opens and checks `split` of detection dataset `name`.

  name: "voc/2007", "detection_scenes", "coco/2017" (a prepared copy), ...;
  data_dir: the TFDS folder (default $TFDS_DATA_DIR or ~/tensorflow_datasets);
  class_names: the run's class list (default the dataset's own names); every
  label must index into it.

  Raises:
    AnnotationError, InvalidBoxError: on the first bad annotation (see
      `parse_annotation`); AnnotationError when `name` is not a detection
      dataset.
    FileNotFoundError: the dataset is not prepared there and downloads are off.
  """
  source, info = tfds_source.open_source(name, split, data_dir, download=download)
  annotations, _ = tfds_source.open_source(
      name, split, data_dir, download=download,
      decoders={"image": tfds.decode.SkipDecoding()})
  return DetectionSplit(source, annotations, info, f"{name}[{split}]", class_names)


def to_coco(split: DetectionSplit, indices=None) -> dict:
  """Examples `indices` (default all) of `split` as a COCO-format dict.

  images: {id, file_name, height, width}; annotations: {id (from 1), image_id,
  category_id = label + 1, bbox [x, y, w, h] in pixels, area w * h, iscrowd};
  categories: {id = label + 1, name}. COCO has no "difficult": VOC's
  difficult objects are written like any other (`difficult` 1 is kept as an
  extra key; pycocotools ignores it). image_id is `DetectionExample.image_id`.
  """
  indices = range(len(split)) if indices is None else indices
  images, annotations = [], []
  for i in indices:
    a = split.annotation(int(i))
    h, w = split.image_size(int(i))
    images.append({"id": a.image_id, "file_name": a.filename, "height": int(h),
                   "width": int(w)})
    pixels = a.boxes * np.array([h, w, h, w], np.float32)
    for box, label, difficult, crowd in zip(pixels, a.labels, a.difficult, a.crowd):
      ymin, xmin, ymax, xmax = (float(v) for v in box)
      annotations.append({
          "id": len(annotations) + 1, "image_id": a.image_id, "category_id": int(label) + 1,
          "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
          "area": (xmax - xmin) * (ymax - ymin), "iscrowd": int(crowd),
          "difficult": int(difficult)})
  categories = [{"id": c + 1, "name": n} for c, n in enumerate(split.class_names)]
  return {"images": images, "annotations": annotations, "categories": categories}


def summary(split: DetectionSplit) -> dict:
  """Counts over a split's annotations (no image decoded): examples, objects,
  objects per image, empty images, objects whose longer side is <= 10 px,
  objects under 16x16 px, COCO's size bins (area < 32^2, < 96^2, larger) and
  the fewest and most objects of a class."""
  sizes = [np.array([split.image_size(i)]) for i in range(len(split))]
  boxes = [split.annotation(i).boxes * np.tile(sizes[i], 2) for i in range(len(split))]
  counts = np.array([len(b) for b in boxes])
  flat = np.concatenate(boxes) if boxes else np.zeros((0, 4))
  h, w = flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]
  area = h * w
  labels = np.concatenate([split.annotation(i).labels for i in range(len(split))] or [[]])
  per_class = np.bincount(labels.astype(int), minlength=split.num_classes)
  return {"examples": len(split), "objects": int(counts.sum()),
          "objects_per_image": round(float(counts.mean()), 2) if len(counts) else 0.0,
          "empty_images": int((counts == 0).sum()),
          "longer_side_at_most_10px": int((np.maximum(h, w) <= 10).sum()),
          "under_16x16px": int((area < 16 * 16).sum()),
          "coco_small_medium_large": [int((area < 32 ** 2).sum()),
                                      int(((area >= 32 ** 2) & (area < 96 ** 2)).sum()),
                                      int((area >= 96 ** 2).sum())],
          "objects_of_a_class_min_max": [int(per_class.min()), int(per_class.max())]}


if __name__ == "__main__":
  # python -m research.data.detection NAME [SPLIT ...] [--data_dir=DIR]: each split's
  # `summary`, one JSON line per split.
  reader.summaries_main(open_detection, summary, "detection", "detection_scenes")
