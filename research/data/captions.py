"""Reading image-caption datasets: our `caption_scenes` and TFDS's `coco_captions`.

One reader for the captioning experiments (issue 17; Karpathy & Fei-Fei 2015):
- `caption_scenes` (`caption_scenes.py`), prepared from local files on first
  use, in coco_captions's layout plus objects/phrase;
- `coco_captions` (config 2014, the only one; Karpathy's splits train, val,
  test, restval): a user's prepared copy in `<data_dir>/coco_captions/2014/
  <version>/` opens through `tfds.builder_from_directory` (TFDS's builder
  imports TensorFlow when constructed; a prepared folder does not need it).

Opening a split reads and checks every annotation before any work, without
decoding an image: each caption has a word (`vocab.EmptyCaptionError`
otherwise, one line naming the example, the caption and the fix), each image
has a caption, and the objects pass the detection reader's checks
(`detection.parse_annotation`: one box and label each, boxes of positive area
inside the image, labels in the class list).

Captions become token ids with `encode_captions` (`vocab.Vocabulary.encode`
per caption), which counts and logs the captions cut to `max_len`.
"""

import dataclasses

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from research.data import detection, reader, tfds_source, vocab

COCO_CAPTIONS = "coco_captions/2014"
_CHUNK = 2048  # Annotations read at once.


@dataclasses.dataclass(frozen=True)
class CaptionExample:
  """One image with its captions and objects.

  image: uint8 [H, W, 3]. captions: its sentences (str, as stored). boxes:
  float32 [K, 4], pixels [ymin, xmin, ymax, xmax] (edges, as the detection
  reader's). labels: int32 [K]. phrases: one str per object (objects/phrase;
  empty where the dataset has none, as coco_captions). image_id: image/id.
  """
  image: np.ndarray
  captions: tuple[str, ...]
  boxes: np.ndarray
  labels: np.ndarray
  phrases: tuple[str, ...]
  image_id: int
  filename: str


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _texts(values) -> tuple[str, ...]:
  return tuple(_text(v) for v in np.asarray(values, object).reshape(-1))


class CaptionSplit:
  """A split of a captions dataset, checked, with random access.

  `len(split)`, `split[i]` / `split.examples(indices)` (`CaptionExample`s,
  images decoded in one batched read), `split.captions(i)`, `split.texts()`
  (every caption, for a vocabulary), `split.annotation(i)` (the objects, a
  `detection.Annotation`), `split.phrases(i)`, `split.class_names`,
  `split.has_phrases`, `split.image_shape` (None when sizes vary).
  """

  def __init__(self, source, annotation_source, info, what: str, class_names=None):
    self.what, self._source = what, source
    features = info.features
    if "captions" not in features or "objects" not in features:
      raise detection.AnnotationError(
          f"{what} is not a captions dataset in coco_captions's layout (it needs captions "
          f"and objects; its features are {sorted(features.keys())}). To fix: point "
          "config.data.name at caption_scenes or a prepared coco_captions.")
    self.has_phrases = "phrase" in features["objects"].keys()
    names = tuple(getattr(features["objects"]["label"], "names", ()) or ())
    self.class_names = tuple(class_names) if class_names is not None else names
    shape = features["image"].shape
    self.image_shape = tuple(shape) if None not in shape else None
    self._captions, self._annotations, self._phrases = [], [], []
    n = len(annotation_source)
    for lo in range(0, n, _CHUNK):
      for i, record in zip(range(lo, min(n, lo + _CHUNK)),
                           reader.read_records(annotation_source, range(lo, min(n, lo + _CHUNK)))):
        annotation = detection.parse_annotation(
            {"objects": {k: record["objects"][k] for k in ("bbox", "label")},
             **{k: v for k, v in record.items() if k != "objects"}},
            i, len(self.class_names), what, self.class_names)
        self._captions.append(self._checked_captions(record, i, annotation))
        self._annotations.append(annotation)
        self._phrases.append(_texts(record["objects"]["phrase"]) if self.has_phrases else ())
    logging.info("%s: %d images, %d captions, %d objects.", what, n,
                 sum(len(c) for c in self._captions),
                 sum(len(a.labels) for a in self._annotations))

  def _checked_captions(self, record, index: int, annotation) -> tuple[str, ...]:
    texts = _texts(record["captions"]["text"])
    ids = np.asarray(record["captions"]["id"]).reshape(-1)
    where = f"{self.what} example {index} (image/id {annotation.image_id})"
    if not texts:
      raise vocab.EmptyCaptionError(f"{where} has no caption. To fix: caption the image or "
                                    "remove it, and prepare the dataset again.")
    for j, text in enumerate(texts):
      if not vocab.tokenize(text):
        raise vocab.EmptyCaptionError(
            f"{where}: caption {j} (id {int(ids[j]) if j < len(ids) else '?'}) {text!r} has "
            "no word. To fix: rewrite or remove that caption, and prepare the dataset again.")
    return texts

  def __len__(self) -> int:
    return len(self._annotations)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def captions(self, index: int) -> tuple[str, ...]:
    return self._captions[index]

  def texts(self) -> list[str]:
    """Every caption of the split, image by image."""
    return [t for texts in self._captions for t in texts]

  def annotation(self, index: int) -> detection.Annotation:
    return self._annotations[index]

  def phrases(self, index: int) -> tuple[str, ...]:
    return self._phrases[index]

  def __getitem__(self, index: int) -> CaptionExample:
    return self.examples([index])[0]

  def examples(self, indices) -> list[CaptionExample]:
    """Examples `indices`, their images read in one batched call."""
    indices = [int(i) for i in indices]
    out = []
    for i, record in zip(indices, reader.read_records(self._source, indices)):
      a, image = self._annotations[i], np.asarray(record["image"])
      h, w = image.shape[:2]
      out.append(CaptionExample(
          image, self._captions[i], (a.boxes * np.array([h, w, h, w], np.float32)),
          a.labels, self._phrases[i], a.image_id, a.filename))
    return out


