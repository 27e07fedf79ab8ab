"""What a caption of a detection scene may say, and a parser that reads it back.

The captioned scenes (`caption_scenes.py`; Karpathy & Fei-Fei 2015 at a size
this CPU can train) describe `scenes.Scene`s in a small English whose every
phrase means one checkable fact. This module holds the lexicon, the
attribute predicates computed from a scene's arrays, and `parse`, which turns
a sentence back into its facts, so that a test can check every generated
sentence against its scene without trusting the generator.

Attributes of an object (box [ymin, xmin, ymax, xmax] in pixels, S the
scene's side; undefined near a boundary, so a word is used only where it is
clear):
- colour: the hue of the object's tint (`Scene.colours`) named by the bins of
  COLOURS; within HUE_MARGIN degrees of a bin edge the colour is not named.
- size: "small" if the box's longer side <= 0.18 S (23 px of 128), "large"
  if >= 0.45 S (58 px); neither in between.
- position of the box centre (cx, cy) / S: "left" cx < 0.3, "right" cx > 0.7,
  "top" cy < 0.3, "bottom" cy > 0.7, corners both, "centre" both in
  (0.35, 0.65).
- relations of boxes a, b: "left" (a left of b) when a's right edge is at
  most 20% of the narrower box's width past b's left edge and a's centre is
  left of b's; "above" likewise in y; "right", "below" the reverses;
  "next_to" left or right, with vertical overlap >= half the shorter box's
  height and a horizontal gap no wider than the wider box.

Facts (hashable tuples); a ref is (group, size, colour, position), None for
what is not said; group is a NOUN_GROUPS key (a class or a category):
- ("exists", ref): some object matches ref ("a small red bag").
- ("count", ref, n): exactly n objects match ref ("two digits"; n = 0 for
  "no objects", "an empty photo").
- ("relation", ref_a, rel, ref_b): two distinct objects match and stand in
  rel ("a bag to the left of a seven").
- ("background", name): the scene was cut from photo `name` of
  scenes.BACKGROUNDS.
"""

import colorsys

import numpy as np

from research.data import scenes, vocab

# --- The lexicon -----------------------------------------------------------------

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_PLURALS = ("zeros", "ones", "twos", "threes", "fours", "fives", "sixes", "sevens",
                 "eights", "nines")
# Nouns per class: (singular, plural) pairs; the first is the usual one.
CLASS_NOUNS = {
    0: (("top", "tops"), ("tee", "tees")),
    1: (("pair of trousers", "pairs of trousers"), ("pair of pants", "pairs of pants")),
    2: (("pullover", "pullovers"), ("sweater", "sweaters"), ("jumper", "jumpers")),
    3: (("dress", "dresses"),),
    4: (("coat", "coats"), ("jacket", "jackets")),
    5: (("sandal", "sandals"),),
    6: (("shirt", "shirts"),),
    7: (("sneaker", "sneakers"), ("trainer", "trainers")),
    8: (("bag", "bags"), ("handbag", "handbags")),
    9: (("ankle boot", "ankle boots"), ("boot", "boots")),
    **{10 + d: ((f"digit {w}", p), (f"number {w}", p), (w, p), (f"digit {d}", p))
       for d, (w, p) in enumerate(zip(DIGIT_WORDS, DIGIT_PLURALS))},
}
CATEGORIES = {  # name: (labels, nouns)
    "digit": (range(10, 20), (("digit", "digits"), ("number", "numbers"))),
    "clothing": ((0, 1, 2, 3, 4, 6), (("piece of clothing", "pieces of clothing"),
                                      ("garment", "garments"))),
    "shoe": ((5, 7, 9), (("shoe", "shoes"),)),
    "fashion": (range(10), (("fashion item", "fashion items"),)),
    "object": (range(20), (("object", "objects"), ("thing", "things"))),
}
NOUN_GROUPS = {**{f"class {c}": frozenset([c]) for c in CLASS_NOUNS},
               **{name: frozenset(labels) for name, (labels, _) in CATEGORIES.items()}}
