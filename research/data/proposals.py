"""Selective search region proposals (Uijlings et al. 2013), as R-CNN and Fast R-CNN use them.

R-CNN (§2.1) and Fast R-CNN take about 2,000 class-independent proposals per
image from selective search's "fast mode": hierarchical grouping of a
Felzenszwalb-Huttenlocher over-segmentation under several colour spaces and
similarity measures, each merged region's box a proposal, ranked
pseudo-randomly by merge level. This is CPU preprocessing, computed once per
image and cached; the detectors read the boxes.

The segmentation is OpenCV's implementation,
cv2.ximgproc.segmentation.createSelectiveSearchSegmentation (from
opencv-contrib-python-headless, pinned in requirements.txt). Its ranking
draws from C's rand(), so each call seeds it (srand(seed), under a lock)
and the output is a function of the image and the settings. Boxes come back
in boxes.py's layout: float32 [K, 4] [ymin, xmin, ymax, xmax] pixels, no +1
(a cv::Rect (x, y, w, h) covers columns x .. x + w - 1, so xmax = x + w).

The cache: one .npz per image (boxes and the seconds selective search took,
so the proposal time is reported even when read back) under
<root>/<dataset>/<split>/<settings tag>/<example index>.npz, the settings tag
naming every setting and the OpenCV version (another version may segment
differently). The detectors put root at <data_dir>/proposals, beside TFDS's
prepared datasets (`default_cache_dir`).
"""

import ctypes
import dataclasses
import os
import threading
import time
from typing import NamedTuple

import numpy as np

from research import errors
from research.data import reader

MODES = ("fast", "quality", "single")
_SEED_LOCK = threading.Lock()  # C's rand() is process-wide: one seeded run at a time.


@dataclasses.dataclass(frozen=True)
class ProposalSettings:
  """Selective search settings; every field is part of the cache key.

  mode: OpenCV's strategy: "fast" (switchToSelectiveSearchFast with its
    defaults; the paper's "fast mode", which R-CNN uses), "quality" (more
    colour spaces, segmentation scales and similarities: slower, more boxes),
    or "single" (one segmentation and similarity).
  max_proposals: keep the first this many by selective search's rank (2,000
    in R-CNN).
  min_side: drop boxes with a side shorter than this, in pixels of the
    original image (tiny boxes: R-CNN's code drops those under 20 pixels at
    500 pixels wide; our scenes are smaller).
  resize_width: run on the image resized to this width (R-CNN's code uses
    500) and map the boxes back; None runs at the image's own size.
  seed: seeds OpenCV's pseudo-random ranking.
  """
  mode: str = "fast"
  max_proposals: int = 2000
  min_side: float = 8.0
  resize_width: int | None = None
  seed: int = 0

  def validate(self, key: str = "proposals") -> None:
    """Raises errors.ConfigError naming config.<key>.<field> for an impossible setting."""
    errors.require(self.mode in MODES, f"{key}.mode", self.mode, f"must be one of {MODES}")
    errors.require(isinstance(self.max_proposals, int) and self.max_proposals > 0,
                   f"{key}.max_proposals", self.max_proposals,
                   "must be a positive int (2000 in R-CNN)")
    errors.require(self.min_side >= 0, f"{key}.min_side", self.min_side,
                   "must be >= 0 pixels")
    errors.require(self.resize_width is None or self.resize_width >= 16, f"{key}.resize_width",
                   self.resize_width, "must be None (the image's own size) or >= 16 pixels")

  def tag(self) -> str:
    """The cache folder's name: every setting and the OpenCV version."""
    import cv2
    width = "native" if self.resize_width is None else str(self.resize_width)
    return (f"{self.mode}_max{self.max_proposals}_min{self.min_side:g}_w{width}_seed{self.seed}"
            f"_cv{cv2.__version__}")


class Proposals(NamedTuple):
  """One image's proposals, as selective_search and ProposalCache.get return them."""
  boxes: np.ndarray  # float32 [K, 4], K <= max_proposals, pixels, in selective search's rank order.
  seconds: float     # Time selective search took on this image (when it was computed).
  cached: bool       # Read from the cache.


