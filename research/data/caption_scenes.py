"""Captioned scenes: the detection scenes with five true sentences each (issue 17).

The data of the image-captioning experiments (Karpathy & Fei-Fei 2015, "Deep
Visual-Semantic Alignments for Generating Image Descriptions") at a size this
CPU can train: the same images as `detection_scenes` (`scene_builders.py`,
same seed and splits), each with five sentences generated from its content,
and one phrase per object for the region experiments (§3.1.4's region-level
descriptions).

`describe(scene, seed)` writes them in the small English of `scene_facts.py`,
from a structured choice of facts, so that every sentence can be read back
(`scene_facts.parse`) and checked against the scene (`scene_facts.holds`).
Each sentence is one of four kinds, chosen at random:
- a list: "A photo of a small red sneaker on the left and a seven."
  (some of the objects, each with some of its defined attributes: size,
  colour, position);
- counts: "Two digits and no bags in front of a brick wall." (exact counts of
  a class or a category over the whole scene);
- a relation: "A blue coat is to the left of a number three." (left of,
  right of, above, below, next to);
- background first: "A picture of grass with a bag and a pink digit 4.".
A scene with no object gets sentences such as "An empty photo of a cat.".
The five are distinct; words, synonyms and which facts are said vary. A
region phrase names one object's class with its size and colour where they
are defined: "a small red ankle boot". Everything is a function of the scene
and the seed.

`caption_scenes` (1.0.0), the TFDS dataset, has TFDS `coco_captions`'s
feature layout (one reader serves both, `captions.py`), plus objects/phrase:

  image               uint8 [128, 128, 3] (PNG), the detection scene's image
  image/filename      "<split>_<index>.png"
  image/id            split number * 1,000,000 + index (unique over splits)
  objects/id          image/id * 10 + k;  objects/area  visible pixels
  objects/bbox        normalised [ymin, xmin, ymax, xmax] (as detection_scenes)
  objects/label       ClassLabel (scenes.CLASS_NAMES)
  objects/is_crowd    False
  objects/phrase      the object's region phrase
  captions            five {id: image/id * 10 + j, text}

Splits train 5,000 / validation 1,000 / test 1,000, seed 0, prepared offline
on first use like the detection scenes. Importing this module adds the
builder to `builders.LOCAL_BUILDERS`.
"""

import dataclasses

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from research.data import builders, scene_builders, scene_facts as sf, scenes

NUM_CAPTIONS = 5
_TRIES = 200  # Draws to find five distinct sentences (a few suffice in practice).


@dataclasses.dataclass(frozen=True)
class SceneCaptions:
  """sentences: NUM_CAPTIONS distinct str; facts: each sentence's frozenset of
  scene_facts facts; phrases: one str per object; phrase_refs: each phrase's
  scene_facts ref (its object matches it)."""
  sentences: tuple[str, ...]
  facts: tuple[frozenset, ...]
  phrases: tuple[str, ...]
  phrase_refs: tuple[tuple, ...]


def _article(word: str) -> str:
  return "an" if word[0] in "aeio" and not word.startswith("one") else "a"


def _pick(rng, options):
  return options[int(rng.integers(len(options)))]


def _noun_phrase(rng, scene, k, *, category_p=0.25, position_p=0.35, full=False):
  """(text, ref) of a singular noun phrase for object k. full: the region
  phrase (class noun, size and colour whenever defined, no position)."""
  side, box, label = scene.image.shape[0], scene.boxes[k], int(scene.labels[k])
  if not full and rng.random() < category_p:
    group = _pick(rng, [g for g in sf.CATEGORIES if label in sf.NOUN_GROUPS[g]])
  else:
    group = f"class {label}"
  noun = _pick(rng, sf.GROUP_NOUNS[group])[0]
  size, colour = sf.size_name(box, side), sf.colour_name(scene.colours[k])
  size = size if size and (full or rng.random() < 0.6) else None
  colour = colour if colour and (full or rng.random() < 0.7) else None
  positions = sorted(sf.position_names(box, side))
  position = (_pick(rng, positions) if positions and not full and rng.random() < position_p
              else None)
  words = ([_pick(rng, sf.SIZE_WORDS[size])] if size else []) + ([colour] if colour else [])
  words.append(noun)
  if position:
    words.append(_pick(rng, sf.POSITIONS[position]))
  text = " ".join(words)
  return f"{_article(text)} {text}", ("exists", (group, size, colour, position))


