"""Anchors of a region proposal network (Ren, He, Girshick & Sun 2015, "Faster R-CNN", §3.1.1).

At each position of a stride-s feature map, k = len(aspect_ratios) x len(sizes)
reference boxes centred on that position ("3 scales and 3 aspect ratios,
yielding k = 9 anchors at each sliding position"; box areas 128², 256², 512²,
ratios 1:1, 1:2, 2:1, on VGG16's stride-16 conv5_3). Boxes follow boxes.py's
conventions, in input-image pixels: position (i, j) is centred at
((i + 0.5) s, (j + 0.5) s), the centre of the s x s patch of pixels it sits
over. py-faster-rcnn's generate_anchors uses the +1 convention and rounds
widths to whole pixels (its 128² anchor at 1:2 is 184 x 96); we do neither:
an anchor of size S and ratio r is S sqrt(r) high and S / sqrt(r) wide (area
S², ratio = height / width, as py-faster-rcnn's).
"""

import math

import jax.numpy as jnp
import numpy as np

from research import errors

# The paper's VGG16 setting (§3.1.1 and §4.1, "Implementation Details").
FASTER_RCNN_SIZES = (128.0, 256.0, 512.0)
FASTER_RCNN_RATIOS = (0.5, 1.0, 2.0)
FASTER_RCNN_STRIDE = 16


def anchor_shapes(sizes, aspect_ratios) -> np.ndarray:
  """float32 [A, 2] (height, width) of the A = len(ratios) x len(sizes) anchors,
  ratio-major (all sizes of the first ratio, then the next), as py-faster-rcnn."""
  r = np.asarray(aspect_ratios, np.float64)[:, None]
  s = np.asarray(sizes, np.float64)[None, :]
  return np.stack([(s * np.sqrt(r)).ravel(), (s / np.sqrt(r)).ravel()], axis=-1).astype(np.float32)


def grid_anchors(feature_hw: tuple[int, int], stride: float, sizes=FASTER_RCNN_SIZES,
                 aspect_ratios=FASTER_RCNN_RATIOS) -> jnp.ndarray:
  """Every anchor of a feature map, in the order of an RPN head's outputs.

  Args:
    feature_hw: static (H, W) of the feature map.
    stride: input pixels per feature cell (16 for VGG16 conv5_3).
    sizes: anchor side lengths sqrt(area) in pixels.
    aspect_ratios: height / width of each shape.

  Returns:
    float32 [H * W * A, 4] boxes [ymin, xmin, ymax, xmax] in input pixels,
    ordered (row, column, anchor) so that a head's [B, H, W, A * 4] output
    reshaped to [B, H * W * A, 4] lines up (A as in `anchor_shapes`). Not
    clipped: anchors may cross the image border (Faster R-CNN §3.1.3 ignores
    those in training and clips them at test time).
  """
  h, w = feature_hw
  shapes = jnp.asarray(anchor_shapes(sizes, aspect_ratios))  # [A, 2]
  cy = (jnp.arange(h, dtype=jnp.float32) + 0.5) * stride
  cx = (jnp.arange(w, dtype=jnp.float32) + 0.5) * stride
  centres = jnp.stack(jnp.meshgrid(cy, cx, indexing="ij"), axis=-1)  # [H, W, 2]
  half = 0.5 * shapes
  boxes = jnp.concatenate([centres[:, :, None] - half, centres[:, :, None] + half], axis=-1)
  return boxes.reshape(-1, 4)


def best_centred_iou(object_size: float, sizes, aspect_ratios) -> float:
  """The highest IoU a square object of side object_size can have with any
  anchor shape, both centred at the same point (the best case)."""
  shapes = anchor_shapes(sizes, aspect_ratios).astype(np.float64)
  inter = np.minimum(shapes[:, 0], object_size) * np.minimum(shapes[:, 1], object_size)
  union = shapes[:, 0] * shapes[:, 1] + object_size ** 2 - inter
  return float(np.max(inter / union))


