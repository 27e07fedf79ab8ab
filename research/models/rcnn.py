"""R-CNN's per-region pieces (Girshick, Donahue, Darrell & Malik 2014): warped regions and their features.

R-CNN runs the whole CNN once per region proposal: each proposal is dilated to
include context, warped (anisotropically) to the CNN's fixed input, and the
fine-tuned network's fc7 activations are the features of the class SVMs
(research/train/svm.py) and its pool5 features those of the box regressors.
The network is any registered classifier whose features dict holds the layer
(VGG and AlexNet expose fc6 and fc7); its fine-tuning labels come from
research/ops/rcnn_targets.py.
"""

import jax
import jax.numpy as jnp
import numpy as np

# R-CNN §2.1 / appendix A: "we dilate the tight bounding box so that at the warped size
# there are exactly p = 16 pixels of warped image context around the original box".
# At a smaller input size S, the same proportion of context is 16 S / 227 pixels (`scaled_context`).
CONTEXT_PADDING = 16
INPUT_SIZE = 227  # CaffeNet's input (the paper's); VGG-16 takes 224.


def scaled_context(output_size: int) -> float:
  """The paper's context, 16 pixels of 227, at another warp size (e.g. 4.5 at 64)."""
  return CONTEXT_PADDING * output_size / INPUT_SIZE


def context_boxes(boxes, output_size: int, context: float = CONTEXT_PADDING):
  """The dilated boxes R-CNN warps: float [N, 4] -> [N, 4] pixels.

  A region h x w warps to output_size with p = context pixels of context on
  each side, so the box itself fills output_size - 2p pixels: each side moves
  out by p h / (output_size - 2p) (resp. w). Sizes under 1 pixel count as 1.

  Raises:
    ValueError: 2 * context >= output_size (no room for the box).
  """
  if not 0 <= 2 * context < output_size:
    raise ValueError(f"context={context} pixels on each side leaves no room in a "
                     f"{output_size}-pixel warp; use 0 <= context < {output_size / 2:g} "
                     "(R-CNN: 16 of 227).")
  boxes = jnp.asarray(boxes, jnp.float32)
  size = jnp.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)  # (h, w)
  pad = size * (context / (output_size - 2 * context))
  return jnp.concatenate([boxes[:, :2] - pad, boxes[:, :2] + size + pad], axis=-1)


def warp_regions(image, boxes, output_size: int, context: float = CONTEXT_PADDING,
                 antialias: bool = False):
  """R-CNN's warped regions (§2.1 "Region proposals" and appendix A): one CNN input per box.

  Each box is dilated by `context_boxes` and the dilated box (not clipped)
  resampled bilinearly to output_size x output_size, whatever its aspect ratio
  ("we warp all pixels in a tight bounding box around it to the required
  size"). Output pixel (i, j) reads the image at the continuous point
  y0 + (i + 0.5) h' / S, x0 + (j + 0.5) w' / S (pixel centres at k + 0.5) of
  the dilated box [y0, x0, y0 + h', x0 + w']. A point outside the image reads
  0 (R-CNN fills the part of the dilated box beyond the image with the
  image mean, 0 for standardised inputs); within half a pixel of the border
  it reads the border pixel. jax.image.scale_and_translate does the
  resampling (its "linear" kernel; antialias=True widens it when shrinking,
  R-CNN's code (imresize, 'antialiasing' false) did not).

  Args:
    image: float [H, W, C], standardised (the fill is 0).
    boxes: float [N, 4] pixels [ymin, xmin, ymax, xmax].
    output_size: static int S (227 in the paper).
    context: pixels of warped context on each side (16).
    antialias: static bool.

  Returns:
    float32 [N, S, S, C].
  """
  image = jnp.asarray(image, jnp.float32)
  dilated = context_boxes(boxes, output_size, context)
  size = dilated[:, 2:] - dilated[:, :2]
  scale = output_size / size                      # [N, 2] output pixels per input pixel.
  translation = -dilated[:, :2] * scale

  def one(s, t):
    return jax.image.scale_and_translate(image, (output_size, output_size, image.shape[2]),
                                         (0, 1), s, t, "linear", antialias=antialias)
  return jax.vmap(one)(scale, translation)


def warp_pixels(image, boxes, output_size: int, context: float, fill):
  """`warp_regions` on a uint8 image, as uint8 crops a classifier reads (R-CNN §2.1, appendix A).

  The part of a dilated box beyond the image reads `fill`, R-CNN's image mean
  (warp_regions fills 0 after mean subtraction; this warps image - fill and
  adds fill back). Fine-tuning batches and test-time regions both come from
  here, so the network sees the same warps in training and at test.

  Args:
    image: uint8 (or float in 0..255) [H, W, C].
    boxes: float [N, 4] pixels [ymin, xmin, ymax, xmax].
    output_size: static int S; context: pixels of warped context per side.
    fill: float [C] in 0..255, the colour outside the image.

  Returns:
    uint8 [N, S, S, C], rounded.
  """
  fill = jnp.asarray(fill, jnp.float32)
  warped = warp_regions(jnp.asarray(image, jnp.float32) - fill, boxes, output_size, context)
  return jnp.clip(jnp.round(warped + fill), 0, 255).astype(jnp.uint8)


def region_features(apply_fn, image, boxes, output_size: int, context: float = CONTEXT_PADDING,
                    layer: str = "fc7"):
  """The CNN's `layer` activations for each warped region (R-CNN §2.1 "Feature extraction").

  Args:
    apply_fn: images float [N, S, S, C] -> (logits, features dict), e.g.
      lambda x: model.apply(variables, x, train=False).
    image: float [H, W, C], standardised as the network's training inputs.
    boxes: float [N, 4] pixels.
    output_size, context: as warp_regions.
    layer: the features key (fc7: the SVMs' input; R-CNN's pool5 for the regressors).

  Returns:
    float [N, D], the layer flattened per region.

  Raises:
    KeyError: the network has no such feature (naming the ones it has).
  """
  _, features = apply_fn(warp_regions(image, boxes, output_size, context))
  if layer not in features:
    raise KeyError(f"the network's features have no {layer!r}; they have {sorted(features)}.")
  x = features[layer]
  return x.reshape(x.shape[0], -1)


def in_chunks(fn, boxes: np.ndarray, chunk: int) -> np.ndarray:
  """fn(boxes [chunk, 4]) -> [chunk, ...] over all N boxes, chunk at a time (the last
  padded by repeating box 0, so fn compiles once); NumPy [N, ...] out.

  Thousands of proposals per image do not fit in one batch of warped crops.
  """
  boxes = np.asarray(boxes, np.float32)
  n = len(boxes)
  if n == 0:
    raise ValueError("in_chunks: no boxes; an image without proposals has no features.")
  out = []
  for start in range(0, n, chunk):
    part = boxes[start:start + chunk]
    pad = chunk - len(part)
    if pad:
      part = np.concatenate([part, np.repeat(boxes[:1], pad, axis=0)])
    out.append(np.asarray(fn(jnp.asarray(part)))[:chunk - pad])
  return np.concatenate(out)