def _as_rgb_uint8(image) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    image = np.stack([image] * 3, axis=-1)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 2:
    raise ValueError(f"selective_search: needs a uint8 image [H, W, 3] (or [H, W] / [H, W, 1]) "
                     f"of at least 2 x 2 pixels, got {image.dtype} {image.shape}: pass the "
                     "decoded image as the dataset stores it")
  return image


def selective_search(image, settings: ProposalSettings = ProposalSettings()) -> Proposals:
  """Selective search proposals of one image (R-CNN §2.1; OpenCV's implementation).

  Args:
    image: uint8 [H, W, 3] RGB (grey [H, W] or [H, W, 1] is repeated to 3).
    settings: ProposalSettings.

  Returns:
    Proposals (cached=False): boxes float32 [K, 4] [ymin, xmin, ymax, xmax] in
    pixels, inside [0, H] x [0, W], no two equal, each side >= min_side, at
    most max_proposals, in selective search's rank order; and the seconds
    the search took (resizing included).

  Raises:
    ValueError: an image that is not uint8 [H, W, 3]; errors.ConfigError: bad settings.
  """
  import cv2
  settings.validate()
  image = _as_rgb_uint8(image)
  h, w = image.shape[:2]
  start = time.perf_counter()
  scale_y = scale_x = 1.0
  work = image
  if settings.resize_width is not None and settings.resize_width != w:
    new_h = max(2, round(h * settings.resize_width / w))
    work = cv2.resize(image, (settings.resize_width, new_h), interpolation=cv2.INTER_LINEAR)
    scale_y, scale_x = h / new_h, w / settings.resize_width
  search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
  search.setBaseImage(cv2.cvtColor(work, cv2.COLOR_RGB2BGR))
  {"fast": search.switchToSelectiveSearchFast, "quality": search.switchToSelectiveSearchQuality,
   "single": search.switchToSingleStrategy}[settings.mode]()
  with _SEED_LOCK:
    ctypes.CDLL(None).srand(ctypes.c_uint(settings.seed))
    rects = np.asarray(search.process(), np.float64).reshape(-1, 4)  # (x, y, w, h)
  seconds = time.perf_counter() - start
  boxes = np.stack([rects[:, 1] * scale_y, rects[:, 0] * scale_x,
                    (rects[:, 1] + rects[:, 3]) * scale_y, (rects[:, 0] + rects[:, 2]) * scale_x],
                   axis=1)
  boxes = np.clip(boxes, 0, [h, w, h, w]).astype(np.float32)
  keep = ((boxes[:, 2] - boxes[:, 0]) >= settings.min_side) & (
      (boxes[:, 3] - boxes[:, 1]) >= settings.min_side)
  boxes = boxes[keep]
  _, first = np.unique(boxes, axis=0, return_index=True)  # Duplicates: keep the best-ranked.
  boxes = boxes[np.sort(first)][:settings.max_proposals]
  return Proposals(boxes, seconds, False)


def settings_from_config(p, key: str) -> ProposalSettings:
  """A config's selective search settings (a ConfigDict or mapping with
  ProposalSettings' fields; resize_width 0: the image's own size; other keys
  are not read) as ProposalSettings. Raises errors.ConfigError naming
  config.<key>.<field> for an impossible setting."""
  settings = ProposalSettings(mode=p["mode"], max_proposals=p["max_proposals"],
                              min_side=float(p["min_side"]),
                              resize_width=p["resize_width"] or None, seed=p["seed"])
  settings.validate(key)
  return settings


def default_cache_dir(data_dir: str | None = None) -> str:
  """<data_dir>/proposals, data_dir defaulting as the readers' (TFDS_DATA_DIR or ~/tensorflow_datasets)."""
  return os.path.join(data_dir or reader.default_data_dir(), "proposals")


def _safe(part: str) -> str:
  return "".join(ch if ch.isalnum() or ch in "-_.[]" else "_" for ch in str(part))


