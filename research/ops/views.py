"""Test-time views: a classifier's class posterior for a batch, read from one or
several views of each image, pure and jittable.

Views are named by strings (`config.eval_views`):

  central             the image as given (the eval pipeline's crop or resize).
  central_crop(s)     its centre s x s crop: the "single-crop" evaluation beside
                      ten_crop on the same images (He et al. 2016, Table 3).
  ten_crop(s)         the four corner and the centre s x s crops and their
                      horizontal flips, softmax outputs averaged (Krizhevsky et
                      al. 2012, §4.1: "averaging the predictions made by the
                      network's softmax layer on the ten patches").
  dense(q1,q2,...)    Simonyan & Zisserman 2015, §3.2 and §4.2: the image
                      rescaled so its shorter side is each q, the network
                      applied fully convolutionally (its FC layers as
                      convolutions, `models.common.classifier(dense=True)`),
                      the class score map averaged spatially, then the softmax
                      posteriors averaged over the scales and the horizontal flip.

Every view returns log class posteriors [B, K] (float32): the log-softmax of
the logits for one view, the log of the averaged softmax for several. The
functions take `apply_fn(params, x) -> logits [B, K]` (dense: `dense_apply_fn(
params, x) -> scores [B, H', W', K]`), x float [B, H, W, C] in the units the
apply function expects (the objective passes [0, 1] pixels and standardises
inside: crops, flips and bilinear resizes commute with per-channel
standardisation). Several views of a batch run one after another
(`jax.lax.map`), so memory stays that of one view.
"""

import dataclasses
import math
import re
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

KINDS = {"central": 0, "central_crop": 1, "ten_crop": 1, "dense": -1}  # Kind: argument count (-1: >= 1).
_SPEC = re.compile(r"^([a-z_]+)(?:\(([^()]*)\))?$")


@dataclasses.dataclass(frozen=True)
class View:
  """A parsed view name: its kind and integer arguments."""
  kind: str
  args: tuple[int, ...] = ()

  @property
  def name(self) -> str:
    """The canonical name, e.g. "ten_crop(224)": metrics are named after it."""
    return self.kind + (f"({','.join(map(str, self.args))})" if self.args else "")

  @property
  def needs_dense(self) -> bool:
    """Whether the view applies the network fully convolutionally."""
    return self.kind == "dense"


def parse(spec: str) -> View:
  """"ten_crop(224)" -> View("ten_crop", (224,)).

  Raises:
    ValueError: an unknown kind, a wrong argument count, or an argument that is
      not a positive integer; the message lists the known views.
  """
  known = "central, central_crop(s), ten_crop(s), dense(q1,q2,...)"
  match = _SPEC.match(spec.replace(" ", ""))
  if not match or match.group(1) not in KINDS:
    raise ValueError(f"unknown view {spec!r}; known: {known}.")
  kind, arg_text = match.groups()
  parts = [a for a in (arg_text or "").split(",") if a]
  if not all(a.isdigit() and int(a) > 0 for a in parts):
    raise ValueError(f"view {spec!r}: the arguments must be positive integers (pixels).")
  count = KINDS[kind]
  if (count >= 0 and len(parts) != count) or (count < 0 and not parts):
    raise ValueError(f"view {spec!r} takes {'one or more' if count < 0 else count} "
                     f"argument(s); known: {known}.")
  return View(kind, tuple(int(a) for a in parts))


def check_image_size(view: View, image_hw: Sequence[int]) -> None:
  """Raises ValueError when `view` cannot read images of [H, W] `image_hw`
  (a crop larger than the image)."""
  h, w = image_hw
  if view.kind in ("central_crop", "ten_crop") and view.args[0] > min(h, w):
    raise ValueError(f"view {view.name!r} crops {view.args[0]} x {view.args[0]} from eval "
                     f"images of {h} x {w}; make the crop smaller or the eval images larger "
                     "(data.eval_pp).")


def _crop(images: jax.Array, top: int, left: int, size: int) -> jax.Array:
  return images[:, top:top + size, left:left + size, :]


