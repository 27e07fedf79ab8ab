"""Caption data (issue 17): the captioned scenes' sentences, the vocabulary, and
the reader on caption_scenes and a tiny coco_captions-layout dataset."""

import collections
import colorsys
import logging
import os

import numpy as np
from PIL import Image
import pytest
from scipy import ndimage

from research.data import builders, caption_scenes, captions, datasets, scene_builders, scenes
from research.data import scene_facts as sf
from research.data import vocab
from tests import coco_layouts

TINY_SPLITS = {"train": 24, "validation": 8, "test": 8}
NUM_SCENES = 80  # Scenes whose sentences are checked (empty ones included).


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir):
  """The data_dir of a tiny caption_scenes ("caption_scenes_tiny", seed 0)."""
  root = tmp_path_factory.mktemp("captions")
  for source in scenes.SOURCES:  # The sources, prepared once for all tests.
    os.symlink(os.path.join(data_dir, source), root / source)
  coco_layouts.prepare(scene_builders.make_scene_builder(
      "caption_scenes_tiny", splits=TINY_SPLITS, base=caption_scenes.CaptionSceneBuilder), root)
  return str(root)


def _scenes(data_dir, split, n, start=0):
  """Scenes start..n-1 of `split`, seed 0, as the detection scenes make them."""
  config = scene_builders.SceneBuilder.CONFIG
  pools = {name: scene_builders.open_pool(name, *scene_builders.POOLS[split][name], data_dir)
           for name in scenes.SOURCES}
  return scene_builders.make_scenes(range(start, n), scene_builders.SPLIT_NUMBERS[split], 0, pools,
                                    scenes.load_backgrounds(config.background_short_side), config)


@pytest.fixture(scope="module")
def train_scenes(data_dir):
  return _scenes(data_dir, "train", NUM_SCENES)


# --- The sentence generator ------------------------------------------------------


def test_the_generator_is_deterministic(train_scenes):
  for i, scene in enumerate(train_scenes[:10]):
    first, again = (caption_scenes.describe(scene, [0, 0, i, 2]) for _ in range(2))
    assert first == again
  other = [caption_scenes.describe(s, [1, 0, i, 2]) for i, s in enumerate(train_scenes[:10])]
  assert other != [caption_scenes.describe(s, [0, 0, i, 2])
                   for i, s in enumerate(train_scenes[:10])]


def test_every_sentence_and_phrase_is_true_of_its_scene(train_scenes):
  kinds = set()
  for i, scene in enumerate(train_scenes):
    made = caption_scenes.describe(scene, [0, 0, i, 2])
    assert len(set(made.sentences)) == caption_scenes.NUM_CAPTIONS
    for text, facts in zip(made.sentences, made.facts):
      read = sf.parse(text)  # The text read back, not the generator's record.
      assert read == facts, text
      assert read and all(sf.holds(scene, f) for f in read), text
      kinds.update(f[0] for f in read)
      kinds.update("empty" for f in read if f[0] == "count" and f[2] == 0 and f[1][0] == "object")
    assert len(made.phrases) == len(scene.labels)
    for k, (phrase, ref) in enumerate(zip(made.phrases, made.phrase_refs)):
      assert sf.parse(phrase) == {("exists", ref)}, phrase
      assert sf.matches(scene, k, ref) and ref[0] == f"class {scene.labels[k]}", phrase
  assert kinds == {"exists", "count", "relation", "background", "empty"}


def test_false_statements_are_caught(train_scenes):
  scene = next(s for s in train_scenes if len(s.labels) >= 2)
  k = len(scene.labels)
  label = int(scene.labels[0])
  other = next(c for c in range(20) if c not in scene.labels.tolist())
  everything = ("object", None, None, None)
  assert sf.holds(scene, ("count", everything, k))
  assert not sf.holds(scene, ("count", everything, k + 1))
  assert not sf.holds(scene, ("exists", (f"class {other}", None, None, None)))
  wrong = next(c for c in sf.COLOURS if c != sf.colour_name(scene.colours[0]))
  assert not sf.matches(scene, 0, (f"class {label}", None, wrong, None))
  assert not sf.holds(scene, ("background", "moon" if scene.background_name != "moon"
                              else "grass"))
  with pytest.raises(sf.ParseError, match="expected a noun"):
    sf.parse("A photo of a red unicorn.")