class ProposalCache:
  """Selective search computed once per (dataset, split, example index, settings).

  Safe for several processes at once: each entry is written to a temporary
  file and renamed into place, so a reader sees a whole entry or none (two
  processes may both compute an entry; the results are equal).
  """

  def __init__(self, root: str, settings: ProposalSettings = ProposalSettings()):
    settings.validate()
    self.root = root
    self.settings = settings

  def path(self, dataset: str, split: str, index: int) -> str:
    """The entry's file: <root>/<dataset>/<split>/<settings tag>/<index>.npz."""
    return os.path.join(self.root, _safe(dataset), _safe(split), self.settings.tag(),
                        f"{int(index)}.npz")

  def load(self, dataset: str, split: str, index: int) -> Proposals | None:
    """The stored proposals of example `index` of dataset/split, or None."""
    path = self.path(dataset, split, index)
    if not os.path.exists(path):
      return None
    with np.load(path) as entry:
      return Proposals(entry["boxes"], float(entry["seconds"]), True)

  def get(self, dataset: str, split: str, index: int, image) -> Proposals:
    """The proposals of example `index` of dataset/split, whose decoded image is
    `image` (uint8 [H, W, 3]): read from the cache, or computed and stored."""
    found = self.load(dataset, split, index)
    if found is not None:
      return found
    path = self.path(dataset, split, index)
    found = selective_search(image, self.settings)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as f:
      np.savez(f, boxes=found.boxes, seconds=np.float64(found.seconds))
    os.replace(tmp, path)
    return found


def pad_proposals(boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """[K, 4] boxes -> (float32 [size, 4], bool [size] mask): the first `size`
  boxes, zero-padded, for the jitted targets (detection_targets.sample_rois)."""
  boxes = np.asarray(boxes, np.float32)[:size]
  out = np.zeros((size, 4), np.float32)
  out[:len(boxes)] = boxes
  return out, np.arange(size) < len(boxes)


@dataclasses.dataclass(frozen=True)
class SplitProposals:
  """The cached proposals of one dataset split, as the detectors' input split reads them.

  cache: where they live (computed on a miss); dataset, split: the cache key's
  names (config.data.name and the split's name); count: the slots per image
  in a batch (boxes beyond it, in selective search's rank order, are dropped;
  fewer are padded with a mask).
  """
  cache: ProposalCache
  dataset: str
  split: str
  count: int

  @classmethod
  def open(cls, settings: ProposalSettings, dataset: str, split: str, count: int, *,
           cache_dir: str = "", data_dir: str | None = None) -> "SplitProposals":
    """The proposals of dataset/split in the cache at cache_dir ("": the shared
    default_cache_dir(data_dir), beside the prepared datasets)."""
    return cls(ProposalCache(cache_dir or default_cache_dir(data_dir), settings), dataset, split,
               count)

  def get(self, index: int, image) -> Proposals:
    """Example `index`'s proposals (original pixels), read or computed."""
    return self.cache.get(self.dataset, self.split, index, image)

  def missing(self, indices) -> list[int]:
    """The example indices among `indices` with no cache entry yet."""
    return [int(i) for i in indices
            if not os.path.exists(self.cache.path(self.dataset, self.split, int(i)))]

  def precompute(self, read_image, indices, log=print, every_s: float = 30.0) -> int:
    """Fills the cache for `indices` (read_image(index) -> uint8 [H, W, 3]),
    logging progress with rate and time left about every `every_s` seconds;
    returns how many were computed (entries present are skipped, so a killed
    run resumes where it stopped)."""
    todo = self.missing(indices)
    start = last = time.perf_counter()
    for done, index in enumerate(todo, start=1):
      self.get(index, read_image(index))
      now = time.perf_counter()
      if now - last >= every_s or done == len(todo):
        rate = done / (now - start)
        log(f"selective search {self.dataset}[{self.split}]: {done}/{len(todo)} images, "
            f"{rate:.1f} images/s, {(len(todo) - done) / rate:.0f} s left")
        last = now
    return len(todo)

  def read(self, read_image, indices, log=print) -> tuple[list[np.ndarray], np.ndarray]:
    """(all boxes of each image, float32 [K_i, 4] in original pixels (not cut to
    `count`), selective search's stored seconds float64 [n]) of `indices`, in
    order; entries missing from the cache are computed first (`precompute`)."""
    self.precompute(read_image, indices, log)
    found = [self.cache.load(self.dataset, self.split, int(i)) for i in indices]
    return [f.boxes for f in found], np.asarray([f.seconds for f in found], np.float64)
