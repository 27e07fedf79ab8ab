"""The distorted MNIST variants of Spatial Transformer Networks (Jaderberg et al.
2015, §4.1 and Appendix A), generated from real 28x28 images, in NumPy.

Every function maps (images uint8 [N, h, w, C], seed, indices) to uint8
[N, H, W, C] with an explicit output size. Example i's randomness comes only
from (seed, indices[i]) through its own generator, so an example comes out the
same in any batch, chunk or subset (indices default to 0..N-1).

  r    rotated: uniform angle in ±90°, same size (Appendix A "R").
  rts  rotated ±45°, scaled by U(0.7, 1.2) and placed at a uniformly random
       position of a 42x42 canvas ("RTS"). The position keeps the scaled
       (unrotated) 28x28 square inside the canvas, where it fits.
  p    projective ("P"): each corner coordinate of the image is scaled by
       (1 + eps), eps ~ N(0, 0.1^2) (in units of the half-size: a Gaussian
       move of the corners), then the whole image by U(0.75, 1.0); the image
       is warped by the homography taking the corners there.
  e    elastic ("E"): Simard, Steinkraus & Platt 2003 (§2): per-pixel
       displacements U(-1, 1), smoothed by a Gaussian of std sigma = 4 px and
       scaled by alpha = 34, the values they report for MNIST. The paper's own
       E recipe is not reproduced; this is the standard elastic distortion.
  t    translated: the digit pasted unchanged at a uniformly random position of
       a 60x60 canvas.
  tc   translated and cluttered: as t, plus 8 clutter patches of 8x8 pixels
       cut at random from other images of `clutter_images` and pasted at random
       positions (pixelwise max, so overlaps stay in range), under the digit.

Resampling is bilinear, with zero outside the source image, as the spatial
transformer's own sampler (`ops.spatial_transformer.bilinear_sample`) does.
"""

from collections.abc import Sequence
import functools

import numpy as np
from scipy import ndimage


def example_rngs(seed: int | Sequence[int], indices) -> list[np.random.Generator]:
  """One generator per example, seeded by (seed..., index)."""
  seed = [int(s) for s in np.atleast_1d(seed)]
  return [np.random.default_rng([*seed, int(i)]) for i in indices]


def _draws(seed, indices, draw) -> np.ndarray:
  """Stacks draw(rng) [..] over examples: [N, ..] float64."""
  return np.stack([np.asarray(draw(rng), np.float64) for rng in example_rngs(seed, indices)])


def _indices(images, indices) -> np.ndarray:
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}.")
  indices = np.arange(len(images)) if indices is None else np.asarray(indices)
  if indices.shape != (len(images),):
    raise ValueError(f"{len(images)} images but indices of shape {indices.shape}.")
  return indices


def _out_grid(out_hw) -> tuple[np.ndarray, np.ndarray]:
  """Output pixel centres relative to the output's centre: x [1, H, W], y [1, H, W]."""
  h, w = out_hw
  y, x = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
  return x[None].astype(np.float32), y[None].astype(np.float32)


def warp(images: np.ndarray, src_x: np.ndarray, src_y: np.ndarray) -> np.ndarray:
  """Bilinear inverse warp.

  Args:
    images: uint8 or float [N, h, w, C].
    src_x, src_y: float [N, H, W], where each output pixel reads, in pixels
      relative to the *source's* centre (x along the width).

  Returns:
    float32 [N, H, W, C]; source points outside the image read zero.
  """
  n, h, w, c = images.shape
  # A ring of zeros around each image: corners that fall outside index it.
  padded = np.pad(images.astype(np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)))
  flat = padded.reshape(-1, c)
  # Source pixel coordinates, kept finite and within one pixel of the ring.
  px = np.clip(np.nan_to_num(src_x + (w - 1) / 2, nan=-2.0), -2.0, w + 1.0)
  py = np.clip(np.nan_to_num(src_y + (h - 1) / 2, nan=-2.0), -2.0, h + 1.0)
  x0, y0 = np.floor(px), np.floor(py)
  fx, fy = (px - x0)[..., None], (py - y0)[..., None]
  x0 = x0.astype(np.int32) + 1  # +1: the padding.
  y0 = y0.astype(np.int32) + 1
  x1, y1 = np.clip(x0 + 1, 0, w + 1), np.clip(y0 + 1, 0, h + 1)
  x0, y0 = np.clip(x0, 0, w + 1), np.clip(y0, 0, h + 1)
  base = (np.arange(n, dtype=np.int64) * (h + 2) * (w + 2))[:, None, None]

  def at(yi, xi):
    return flat[base + yi * (w + 2) + xi]

  top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
  bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
  return top * (1 - fy) + bottom * fy


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _rotation(angle, x, y):
  """Rotates points (x, y) [N, H, W] by angle [N] (radians)."""
  angle = np.asarray(angle, np.float32)[:, None, None]  # float32: half the memory traffic.
  cos, sin = np.cos(angle), np.sin(angle)
  return cos * x - sin * y, sin * x + cos * y