def test_attribute_words_by_hand():
  assert [sf.colour_name(c) for c in ((255, 0, 0), (0, 0, 255), (0, 200, 0), (255, 128, 0),
                                      (150, 75, 0), (255, 0, 255), (128, 0, 255))] == [
      "red", "blue", "green", "orange", "orange", "pink", "purple"]
  edge = np.array(colorsys.hsv_to_rgb(15 / 360, 1.0, 1.0)) * 255  # Red | orange.
  assert sf.colour_name(edge) is None
  assert sf.size_name([0, 0, 20, 10], 128) == "small"
  assert sf.size_name([0, 0, 40, 40], 128) is None
  assert sf.size_name([10, 10, 70, 30], 128) == "large"
  assert sf.position_names([0, 0, 20, 20], 128) == {"top", "left", "top left"}
  assert sf.position_names([54, 54, 74, 74], 128) == {"centre"}
  assert sf.position_names([100, 50, 120, 78], 128) == {"bottom"}
  a, b = [10, 10, 30, 30], [12, 40, 28, 60]  # b right of a, level with it.
  assert sf.relation_holds("left", a, b) and sf.relation_holds("right", b, a)
  assert sf.relation_holds("next_to", a, b) and not sf.relation_holds("above", a, b)
  below = [60, 12, 80, 28]
  assert sf.relation_holds("above", a, below) and sf.relation_holds("below", below, a)
  assert not sf.relation_holds("next_to", a, below)
  assert not sf.relation_holds("left", a, [10, 20, 30, 40])  # Overlapping by half.


def test_colour_words_name_the_drawn_colour(train_scenes):
  """The tint scenes.py records is the colour drawn: most of an object's
  inner visible pixels (its edges blend with the photo) get the tint's name."""
  checked = 0
  for scene in train_scenes[:30]:
    later = np.zeros(scene.masks.shape[1:], bool)
    for k in range(len(scene.labels) - 1, -1, -1):
      visible = scene.masks[k] & ~later
      later |= scene.masks[k]
      inner = ndimage.binary_erosion(visible)
      name = sf.colour_name(scene.colours[k])
      if name is None or inner.sum() < 20:
        continue
      named = [n for n in map(sf.colour_name, scene.image[inner]) if n is not None]
      assert sum(n == name for n in named) > 0.5 * len(named), (name, named)
      checked += 1
  assert checked >= 20


# --- The vocabulary --------------------------------------------------------------


def test_tokenize_build_encode_decode():
  assert vocab.tokenize("A red T-shirt, isn't it?  OK.") == ["a", "red", "t", "shirt", "isn't",
                                                          "it", "ok"]
  v = vocab.Vocabulary.build(["a red bag.", "A blue bag", "a cat", "zebra"], min_count=2)
  assert v.words == ("<pad>", "<start>", "<end>", "<unk>", "a", "bag")  # 3 > 2; ties none.
  v = vocab.Vocabulary.build(["b a", "c a", "c b"], min_count=1)
  assert v.words[4:] == ("a", "b", "c")  # Each twice: alphabetical.
  tokens = v.encode("A c, b!", 8)
  assert tokens.dtype == np.int32 and tokens.tolist() == [1, 4, 6, 5, 2, 0, 0, 0]
  assert v.decode(tokens) == "a c b"
  assert v.encode("a zebra", 5).tolist() == [1, 4, 3, 2, 0]
  assert v.decode(v.encode("a zebra", 5)) == "a <unk>"
  cut = v.encode("a b c a b", 5)
  assert cut.tolist() == [1, 4, 5, 6, 2] and v.encoded_length("a b c a b") == 7
  with pytest.raises(vocab.EmptyCaptionError, match=r"Empty caption '  \.\.\. '.*To fix"):
    v.encode("  ... ", 5)


