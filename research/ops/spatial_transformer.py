"""Spatial transformer grids and the bilinear sampler (Jaderberg, Simonyan,
Zisserman & Kavukcuoglu 2015, "Spatial Transformer Networks", §3.2-3.3).

A spatial transformer is a grid generator, T_theta(G), giving for every
output pixel the point of the input to read (the paper's eq. 1 maps *target*
coordinates to *source* coordinates: an inverse warp), and a sampler that reads
the input there.

Coordinate convention, used by every function here:
  - A grid's last axis is (x, y): x runs along the width (columns), y along the
    height (rows), y pointing down. So grid[..., 0] is the column, as in the
    paper's (x^s, y^s) and in PyTorch's `affine_grid`.
  - Both are normalised to [-1, 1] with align_corners=True: -1 and +1 are the
    *centres* of the first and last pixels, and pixel j sits at
    -1 + 2 j / (W - 1). With this choice the identity theta sends every output
    pixel exactly onto an input pixel centre when sizes match, so it copies the
    input (align_corners=False would put the samples half a pixel in from the
    edges of a resized output instead).
  - theta maps output (target) to input (source) coordinates:
    [x_s, y_s]^T = theta @ [x_t, y_t, 1]^T, §3.2 eq. 1.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def identity_grid(out_hw: tuple[int, int], dtype=jnp.float32) -> jax.Array:
  """The (x, y) grid of pixel centres of an out_hw image: [H, W, 2] in [-1, 1]."""
  h, w = out_hw
  ys = _linspace(h, dtype)
  xs = _linspace(w, dtype)
  return jnp.stack(jnp.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1)


def _linspace(n: int, dtype) -> jax.Array:
  # A 1-pixel axis has its single centre at 0 (the middle), not at -1.
  return jnp.zeros((1,), dtype) if n == 1 else jnp.linspace(-1.0, 1.0, n, dtype=dtype)


def affine_grid(theta: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """Sampling grid of an affine transformation (§3.2, eq. 1).

  Args:
    theta: float [B, 2, 3]; rows give x_s and y_s as functions of (x_t, y_t, 1).
    out_hw: (H, W) of the output.

  Returns:
    float [B, H, W, 2], source (x, y) in normalised coordinates for each output
    pixel (see the module docstring).
  """
  base = identity_grid(out_hw, theta.dtype)
  x, y = base[..., 0], base[..., 1]
  t = theta[:, :, :, None, None]  # [B, 2, 3, 1, 1]
  # Written out rather than as a matmul: exact on every backend (a GPU may run
  # float32 matmuls in TF32), so theta = identity gives the identity grid.
  out = t[:, :, 0] * x + t[:, :, 1] * y + t[:, :, 2]  # [B, 2, H, W]
  return jnp.moveaxis(out, 1, -1)


def projective_grid(homography: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """Sampling grid of a plane projective transformation (Table 1, "Proj").

  Args:
    homography: float [B, 3, 3]; [x_s w, y_s w, w] = H @ [x_t, y_t, 1].
    out_hw: (H, W) of the output.

  Returns:
    float [B, H, W, 2], source (x, y) in normalised coordinates.
  """
  base = identity_grid(out_hw, homography.dtype)
  x, y = base[..., 0], base[..., 1]
  m = homography[:, :, :, None, None]
  out = m[:, :, 0] * x + m[:, :, 1] * y + m[:, :, 2]  # [B, 3, H, W]
  # A denominator near 0 sends the point to infinity (read as zero); keep its
  # sign and bound it away from 0 so the gradient stays finite.
  w = out[:, 2]
  w = jnp.where(w >= 0, 1.0, -1.0) * jnp.maximum(jnp.abs(w), 1e-6)
  return jnp.stack([out[:, 0] / w, out[:, 1] / w], axis=-1)


def bilinear_sample(images: jax.Array, grid: jax.Array) -> jax.Array:
  """Reads `images` at `grid` with bilinear interpolation (§3.3, eq. 5-7).

  V_i = sum_{n,m} U_nm max(0, 1 - |x_i - m|) max(0, 1 - |y_i - n|): each output
  pixel mixes the 4 input pixels around its source point. Points outside the
  image read zero, per corner, so a point half a pixel outside the edge gets
  half the edge pixel (zero padding). Differentiable w.r.t. `images` and
  `grid`; at integer source coordinates the gradient w.r.t. the grid is the
  one-sided subgradient (the difference with the next pixel), eq. 7.

  Args:
    images: float [B, H, W, C].
    grid: float [B, H', W', 2], (x, y) in normalised coordinates.

  Returns:
    float [B, H', W', C], images.dtype.
  """
  b, h, w, c = images.shape
  # Normalised -> pixel coordinates (align_corners=True).
  px = (grid[..., 0] + 1.0) * (0.5 * (w - 1))
  py = (grid[..., 1] + 1.0) * (0.5 * (h - 1))
  px, py = _snap(px, w), _snap(py, h)
  x0, y0 = jnp.floor(px), jnp.floor(py)
  wx1, wy1 = px - x0, py - y0  # Weights of the right / lower neighbours.
  wx0, wy0 = 1.0 - wx1, 1.0 - wy1
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  flat = images.reshape(b, h * w, c)

  def read(yi, xi):
    """Pixels at integer (yi, xi) [B, H', W'], zero outside: [B, H', W', C]."""
    valid = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    index = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
    values = jnp.take_along_axis(flat, index.reshape(b, -1, 1), axis=1)
    return values.reshape(*index.shape, c) * valid[..., None].astype(images.dtype)

  out = ((wy0 * wx0)[..., None] * read(y0, x0)
         + (wy0 * wx1)[..., None] * read(y0, x0 + 1)
         + (wy1 * wx0)[..., None] * read(y0 + 1, x0)
         + (wy1 * wx1)[..., None] * read(y0 + 1, x0 + 1))
  return out.astype(images.dtype)


def _snap(p: jax.Array, size: int) -> jax.Array:
  """Moves pixel coordinates within a few ulps of an integer onto it.

  Normalised -> pixel arithmetic leaves the identity grid (or a 90° rotation,
  cos 90° being 4e-8 in float32) a rounding error off the pixel centres, which
  would blend in 1e-7 of a neighbour. Snapping makes such warps copy pixels
  exactly. Only the value moves: the gradient passes straight through, so
  d out / d grid is unchanged (it matters at the identity, where a spatial
  transformer starts training).
  """
  tol = 16 * jnp.finfo(p.dtype).eps * max(size, 2)
  r = jnp.round(p)
  snapped = jnp.where(jnp.abs(p - r) <= tol, r, p)
  return p + jax.lax.stop_gradient(snapped - p)


def affine_transform(images: jax.Array, theta: jax.Array,
                     out_hw: tuple[int, int] | None = None) -> jax.Array:
  """Warps [B, H, W, C] by theta [B, 2, 3] to [B, H', W', C] (default H' = H)."""
  return bilinear_sample(images, affine_grid(theta, out_hw or images.shape[1:3]))


# Theta helpers (for tests, visualisations and the distorted datasets).

def make_theta(angle=0.0, scale=1.0, translation=(0.0, 0.0)) -> jax.Array:
  """theta = [scale * R(angle) | translation], batched by broadcasting.

  The output at target point p reads the input at scale * R(angle) p + t, so
  the output shows the input rotated by -angle, magnified by 1 / scale and
  moved by -t. With y pointing down, R(angle) = [[cos, -sin], [sin, cos]] turns
  clockwise on screen for angle > 0. A translation of 2 k / (W - 1) in x is k
  pixels.

  Args:
    angle: radians, float [...] or scalar.
    scale: float [...] or scalar.
    translation: float [..., 2] (tx, ty), normalised units.

  Returns:
    float32 [..., 2, 3].
  """
  angle = jnp.asarray(angle, jnp.float32)
  scale = jnp.asarray(scale, jnp.float32)
  translation = jnp.asarray(translation, jnp.float32)
  shape = jnp.broadcast_shapes(angle.shape, scale.shape, translation.shape[:-1])
  cos, sin = scale * jnp.cos(angle), scale * jnp.sin(angle)
  rows = [jnp.stack(jnp.broadcast_arrays(cos, -sin, translation[..., 0]), -1),
          jnp.stack(jnp.broadcast_arrays(sin, cos, translation[..., 1]), -1)]
  return jnp.broadcast_to(jnp.stack(rows, axis=-2), (*shape, 2, 3))


def identity_theta(batch: int, dtype=jnp.float32) -> jax.Array:
  """[batch, 2, 3] identity transformations."""
  return jnp.broadcast_to(jnp.eye(2, 3, dtype=dtype), (batch, 2, 3))


def invert_theta(theta: jax.Array) -> jax.Array:
  """The inverse affine map: [..., 2, 3] -> [..., 2, 3]."""
  a, t = theta[..., :2], theta[..., 2:]
  a_inv = jnp.linalg.inv(a)
  return jnp.concatenate([a_inv, -a_inv @ t], axis=-1)


# Thin plate splines (§3.4 and Table 1 "TPS"; Bookstein 1989).
#
# K control points c_k sit at fixed positions of the *output* grid; the network
# chooses where each one reads in the input, c_k + d_k. The TPS is the smoothest
# (least bending energy) map through those K pairs:
#   T(p) = A [p; 1] + sum_k w_k U(|p - c_k|),  U(r) = r^2 log r^2,
# whose coefficients solve the linear system
#   [U(|c_i - c_j|)  P] [w]   [c + d]
#   [P^T             0] [A] = [  0  ],  P = [1, x_k, y_k].
# The system matrix depends only on the fixed control points, so its inverse
# and the kernel from every output pixel to every control point fold into one
# constant [H' W', K] matrix M, computed once in float64: grid = M (c + d). An
# affine (c + d) is reproduced exactly by a TPS, so M c is the identity grid and
# grid = identity + M d, which is exactly the identity for d = 0.

def tps_control_points(grid_size: int = 4) -> np.ndarray:
  """A regular grid_size x grid_size grid over [-1, 1]^2: [K, 2] (x, y), K = grid_size^2."""
  axis = np.linspace(-1.0, 1.0, grid_size)
  xs, ys = np.meshgrid(axis, axis)  # Row-major: x varies fastest.
  return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def _tps_kernel(d2: np.ndarray) -> np.ndarray:
  """U as a function of the squared distance: r^2 log r^2, with U(0) = 0."""
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(d2 > 0, d2 * np.log(np.where(d2 > 0, d2, 1.0)), 0.0)


@functools.cache
def _tps_matrix(grid_size: int, out_hw: tuple[int, int]) -> np.ndarray:
  """M [H' W', K], float64: source coordinates of every output pixel = M (c + d)."""
  c = tps_control_points(grid_size)
  k = len(c)
  p = np.concatenate([np.ones((k, 1)), c], axis=1)  # [K, 3]
  system = np.zeros((k + 3, k + 3))
  system[:k, :k] = _tps_kernel(((c[:, None] - c[None]) ** 2).sum(-1))
  system[:k, k:] = p
  system[k:, :k] = p.T
  # Only the first K columns of the inverse meet a non-zero right-hand side.
  coeffs = np.linalg.inv(system)[:, :k]  # [K + 3, K]
  # The identity grid in NumPy: this runs inside traces (the first call may be
  # under jit or eval_shape), where jnp would give tracers, not arrays.
  h, w = out_hw
  ys = np.linspace(-1.0, 1.0, h) if h > 1 else np.zeros(1)
  xs = np.linspace(-1.0, 1.0, w) if w > 1 else np.zeros(1)
  g = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1).reshape(-1, 2)
  g_kernel = _tps_kernel(((g[:, None] - c[None]) ** 2).sum(-1))  # [H'W', K]
  g_affine = np.concatenate([np.ones((len(g), 1)), g], axis=1)  # [H'W', 3]
  return np.concatenate([g_kernel, g_affine], axis=1) @ coeffs


def tps_grid(offsets: jax.Array, out_hw: tuple[int, int], grid_size: int = 4) -> jax.Array:
  """Sampling grid of a thin plate spline with regularly placed control points.

  Args:
    offsets: float [B, K, 2], K = grid_size^2: where each control point reads,
      relative to where it sits ((x, y), normalised units, ordered as
      `tps_control_points`). Zero offsets give the identity grid. The paper's
      parameterisation (the source control point positions) is
      `tps_control_points(grid_size) + offsets`.
    out_hw: (H, W) of the output.
    grid_size: control points per side.

  Returns:
    float [B, H, W, 2], source (x, y) in normalised coordinates.
  """
  b, k, _ = offsets.shape
  if k != grid_size ** 2:
    raise ValueError(f"{k} control point offsets for a {grid_size}x{grid_size} grid.")
  m = jnp.asarray(_tps_matrix(grid_size, tuple(out_hw)), offsets.dtype)
  warp = jnp.einsum("gk,bkd->bgd", m, offsets, precision=jax.lax.Precision.HIGHEST)
  return identity_grid(out_hw, offsets.dtype) + warp.reshape(b, *out_hw, 2)