def rotated(images, seed, indices=None, *, max_angle: float = 90.0, out_hw=None):
  """R: rotation by U(-max_angle, max_angle) degrees about the centre."""
  indices = _indices(images, indices)
  angle = np.deg2rad(_draws(seed, indices, lambda r: r.uniform(-max_angle, max_angle)))
  x, y = _out_grid(out_hw or images.shape[1:3])
  # Inverse map: output point -> source point, the inverse rotation.
  sx, sy = _rotation(-angle, x, y)
  return _to_uint8(warp(images, sx, sy))


def rts(images, seed, indices=None, *, max_angle: float = 45.0,
        scale_range=(0.7, 1.2), out_hw=(42, 42)):
  """RTS: rotation U(±max_angle)°, scale U(scale_range), random placement."""
  indices = _indices(images, indices)
  h, w = images.shape[1:3]
  H, W = out_hw

  def draw(rng):
    angle = rng.uniform(-max_angle, max_angle)
    scale = rng.uniform(*scale_range)
    # Room for the scaled square on each side of the centre (none if too big).
    room_x = max(0.0, (W - scale * w) / 2)
    room_y = max(0.0, (H - scale * h) / 2)
    return angle, scale, rng.uniform(-room_x, room_x), rng.uniform(-room_y, room_y)

  angle, scale, tx, ty = _draws(seed, indices, draw).astype(np.float32).T
  x, y = _out_grid(out_hw)
  s = scale[:, None, None]
  sx, sy = _rotation(-np.deg2rad(angle), (x - tx[:, None, None]) / s,
                     (y - ty[:, None, None]) / s)
  return _to_uint8(warp(images, sx, sy))