def _dataset_name(name: str) -> str:
  # coco_captions has one config (2014); its prepared folder is coco_captions/2014/<version>.
  return COCO_CAPTIONS if name == "coco_captions" else name


def open_captions(name: str, split: str, data_dir: str | None = None, *,
                  download: bool = False, class_names=None) -> CaptionSplit:
  """Opens and checks `split` of captions dataset `name`.

  name: "caption_scenes" (splits train, validation, test) or "coco_captions"
  ("coco_captions/2014"; splits train, val, test, restval), prepared in
  data_dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets); class_names:
  the objects' class list (default the dataset's).

  Raises:
    vocab.EmptyCaptionError: a caption without a word, or an image without a
      caption (before any image is decoded).
    detection.AnnotationError, InvalidBoxError: a bad object annotation, or a
      dataset that is not in coco_captions's layout.
    errors.DataNotFound: the dataset is not prepared there and downloads are off.
  """
  name = _dataset_name(name)
  source, info = tfds_source.open_source(name, split, data_dir, download=download)
  annotations, _ = tfds_source.open_source(
      name, split, data_dir, download=download,
      decoders={"image": tfds.decode.SkipDecoding()})
  return CaptionSplit(source, annotations, info, f"{name}[{split}]", class_names)


def build_vocabulary(split: CaptionSplit, min_count: int) -> vocab.Vocabulary:
  """The vocabulary of a (training) split's captions (Karpathy & Fei-Fei §4:
  words seen fewer than min_count times are dropped, read as <unk>)."""
  built = vocab.Vocabulary.build(split.texts(), min_count)
  logging.info("%s: vocabulary of %d tokens (words seen >= %d times).", split.what,
               len(built), min_count)
  return built


def encode_captions(texts, vocabulary: vocab.Vocabulary, max_len: int,
                    what: str = "captions") -> tuple[np.ndarray, int]:
  """(int32 [N, max_len] token ids as `Vocabulary.encode` gives, the number of
  captions cut to max_len), logging that number when it is not 0.

  Raises:
    vocab.EmptyCaptionError: a caption without a word.
  """
  texts = list(texts)
  tokens = np.zeros((len(texts), max_len), np.int32)
  truncated = 0
  for i, text in enumerate(texts):
    truncated += vocabulary.encoded_length(text) > max_len
    tokens[i] = vocabulary.encode(text, max_len)
  if truncated:
    logging.warning("%s: %d of %d captions are longer than max_len=%d tokens (<start>, words, "
                    "<end>) and were truncated.", what, truncated, len(texts), max_len)
  return tokens, truncated


def summary(split: CaptionSplit, min_counts=(1, 5)) -> dict:
  """Counts over a split's captions (no image decoded): images, captions,
  words per caption (mean, max), the vocabulary's size (special tokens
  included) at each of `min_counts`, objects, and objects with a phrase."""
  texts = split.texts()
  lengths = np.array([len(vocab.tokenize(t)) for t in texts])
  return {"images": len(split), "captions": len(texts),
          "words_per_caption_mean_max": [round(float(lengths.mean()), 2) if len(texts) else 0.0,
                                         int(lengths.max(initial=0))],
          **{f"vocabulary_min_count_{m}": len(vocab.Vocabulary.build(texts, m))
             for m in min_counts},
          "objects": sum(len(split.annotation(i).labels) for i in range(len(split))),
          "phrases": sum(len(split.phrases(i)) for i in range(len(split)))}


if __name__ == "__main__":
  # python -m research.data.captions NAME [SPLIT ...] [--data_dir=DIR]: each split's
  # `summary`, one JSON line per split.
  reader.summaries_main(open_captions, summary, "captions", "caption_scenes")