GROUP_NOUNS = {**{f"class {c}": nouns for c, nouns in CLASS_NOUNS.items()},
               **{name: nouns for name, (_, nouns) in CATEGORIES.items()}}

# Hue bins in degrees [lo, hi) (red wraps around 0).
COLOURS = {"red": (340, 15), "orange": (15, 45), "yellow": (45, 80), "green": (80, 155),
           "turquoise": (155, 200), "blue": (200, 255), "purple": (255, 290),
           "pink": (290, 340)}
HUE_MARGIN = 6.0
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
SMALL, LARGE = 0.18, 0.45
POSITIONS = {"left": ("on the left",), "right": ("on the right",), "top": ("at the top",),
             "bottom": ("at the bottom",), "top left": ("in the top left corner",),
             "top right": ("in the top right corner",),
             "bottom left": ("in the bottom left corner",),
             "bottom right": ("in the bottom right corner",),
             "centre": ("in the middle", "in the centre")}
RELATIONS = {"left": ("to the left of", "left of"), "right": ("to the right of", "right of"),
             "above": ("above",), "below": ("below", "under"),
             "next_to": ("next to", "beside")}
COUNT_WORDS = {"no": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
# scenes.BACKGROUNDS by what a viewer would call them.
BACKGROUND_WORDS = {
    "astronaut": ("an astronaut",), "coffee": ("a cup of coffee", "a coffee cup"),
    "chelsea": ("a cat",), "rocket": ("a rocket",), "motorcycle": ("a motorcycle", "a motorbike"),
    "hubble_deep_field": ("galaxies", "a starry sky"),
    "immunohistochemistry": ("stained tissue", "a tissue sample"), "retina": ("a retina",),
    "camera": ("a cameraman", "a photographer"), "moon": ("the moon", "the lunar surface"),
    "brick": ("a brick wall", "bricks"), "grass": ("grass", "a lawn"),
    "gravel": ("gravel", "pebbles"), "coins": ("coins", "old coins"), "clock": ("a clock",),
    "cell": ("cells", "a cell culture"),
}
OPENERS = ("a photo of", "a picture of", "an image of", "a photo showing", "an image with",
           "a scene with")
SETTINGS = ("in front of", "against", "on a background of", "on a photo of")
# Sentences about a scene without objects: (words before, words after) the background.
EMPTY_TEMPLATES = (("an empty photo of", ""), ("a photo of", "with nothing on it"),
                   ("a picture of", "with no objects"), ("nothing but", ""),
                   ("an empty picture of", ""), ("just", "and no objects"))


class ParseError(ValueError):
  """A sentence outside the captions' grammar."""


# --- Attributes and facts ----------------------------------------------------------


def colour_name(rgb) -> str | None:
  """The name of an RGB tint (values in [0, 255]): its hue's COLOURS bin, None
  within HUE_MARGIN of a bin edge. Hue only: the scenes shade each tint by the
  item's intensity, so one tint is drawn from bright to dark (an orange item
  has brownish pixels), and their hue is the tint's."""
  r, g, b = (float(v) / 255.0 for v in rgb)
  hue = 360.0 * colorsys.rgb_to_hsv(r, g, b)[0]
  for name, (lo, hi) in COLOURS.items():
    inside = lo <= hue < hi if lo < hi else (hue >= lo or hue < hi)
    if inside:
      edge = min(abs(hue - lo), abs(hue - hi), 360 - abs(hue - lo), 360 - abs(hue - hi))
      return name if edge >= HUE_MARGIN else None
  return None


def size_name(box, side: int) -> str | None:
  """"small", "large" or None for a pixel box in a scene of `side` pixels."""
  longer = max(box[2] - box[0], box[3] - box[1]) / side
  return "small" if longer <= SMALL else "large" if longer >= LARGE else None


def position_names(box, side: int) -> set[str]:
  """Every POSITIONS key that holds for the box's centre."""
  cy, cx = (box[0] + box[2]) / (2 * side), (box[1] + box[3]) / (2 * side)
  out = set()
  horizontal = "left" if cx < 0.3 else "right" if cx > 0.7 else None
  vertical = "top" if cy < 0.3 else "bottom" if cy > 0.7 else None
  out.update(p for p in (horizontal, vertical) if p)
  if horizontal and vertical:
    out.add(f"{vertical} {horizontal}")
  if 0.35 < cx < 0.65 and 0.35 < cy < 0.65:
    out.add("centre")
  return out


def _before(a, b, lo: int, hi: int) -> bool:
  """a before b along one axis (lo, hi: the box's indices of that axis)."""
  narrower = min(a[hi] - a[lo], b[hi] - b[lo])
  return a[hi] - b[lo] <= 0.2 * narrower and a[lo] + a[hi] < b[lo] + b[hi]


def relation_holds(rel: str, a, b) -> bool:
  """Whether pixel box a stands in RELATIONS key `rel` to box b."""
  if rel == "left":
    return _before(a, b, 1, 3)
  if rel == "right":
    return _before(b, a, 1, 3)
  if rel == "above":
    return _before(a, b, 0, 2)
  if rel == "below":
    return _before(b, a, 0, 2)
  if rel == "next_to":
    overlap = min(a[2], b[2]) - max(a[0], b[0])
    gap = max(b[1] - a[3], a[1] - b[3])
    return ((_before(a, b, 1, 3) or _before(b, a, 1, 3))
            and overlap >= 0.5 * min(a[2] - a[0], b[2] - b[0])
            and gap <= max(a[3] - a[1], b[3] - b[1]))
  raise ValueError(f"Unknown relation {rel!r}; known: {sorted(RELATIONS)}.")


def matches(scene: scenes.Scene, k: int, ref) -> bool:
  """Whether object k of `scene` is what `ref` (group, size, colour, position) says."""
  group, size, colour, position = ref
  side, box = scene.image.shape[0], scene.boxes[k]
  return (int(scene.labels[k]) in NOUN_GROUPS[group]
          and (size is None or size_name(box, side) == size)
          and (colour is None or colour_name(scene.colours[k]) == colour)
          and (position is None or position in position_names(box, side)))


def holds(scene: scenes.Scene, fact) -> bool:
  """Whether `fact` (see the module docstring) is true of `scene`."""
  kind, objects = fact[0], range(len(scene.labels))
  if kind == "exists":
    return any(matches(scene, k, fact[1]) for k in objects)
  if kind == "count":
    return sum(matches(scene, k, fact[1]) for k in objects) == fact[2]
  if kind == "relation":
    _, ref_a, rel, ref_b = fact
    return any(a != b and matches(scene, a, ref_a) and matches(scene, b, ref_b)
               and relation_holds(rel, scene.boxes[a], scene.boxes[b])
               for a in objects for b in objects)
  if kind == "background":
    return scene.background_name == fact[1]
  raise ValueError(f"Unknown fact {fact!r}.")


# --- Reading a sentence back -------------------------------------------------------


def _phrases(table) -> list[tuple[tuple[str, ...], object]]:
  """[(tokens, value)] of {value: phrases}, longest first (for greedy matching)."""
  out = [(tuple(vocab.tokenize(p)), key) for key, phrases in table.items() for p in phrases]
  return sorted(out, key=lambda item: -len(item[0]))


_SINGULAR = _phrases({g: [s for s, _ in nouns] for g, nouns in GROUP_NOUNS.items()})
_PLURAL = _phrases({g: [p for _, p in nouns] for g, nouns in GROUP_NOUNS.items()})
_POSITIONS = _phrases(POSITIONS)
_RELATIONS = _phrases(RELATIONS)
_BACKGROUNDS = _phrases(BACKGROUND_WORDS)
_OPENERS = _phrases({o: (o,) for o in OPENERS})
_SETTINGS = _phrases({s: (s,) for s in SETTINGS})
_SIZES = {w: key for key, words in SIZE_WORDS.items() for w in words}


class _Reader:
  """Greedy left-to-right matching over a sentence's tokens."""

  def __init__(self, text: str):
    # vocab.tokenize's words, with the commas kept: "one number, one bag" is
    # not "one number one, bag".
    self.text, self.at = text, 0
    self.tokens = [w for part in text.lower().split(",") for w in [","] + vocab.tokenize(part)]
    self.tokens = self.tokens[1:]

  def match(self, table):
    for words, value in table:
      if tuple(self.tokens[self.at:self.at + len(words)]) == words:
        self.at += len(words)
        return value
    return None

  def word(self, *words) -> bool:
    if self.at < len(self.tokens) and self.tokens[self.at] in words:
      self.at += 1
      return True
    return False

  def fail(self, what: str):
    raise ParseError(f"{self.text!r}: expected {what} at word {self.at} "
                     f"({' '.join(self.tokens[self.at:]) or 'the end'!r}).")

  def noun_phrase(self, counted: bool = True):
    """("exists", ref) for "a/an [size] [colour] noun [position]", or
    ("count", ref, n) for "<count word> noun"."""
    if self.word("a", "an"):
      size = colour = None
      if self.at < len(self.tokens) and self.tokens[self.at] in _SIZES:
        size = _SIZES[self.tokens[self.at]]
        self.at += 1
      if self.at < len(self.tokens) and self.tokens[self.at] in COLOURS:
        colour = self.tokens[self.at]
        self.at += 1
      group = self.match(_SINGULAR) or self.fail("a noun")
      return ("exists", (group, size, colour, self.match(_POSITIONS)))
    if counted and self.at < len(self.tokens) and self.tokens[self.at] in COUNT_WORDS:
      n = COUNT_WORDS[self.tokens[self.at]]
      self.at += 1
      group = self.match(_SINGULAR if n == 1 else _PLURAL) or self.fail("a noun")
      return ("count", (group, None, None, None), n)
    return self.fail("a noun phrase")

  def more(self) -> bool:
    """Whether another noun phrase of a list follows (after ", " or " and ")."""
    return self.word(",", "and")

  def noun_phrases(self) -> list:
    out = [self.noun_phrase()]
    while self.more():
      out.append(self.noun_phrase())
    return out

  def end(self):
    if self.at != len(self.tokens):
      self.fail("the end")


def parse(sentence: str) -> frozenset:
  """The facts `sentence` states (see the module docstring).

  Raises:
    ParseError: the sentence is not in the captions' grammar (a generator bug).
  """
  r = _Reader(sentence)
  for before, after in EMPTY_TEMPLATES:
    r.at = 0
    if r.match([(tuple(vocab.tokenize(before)), True)]):
      name = r.match(_BACKGROUNDS)
      if name and r.match([(tuple(vocab.tokenize(after)), True)]) and r.at == len(r.tokens):
        return frozenset({("count", ("object", None, None, None), 0), ("background", name)})
  r.at = 0
  facts = set()
  r.match(_OPENERS)
  start = r.at
  name = r.match(_BACKGROUNDS)
  if name and r.word("with"):  # "a photo of grass with a red bag and two digits"
    facts.add(("background", name))
    facts.update(r.noun_phrases())
    r.end()
    return frozenset(facts)
  r.at = start
  first = r.noun_phrase()
  verb = r.word("is")
  rel = r.match(_RELATIONS)
  if verb and not rel:
    r.fail("a relation")
  if rel:
    second = r.noun_phrase(counted=False)
    facts.add(("relation", first[1], rel, second[1]))
  else:
    facts.add(first)
    if r.more():
      facts.update(r.noun_phrases())
  if r.match(_SETTINGS):
    facts.add(("background", r.match(_BACKGROUNDS) or r.fail("a background")))
  r.end()
  return frozenset(facts)