def _flip(images: jax.Array) -> jax.Array:
  return images[:, :, ::-1, :]


def _mean_posterior(log_probs: jax.Array) -> jax.Array:
  """[V, B, K] log posteriors -> log of their mean over the views, [B, K]."""
  return jax.nn.logsumexp(log_probs, axis=0) - math.log(log_probs.shape[0])


def central(apply_fn: Callable, params, images: jax.Array) -> jax.Array:
  """[B, H, W, C] -> log posteriors [B, K] of the image as given."""
  return jax.nn.log_softmax(apply_fn(params, images).astype(jnp.float32))


def central_crop(apply_fn: Callable, params, images: jax.Array, size: int) -> jax.Array:
  """[B, H, W, C] -> log posteriors [B, K] of the centre size x size crop."""
  h, w = images.shape[1:3]
  return central(apply_fn, params, _crop(images, (h - size) // 2, (w - size) // 2, size))


def ten_crop(apply_fn: Callable, params, images: jax.Array, size: int) -> jax.Array:
  """[B, H, W, C] -> log of the softmax averaged over AlexNet's ten size x size
  patches (§4.1): the four corners and the centre, and their horizontal flips."""
  h, w = images.shape[1:3]
  corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size),
             ((h - size) // 2, (w - size) // 2)]
  crops = [_crop(images, top, left, size) for top, left in corners]
  stacked = jnp.stack(crops + [_flip(c) for c in crops])   # [10, B, size, size, C]
  log_probs = jax.lax.map(lambda x: central(apply_fn, params, x), stacked)
  return _mean_posterior(log_probs)


def rescale_shorter_side(images: jax.Array, size: int) -> jax.Array:
  """[B, H, W, C] -> [B, H', W', C], isotropically (bilinear, antialiased) so that
  min(H', W') = size; the longer side rounds to the nearest pixel."""
  b, h, w, c = images.shape
  if h <= w:
    hw = (size, max(size, round(w * size / h)))
  else:
    hw = (max(size, round(h * size / w)), size)
  return jax.image.resize(images, (b, *hw, c), "bilinear", antialias=True)


def dense(dense_apply_fn: Callable, params, images: jax.Array,
          scales: Sequence[int]) -> jax.Array:
  """[B, H, W, C] -> log posteriors [B, K] of VGG's dense multi-scale evaluation.

  For each q of `scales` and each of the image and its horizontal flip: the
  image rescaled to shorter side q, `dense_apply_fn` -> scores [B, H', W', K]
  averaged over H' and W' (§3.2's sum-pooling), softmax; the log of the mean
  of the 2 len(scales) posteriors (§4.2).

  Raises:
    ValueError (at trace time): a scale at which the score map is empty (the
      rescaled image smaller than the network's training size).
  """
  log_probs = []
  for q in scales:
    x = rescale_shorter_side(images, q)

    def posterior(v, q=q):
      scores = dense_apply_fn(params, v).astype(jnp.float32)
      if scores.ndim != 4 or 0 in scores.shape[1:3]:
        raise ValueError(f"dense view at scale {q}: a class score map of shape "
                         f"{scores.shape}; the rescaled image must be at least the "
                         "network's training size.")
      return jax.nn.log_softmax(scores.mean(axis=(1, 2)))

    log_probs.append(jax.lax.map(posterior, jnp.stack([x, _flip(x)])))
  return _mean_posterior(jnp.concatenate(log_probs))


def log_posteriors(view: View, apply_fn: Callable, params, images: jax.Array,
                   dense_apply_fn: Callable | None = None) -> jax.Array:
  """The view's log posteriors [B, K] (module docstring); `dense_apply_fn` is
  needed by dense views only."""
  if view.kind == "central":
    return central(apply_fn, params, images)
  if view.kind == "central_crop":
    return central_crop(apply_fn, params, images, view.args[0])
  if view.kind == "ten_crop":
    return ten_crop(apply_fn, params, images, view.args[0])
  if dense_apply_fn is None:
    raise ValueError(f"view {view.name!r} needs a dense (fully convolutional) apply function.")
  return dense(dense_apply_fn, params, images, view.args)