def homographies(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Homographies taking 4 points src [N, 4, 2] to dst [N, 4, 2]: [N, 3, 3], h33 = 1."""
  n = len(src)
  u, v = src[..., 0], src[..., 1]
  x, y = dst[..., 0], dst[..., 1]
  zeros, ones = np.zeros_like(u), np.ones_like(u)
  # x (g6 u + g7 v + 1) = g0 u + g1 v + g2, and likewise for y: 8 linear equations.
  rows_x = np.stack([u, v, ones, zeros, zeros, zeros, -u * x, -v * x], -1)
  rows_y = np.stack([zeros, zeros, zeros, u, v, ones, -u * y, -v * y], -1)
  a = np.concatenate([rows_x, rows_y], axis=1)  # [N, 8, 8]
  b = np.concatenate([x, y], axis=1)  # [N, 8]
  g = np.linalg.solve(a, b[..., None])[..., 0]
  return np.concatenate([g, np.ones((n, 1))], axis=1).reshape(n, 3, 3)


def projective(images, seed, indices=None, *, corner_std: float = 0.1,
               scale_range=(0.75, 1.0), out_hw=None):
  """P: random perspective warp (Gaussian corner moves, then a random scale)."""
  indices = _indices(images, indices)
  h, w = images.shape[1:3]
  corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)

  def draw(rng):
    moved = corners * (1 + rng.normal(0.0, corner_std, (4, 2)))
    return (moved * rng.uniform(*scale_range)).ravel()

  dst = _draws(seed, indices, draw).reshape(-1, 4, 2)
  # Map output corners back to the source corners (inverse warp).
  g = homographies(dst, np.broadcast_to(corners, dst.shape)).astype(np.float32)
  half = np.array([(w - 1) / 2, (h - 1) / 2], np.float32)  # Units: source half-size.
  x, y = _out_grid(out_hw or (h, w))
  x, y = x / half[0], y / half[1]
  g = g[:, :, :, None, None]
  den = g[:, 2, 0] * x + g[:, 2, 1] * y + g[:, 2, 2]
  # Points with den <= 0 lie beyond the horizon: send them outside the image.
  den = np.where(den > 1e-6, den, np.nan)
  sx = (g[:, 0, 0] * x + g[:, 0, 1] * y + g[:, 0, 2]) / den * half[0]
  sy = (g[:, 1, 0] * x + g[:, 1, 1] * y + g[:, 1, 2]) / den * half[1]
  return _to_uint8(warp(images, sx, sy))


def elastic(images, seed, indices=None, *, alpha: float = 34.0, sigma: float = 4.0,
            out_hw=None):
  """E: Simard et al. (2003) elastic distortion, displacements alpha * (G_sigma * U(-1, 1))."""
  indices = _indices(images, indices)
  out_hw = tuple(out_hw or images.shape[1:3])
  noise = _draws(seed, indices, lambda r: r.uniform(-1.0, 1.0, (2, *out_hw)))
  # One 2-D Gaussian per field: sigma 0 along the batch and x/y axes.
  field = alpha * ndimage.gaussian_filter(noise.astype(np.float32), (0, 0, sigma, sigma))
  x, y = _out_grid(out_hw)
  return _to_uint8(warp(images, x + field[:, 0], y + field[:, 1]))


def translated_cluttered(images, seed, indices=None, *, out_hw=(60, 60),
                         num_patches: int = 8, patch_size: int = 8,
                         clutter_images: np.ndarray | None = None):
  """T / TC: the image pasted at random on a canvas, over random clutter patches.

  Args:
    images: uint8 [N, h, w, C].
    seed, indices: see the module docstring.
    out_hw: canvas size (H, W), at least (h, w).
    num_patches: clutter patches per canvas (0: plain translation, "T").
    patch_size: side of the square clutter patches.
    clutter_images: uint8 [M, h', w', C], the pool the patches come from,
      indexed like `indices` (example i never takes clutter from pool entry
      indices[i], its own image). Default: `images`. For results that do not
      depend on batching, pass the same whole pool with every batch.

  Returns:
    uint8 [N, H, W, C].
  """
  indices = _indices(images, indices)
  n, h, w, c = images.shape
  H, W = out_hw
  if H < h or W < w:
    raise ValueError(f"Canvas {out_hw} smaller than the images {(h, w)}.")
  pool = images if clutter_images is None else clutter_images
  m, ph, pw = len(pool), pool.shape[1], pool.shape[2]
  num_patches = num_patches if m > 1 else 0

  def draw(rng, own):
    top, left = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
    # Pool entries other than the example's own (shift those at or past it).
    source = rng.integers(0, m - 1, num_patches)
    source = source + (source >= own)
    cut = rng.integers(0, [ph - patch_size + 1, pw - patch_size + 1], (num_patches, 2))
    paste = rng.integers(0, [H - patch_size + 1, W - patch_size + 1], (num_patches, 2))
    return np.concatenate([[top, left], source, cut.ravel(), paste.ravel()])

  params = [draw(rng, own) for rng, own in zip(example_rngs(seed, indices), indices)]
  params = np.asarray(params, np.int64).reshape(n, -1)
  top, left = params[:, 0], params[:, 1]
  source = params[:, 2:2 + num_patches]
  cut = params[:, 2 + num_patches:2 + 3 * num_patches].reshape(n, num_patches, 2)
  paste = params[:, 2 + 3 * num_patches:].reshape(n, num_patches, 2)

  canvas = np.zeros((n, H, W, c), np.uint8)
  batch = np.arange(n)[:, None, None]
  k = np.arange(patch_size)
  for j in range(num_patches):
    # One patch per canvas at a time: the fancy-indexed regions never collide.
    patch = pool[source[:, j][:, None, None],
                 cut[:, j, 0, None, None] + k[:, None],
                 cut[:, j, 1, None, None] + k[None, :]]
    rows = paste[:, j, 0, None, None] + k[:, None]
    cols = paste[:, j, 1, None, None] + k[None, :]
    canvas[batch, rows, cols] = np.maximum(canvas[batch, rows, cols], patch)
  rows = top[:, None, None] + np.arange(h)[:, None]
  cols = left[:, None, None] + np.arange(w)[None, :]
  canvas[batch, rows, cols] = np.maximum(canvas[batch, rows, cols], images)
  return canvas


# Name -> function(images, seed, indices=None, **options); the output sizes are
# for 28x28 inputs.
DISTORTIONS = {
    "r": rotated,
    "rts": rts,
    "p": projective,
    "e": elastic,
    "t": functools.partial(translated_cluttered, num_patches=0),
    "tc": translated_cluttered,
}


def output_hw(kind: str, in_hw: tuple[int, int]) -> tuple[int, int]:
  """The output size of DISTORTIONS[kind] with default options."""
  if kind not in DISTORTIONS:
    raise ValueError(f"Unknown distortion {kind!r}; choose one of {sorted(DISTORTIONS)}.")
  return {"rts": (42, 42), "t": (60, 60), "tc": (60, 60)}.get(kind, tuple(in_hw))