def validate_anchors(image_hw: tuple[int, int], feature_hw: tuple[int, int], stride: int,
                     sizes, aspect_ratios, object_sizes: tuple[float, float] | None = None,
                     min_iou: float = 0.5, key: str = "model.anchors",
                     keys: dict | None = None) -> None:
  """Refuses an anchor config that cannot cover the image, before any work.

  Checks, each a one-line ConfigError naming config.<key>.<field>:
    - sizes and aspect_ratios are non-empty and positive, stride a positive int;
    - the feature map agrees with the image and stride: |H_f s - H| < s (the
      feature map of a stride-s network is H/s rounded either way), else the
      anchors' centres do not sit over the image;
    - at least one anchor lies inside the image: Faster R-CNN (§3.1.3) trains
      only on anchors that do not cross the border, so anchors all larger
      than the image leave the RPN nothing to learn from;
    - if object_sizes = (smallest, largest) side in pixels of the data's
      objects is given: every object size in that range has an anchor shape
      with centred IoU >= min_iou (`best_centred_iou`, a best case: a
      necessary condition). The paper's sizes, a factor 2 apart, give every
      square object from 128/sqrt(2) to 512 sqrt(2) pixels an anchor with IoU
      >= 0.5, hence the default.

  Args:
    image_hw: (height, width) of the input images in pixels.
    feature_hw: (height, width) of the feature map the anchors sit on.
    stride, sizes, aspect_ratios: as `grid_anchors`.
    object_sizes: optional (smallest, largest) object side in pixels.
    min_iou: float in (0, 1].
    key: the config key of the anchor settings, for messages.
    keys: optional {field: config key} where a field's key is not
      "<key>.<field>" (fields: sizes, aspect_ratios, stride, object_sizes).

  Raises:
    errors.ConfigError.
  """
  key_of = lambda field: (keys or {}).get(field, f"{key}.{field}")
  require = errors.require
  sizes, ratios = tuple(sizes), tuple(aspect_ratios)
  require(len(sizes) > 0 and all(s > 0 for s in sizes), key_of("sizes"), sizes,
          "needs one or more positive anchor side lengths in pixels, e.g. (128, 256, 512)")
  require(len(ratios) > 0 and all(r > 0 for r in ratios), key_of("aspect_ratios"), ratios,
          "needs one or more positive height/width ratios, e.g. (0.5, 1, 2)")
  require(isinstance(stride, (int, np.integer)) and stride > 0, key_of("stride"), stride,
          "must be a positive int: input pixels per feature cell (16 for VGG16 conv5_3)")
  for axis, (image, feature) in enumerate(zip(image_hw, feature_hw)):
    name = ("height", "width")[axis]
    require(feature > 0 and abs(feature * stride - image) < stride, key_of("stride"), stride,
            f"a feature map {feature} cells {name} at stride {stride} spans {feature * stride} "
            f"pixels, but the image is {image} pixels {name}: the stride must be the "
            f"network's (image {name} / feature {name} = {image / max(feature, 1):.2f})")
  anchors = np.asarray(grid_anchors(tuple(feature_hw), stride, sizes, ratios))
  inside = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= image_hw[0])
            & (anchors[:, 3] <= image_hw[1]))
  shapes = anchor_shapes(sizes, ratios)
  require(bool(inside.any()), key_of("sizes"), sizes,
          f"no anchor fits inside the {image_hw[0]}x{image_hw[1]} image (the smallest is "
          f"{shapes[:, 0].min():.0f}x{shapes[:, 1].min():.0f}), and Faster R-CNN trains only on "
          "anchors within the image: add smaller sizes or use larger images")
  if object_sizes is None:
    return
  small, large = object_sizes
  require(0 < small <= large, key_of("object_sizes"), object_sizes,
          "needs (smallest, largest) object side in pixels, 0 < smallest <= largest")
  # IoU against size is unimodal around each anchor size, so a fine geometric
  # grid of the range (with both ends) finds any gap between the sizes.
  grid = np.geomspace(small, large, 257) if large > small else np.asarray([small])
  for size in grid:
    best = best_centred_iou(size, sizes, ratios)
    if best < min_iou - 1e-6:
      what = ("a larger" if size > max(sizes) else "a smaller" if size < min(sizes)
              else "an intermediate")
      require(False, key_of("sizes"), sizes,
              f"an object of {size:.0f} pixels (data range {small:g}-{large:g}) has IoU at most "
              f"{best:.2f} < {min_iou} with every anchor, even centred on it: add {what} size "
              f"(sizes a factor 2 apart cover {min(sizes) / math.sqrt(2):.0f}-"
              f"{max(sizes) * math.sqrt(2):.0f} pixels at IoU 0.5)")