def test_vocabulary_json_round_trip_and_mismatch():
  v = vocab.Vocabulary.build(["a red bag", "a blue bag"], min_count=1)
  back = vocab.Vocabulary.from_json(v.to_json())
  assert back == v and back.min_count == 1
  back.check_same(v)
  other = vocab.Vocabulary.build(["a red bag", "a green bag"], min_count=1)
  with pytest.raises(vocab.VocabularyMismatch) as e:
    v.check_same(other, "runs/x/checkpoints")
  message = str(e.value)
  assert "\n" not in message and "runs/x/checkpoints" in message and "To fix" in message
  assert "id 6 is 'blue' there and 'green' now" in message


def test_encode_captions_counts_and_logs_truncation(caplog):
  v = vocab.Vocabulary.build(["one two three four five six"], min_count=1)
  with caplog.at_level(logging.WARNING):
    tokens, cut = captions.encode_captions(
        ["one two", "one two three four five six", "one two three four"], v, 6, "test[x]")
  assert cut == 1 and tokens.shape == (3, 6) and tokens[1, -1] == vocab.END
  assert tokens[2, -1] == vocab.END and tokens[0, 3] == vocab.END
  assert "test[x]: 1 of 3 captions are longer than max_len=6" in caplog.text


# --- The reader ------------------------------------------------------------------


def test_caption_scenes_have_the_detection_scenes_images_and_the_captions(tiny, data_dir):
  data = captions.open_captions("caption_scenes_tiny", "validation", tiny)
  assert len(data) == 8 and data.has_phrases and data.image_shape == (128, 128, 3)
  assert data.class_names == scenes.CLASS_NAMES
  made = _scenes(data_dir, "validation", 8)
  for i, (example, scene) in enumerate(zip(data.examples(range(8)), made)):
    np.testing.assert_array_equal(example.image, scene.image)
    np.testing.assert_array_equal(example.boxes, scene.boxes.astype(np.float32))
    np.testing.assert_array_equal(example.labels, scene.labels)
    described = caption_scenes.describe(scene, [0, 1, i, 2])
    assert example.captions == described.sentences and example.phrases == described.phrases
    assert example.image_id == 1_000_000 + i
  train = captions.open_captions("caption_scenes_tiny", "train", tiny)
  v = captions.build_vocabulary(train, min_count=2)
  assert len(train.texts()) == 5 * 24 and 20 < len(v) < 400
  assert all(v.id(w) != vocab.UNK for w in ("a", "photo", "of"))
  counts = captions.summary(train, min_counts=(2,))
  assert counts["captions"] == 120 and counts["vocabulary_min_count_2"] == len(v)
  assert counts["phrases"] == counts["objects"] == sum(
      len(train.annotation(i).labels) for i in range(24)) > 0


def test_the_registered_caption_scenes_are_the_detection_scenes():
  builder = builders.LOCAL_BUILDERS["caption_scenes"]
  assert builder.SPLITS == scene_builders.SceneBuilder.SPLITS and builder.SEED == 0
  assert builder.CONFIG == scene_builders.SceneBuilder.CONFIG
  ours, theirs = datasets.get("caption_scenes"), datasets.get("detection_scenes")
  assert (ours.mean, ours.std, ours.image_shape, ours.num_classes, ours.splits) == (
      theirs.mean, theirs.std, theirs.image_shape, theirs.num_classes, theirs.splits)