def _count_phrase(rng, scene, group):
  """(text, fact) of the exact count of `group` in the scene, or None above five."""
  n = sum(int(label) in sf.NOUN_GROUPS[group] for label in scene.labels)
  word = {v: w for w, v in sf.COUNT_WORDS.items()}.get(n)
  if word is None:
    return None
  # "one digit two", not "one two".
  nouns = [(s, p) for s, p in sf.GROUP_NOUNS[group] if n != 1 or s not in sf.DIGIT_WORDS]
  singular, plural = _pick(rng, nouns)
  return f"{word} {singular if n == 1 else plural}", ("count", (group, None, None, None), n)


def _join(texts) -> str:
  return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


def _setting(rng, scene, p):
  """(" against a brick wall", {background fact}) with probability p, else ("", {})."""
  if rng.random() >= p:
    return "", set()
  name = scene.background_name
  return (f" {_pick(rng, sf.SETTINGS)} {_pick(rng, sf.BACKGROUND_WORDS[name])}",
          {("background", name)})


def _listing(rng, scene):
  k = len(scene.labels)
  chosen = rng.permutation(k)[:int(rng.integers(1, min(3, k) + 1))]
  phrases = [_noun_phrase(rng, scene, int(j)) for j in chosen]
  setting, facts = _setting(rng, scene, 0.35)
  opener = _pick(rng, sf.OPENERS) + " " if rng.random() < 0.8 else ""
  return opener + _join([t for t, _ in phrases]) + setting, facts | {f for _, f in phrases}


def _counts(rng, scene):
  groups = _pick(rng, (("object",), ("digit", "fashion"), ("digit", "clothing", "shoe", "class 8"),
                       tuple(f"class {c}" for c in sorted(set(scene.labels.tolist())))))
  present = [g for g in groups
             if any(int(label) in sf.NOUN_GROUPS[g] for label in scene.labels)]
  absent = [g for g in groups if g not in present]
  groups = [present[i] for i in rng.permutation(len(present))[:3]] + (
      [_pick(rng, absent)] if absent and rng.random() < 0.3 else [])
  phrases = [p for p in (_count_phrase(rng, scene, g) for g in groups) if p]
  if not phrases:
    return None
  setting, facts = _setting(rng, scene, 0.3)
  opener = _pick(rng, sf.OPENERS) + " " if rng.random() < 0.6 else ""
  return opener + _join([t for t, _ in phrases]) + setting, facts | {f for _, f in phrases}


def _relation(rng, scene):
  k = len(scene.labels)
  pairs = [(a, b, rel) for a in range(k) for b in range(k) if a != b for rel in sf.RELATIONS
           if sf.relation_holds(rel, scene.boxes[a], scene.boxes[b])]
  if not pairs:
    return None
  a, b, rel = _pick(rng, pairs)
  (text_a, (_, ref_a)), (text_b, (_, ref_b)) = (
      _noun_phrase(rng, scene, j, position_p=0.0) for j in (a, b))
  setting, facts = _setting(rng, scene, 0.3)
  form = int(rng.integers(3))
  middle = f" {_pick(rng, sf.RELATIONS[rel])} "
  text = (f"{text_a} is{middle}{text_b}" if form == 0 else
          f"{_pick(rng, sf.OPENERS)} {text_a}{middle}{text_b}" if form == 1 else
          f"{text_a}{middle}{text_b}")
  return text + setting, facts | {("relation", ref_a, rel, ref_b)}


def _background_first(rng, scene):
  k = len(scene.labels)
  chosen = rng.permutation(k)[:int(rng.integers(1, min(3, k) + 1))]
  phrases = [_noun_phrase(rng, scene, int(j)) for j in chosen]
  name = scene.background_name
  text = (f"{_pick(rng, ('a photo of', 'a picture of'))} "
          f"{_pick(rng, sf.BACKGROUND_WORDS[name])} with {_join([t for t, _ in phrases])}")
  return text, {("background", name)} | {f for _, f in phrases}


def _empty(rng, scene):
  before, after = _pick(rng, sf.EMPTY_TEMPLATES)
  name = scene.background_name
  text = " ".join(w for w in (before, _pick(rng, sf.BACKGROUND_WORDS[name]), after) if w)
  return text, {("count", ("object", None, None, None), 0), ("background", name)}