class _CocoCaptions(coco_layouts.CocoCaptionsLayout, skip_registration=True):
  """coco_captions's layout; SPLITS: per split, [(captions, [(bbox, label), ...]) per image]."""

  def _generate_examples(self, images):
    for i, (texts, objects) in enumerate(images):
      yield i, {"image": Image.fromarray(np.full((40, 60, 3), 30 * i, np.uint8)),
                "image/filename": f"COCO_val2014_{i:012d}.jpg", "image/id": 500 + i,
                "objects": [coco_layouts.coco_object(9 * i + j, b, label)
                            for j, (b, label) in enumerate(objects)],
                "captions": [{"text": t, "id": 100 * i + j} for j, t in enumerate(texts)]}


def _coco_captions_dir(tmp_path, images):
  return coco_layouts.prepare_layout(_CocoCaptions, tmp_path, SPLITS=images)


def test_reader_opens_a_prepared_coco_captions_copy(tmp_path):
  data_dir = _coco_captions_dir(tmp_path, {"val": [
      (["A man riding a horse.", "Someone on a horse in a field."],
       [([0.1, 0.2, 0.9, 0.5], 0), ([0.3, 0.3, 0.6, 0.9], 17)]),
      (["A plate of food."], [])]})
  data = captions.open_captions("coco_captions", "val", data_dir)
  assert len(data) == 2 and not data.has_phrases and data.num_classes == 80
  assert data.texts() == ["A man riding a horse.", "Someone on a horse in a field.",
                          "A plate of food."]
  first, second = data.examples([0, 1])
  assert first.image.shape == (40, 60, 3) and first.image_id == 500 and first.phrases == ()
  np.testing.assert_allclose(first.boxes, [[4, 12, 36, 30], [12, 18, 24, 54]], atol=1e-4)
  assert first.labels.tolist() == [0, 17] and second.boxes.shape == (0, 4)
  v = captions.build_vocabulary(data, min_count=2)
  assert v.words[4:] == ("a", "horse")
  tokens, cut = captions.encode_captions(data.texts(), v, 5)
  assert cut == 3 and v.decode(tokens[0]) == "a <unk> <unk>"


def test_an_empty_caption_is_a_one_line_error(tmp_path):
  data_dir = _coco_captions_dir(tmp_path, {"train": [
      (["A dog."], []), (["A cat on a mat.", " -- "], [])]})
  with pytest.raises(vocab.EmptyCaptionError) as e:
    captions.open_captions("coco_captions", "train", data_dir)
  message = str(e.value)
  assert message.startswith("coco_captions/2014[train] example 1 (image/id 501): caption 1 "
                            "(id 101) ' -- ' has no word. To fix:")
  assert "\n" not in message


def test_an_unprepared_coco_captions_says_how_to_get_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="not prepared in"):
    captions.open_captions("coco_captions", "val", str(tmp_path))


@pytest.mark.slow
def test_every_sentence_of_the_full_dataset_is_true(data_dir):
  """Prepares caption_scenes into the test data_dir (about 4 minutes here, once)
  and reads back every caption and phrase against its scene."""
  known, checked, kinds = datasets.get("caption_scenes"), 0, collections.Counter()
  for split, n in known.splits.items():
    data = captions.open_captions("caption_scenes", split, data_dir)
    assert len(data) == n
    for lo in range(0, n, 500):
      for i, scene in zip(range(lo, n), _scenes(data_dir, split, min(n, lo + 500), lo)):
        assert data.captions(i) == caption_scenes.describe(
            scene, [0, scene_builders.SPLIT_NUMBERS[split], i, 2]).sentences
        for text in data.captions(i):
          facts = sf.parse(text)
          assert all(sf.holds(scene, f) for f in facts), text
          kinds[_kind(facts)] += 1
        for k, phrase in enumerate(data.phrases(i)):
          (fact,) = sf.parse(phrase)
          assert sf.matches(scene, k, fact[1]), phrase
        checked += 1
  assert checked == sum(known.splits.values())
  print(f"{checked} scenes, {sum(kinds.values())} sentences: {dict(kinds)}")  # For the README.


def _kind(facts) -> str:
  if ("count", ("object", None, None, None), 0) in facts:
    return "empty"
  return next((k for k in ("relation", "count") if any(f[0] == k for f in facts)), "list")