_KINDS = ((_listing, 0.35), (_counts, 0.2), (_relation, 0.25), (_background_first, 0.2))


def describe(scene: scenes.Scene, seed) -> SceneCaptions:
  """Five distinct true sentences and the region phrases of `scene`.

  seed: anything np.random.default_rng takes (the builder passes [dataset
  seed, split number, index, 2]).

  Raises:
    ValueError: the scene's background is not one of scenes.BACKGROUNDS (its
      words are unknown), or five distinct sentences were not found.
  """
  if scene.background_name not in sf.BACKGROUND_WORDS:
    raise ValueError(f"Scene background {scene.background_name!r} has no words in "
                     "scene_facts.BACKGROUND_WORDS; make scenes with scenes.load_backgrounds.")
  rng = np.random.default_rng(seed)
  kinds, weights = zip(*_KINDS)
  sentences, facts = [], []
  for _ in range(_TRIES):
    if len(scene.labels):
      made = kinds[rng.choice(len(kinds), p=np.array(weights) / sum(weights))](rng, scene)
    else:
      made = _empty(rng, scene)
    if made is None:
      continue
    text = made[0][0].upper() + made[0][1:] + "."
    if text not in sentences:
      sentences.append(text)
      facts.append(frozenset(made[1]))
    if len(sentences) == NUM_CAPTIONS:
      break
  else:
    raise ValueError(f"Found only {len(sentences)} distinct sentences for a scene in "
                     f"{_TRIES} draws: {sentences}.")
  regions = [_noun_phrase(rng, scene, k, full=True) for k in range(len(scene.labels))]
  return SceneCaptions(tuple(sentences), tuple(facts), tuple(t for t, _ in regions),
                       tuple(f[1] for _, f in regions))


class CaptionSceneBuilder(scene_builders.SceneBuilder, skip_registration=True):
  """Captioned scenes in coco_captions's layout; `make_scene_builder(...,
  base=CaptionSceneBuilder)` sets the splits, seed and scene config."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    s = self.CONFIG.size
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{s}x{s} detection scenes (seed {self.SEED}) with five generated "
                    "sentences each and a phrase per object, in coco_captions's feature "
                    "layout; see research/data/caption_scenes.py.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(s, s, 3)),
            "image/filename": tfds.features.Text(),
            "image/id": np.int64,
            "objects": tfds.features.Sequence({
                "id": np.int64, "area": np.int64, "bbox": tfds.features.BBoxFeature(),
                "label": tfds.features.ClassLabel(names=scenes.CLASS_NAMES),
                "is_crowd": np.bool_, "phrase": tfds.features.Text()}),
            "captions": tfds.features.Sequence({"text": tfds.features.Text(), "id": np.int64}),
        }),
        disable_shuffling=True,  # Example i is scene i.
    )

  def _example(self, scene: scenes.Scene, split: str, index: int) -> dict:
    number = scene_builders.SPLIT_NUMBERS[split]
    image_id = number * 1_000_000 + index
    captions = describe(scene, [self.SEED, number, index, 2])
    k, size = len(scene.labels), scene.image.shape[0]
    later = np.zeros(scene.masks.shape[1:], bool)
    area = np.zeros(k, np.int64)
    for j in range(k - 1, -1, -1):  # Visible pixels: not covered by later objects.
      area[j] = (scene.masks[j] & ~later).sum()
      later |= scene.masks[j]
    return {
        "image": Image.fromarray(scene.image),  # PIL: TFDS encodes with Pillow, not TF.
        "image/filename": f"{split}_{index:06d}.png",
        "image/id": image_id,
        "objects": {"id": image_id * 10 + np.arange(k, dtype=np.int64), "area": area,
                    "bbox": (scene.boxes / size).astype(np.float32).reshape(-1, 4),
                    "label": scene.labels.astype(np.int64), "is_crowd": np.zeros(k, bool),
                    "phrase": list(captions.phrases)},
        "captions": {"text": list(captions.sentences),
                     "id": image_id * 10 + np.arange(NUM_CAPTIONS, dtype=np.int64)},
    }


CaptionScenes = scene_builders.make_scene_builder("caption_scenes", base=CaptionSceneBuilder)
builders.LOCAL_BUILDERS[CaptionScenes.name] = CaptionScenes
