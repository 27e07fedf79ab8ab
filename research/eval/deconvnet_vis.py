"""Looking inside a trained classifier as Zeiler & Fergus 2013 do: Fig. 2
(each feature map's top 9 activations over a dataset, projected to pixel
space by the deconvnet, beside the image patches they see), the first
layer's filters, and Fig. 7 (occlusion sensitivity, §4.2).

`look_inside` does all three for one network and returns its metrics: the
class purity of each layer's top 9 (how class-specific the layer is) and
the occlusion measurements (how much covering a part of the image lowers the
strongest layer-5 map and p(true class); with `background_below`, on the
object versus on the background). Images are float [N, H, W, C] in [0, 1],
standardised with (mean, std) before the network sees them. The deconvnet
is `research/ops/deconvnet.py`, the occluder `research/ops/occlusion.py`.
"""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from research.eval import deconvnet_plots
from research.models import deconvnet_chain
from research.ops import deconvnet, occlusion
from research.train import steps


@functools.partial(jax.jit, static_argnums=0)
def _map_maxima(chain, params, x):
  """Per conv layer: each map's strongest activation and its flat position, [B, C]."""
  features, _ = deconvnet.forward(chain, params, x)
  flat = [f.reshape(f.shape[0], -1, f.shape[-1]) for f in features]
  return [(f.max(1), f.argmax(1)) for f in flat]


_project = jax.jit(deconvnet.project, static_argnums=(0, 3), static_argnames="keep")


def _patch(chain, layer, pos, hw, image_hw):
  """(top, left, size) of the receptive field of `pos` in layer `layer`, moved inside the image."""
  y, x = divmod(int(pos), hw[1])
  top, left, bottom, _ = deconvnet.receptive_box(chain, layer, y, x)
  size = min(bottom - top, *image_hw)
  return (int(np.clip(top, 0, image_hw[0] - size)), int(np.clip(left, 0, image_hw[1] - size)),
          size)


def top9(name, chain, params, images01, labels, mean, std, vis, workdir, origins=None):
  """Fig. 2 for every layer; returns metrics (class purity of the top 9 per layer)."""
  x = steps.standardize(jnp.asarray(images01), mean, std)
  batches = [_map_maxima(chain, params, x[i:i + 500]) for i in range(0, len(x), 500)]
  shapes = jax.eval_shape(lambda: deconvnet.forward(chain, params, x[:1]))[0]
  hws = [f.shape[1:3] for f in shapes]  # Each conv layer's output size.
  rng = np.random.default_rng(vis.seed)
  metrics = {}
  for layer in vis.layers:
    maxima = np.concatenate([np.asarray(b[layer - 1][0]) for b in batches])
    where = np.concatenate([np.asarray(b[layer - 1][1]) for b in batches])
    live = np.flatnonzero(maxima.max(0) > 0)  # Dead maps never fire: nothing to show.
    maps = np.sort(rng.choice(live, min(vis.maps_per_layer, len(live)), replace=False))
    rows, purity = [], []
    for c in maps:
      best = _distinct_top(np.argsort(-maxima[:, c]), where[:, c], labels, origins, chain,
                           layer, hws[layer - 1], images01.shape[1:3])
      proj = np.asarray(_project(chain, params, x[best], layer, int(c)))
      boxes = [_patch(chain, layer, where[i, c], hws[layer - 1], images01.shape[1:3])
               for i in best]
      crop = lambda a, b: np.stack([a[j, t:t + s, l:l + s] for j, (t, l, s) in enumerate(b)])
      rows.append((f"map {c}", crop(proj, boxes), crop(images01[best], boxes)))
      purity.append(np.bincount(labels[best]).max() / len(best))
    deconvnet_plots.top9_figure(rows, os.path.join(workdir, f"fig2_{name}_layer{layer}.png"),
                                f"{name}, layer {layer}: top-9 activations of {len(maps)} "
                                "random feature maps")
    metrics[f"{name}/layer{layer}/top9_class_purity"] = float(np.mean(purity))
  return metrics


def _distinct_top(order, where, labels, origins, chain, layer, hw, image_hw, k=9):
  """The first k images of `order`; with crop origins, skipping a crop whose
  patch is (nearly) the same part of the same photo as one already taken."""
  if origins is None:
    return order[:k]
  taken, spots = [], []
  for i in order:
    top, left, _ = _patch(chain, layer, where[i], hw, image_hw)
    spot = (labels[i], origins[i][0] + top, origins[i][1] + left)
    if all(s[0] != spot[0] or abs(s[1] - spot[1]) + abs(s[2] - spot[2]) > 8 for s in spots):
      taken.append(i)
      spots.append(spot)
    if len(taken) == k:
      break
  return np.asarray(taken)


def occlusion_study(name, model, params, chain, shown, measured, mean, std, size, stride,
                    class_names, workdir, background_below=None):
  """Fig. 7 for the `shown` (images, labels); metrics over the `measured` ones.

  background_below: pixels darker than this are background (Fashion-MNIST's
  black), for comparing occlusion of the object with occlusion of the rest;
  then that comparison is also made with a black square (`*_black`), which
  hides the object without adding anything to the background.
  """
  gray = jnp.asarray(mean)  # The mean pixel: the paper's gray square.

  @jax.jit
  def outputs(image):
    logits, features = model.apply({"params": params}, steps.standardize(image[None], mean, std))
    return jax.nn.softmax(logits[0]), features["layer5"][0].sum((0, 1))

  occluded = jax.jit(lambda im, fill: occlusion.occlusion_map(
      outputs, im, size=size, stride=stride, fill=fill, batch_size=64))

  def study(image, label, fill=gray):
    p0, totals0 = outputs(jnp.asarray(image))
    probs, totals = (np.asarray(a) for a in occluded(jnp.asarray(image), fill))
    c = int(jnp.argmax(totals0))  # The layer-5 map that responds most to the whole image.
    drop = float(p0[label]) - probs[..., label]
    positive = np.sort(np.clip(drop, 0, None).ravel())[::-1]
    out = dict(c=c, probs=probs, totals=totals,
               feature_drop=1 - totals[..., c].min() / float(totals0[c]),
               p_drop_concentration=positive[:max(1, len(positive) // 5)].sum() / max(
                   positive.sum(), 1e-12))
    if background_below is not None:  # Is the pixel under the square's centre the object?
      ys, xs = (np.asarray(occlusion.centres(n, stride)) for n in image.shape[:2])
      on_object = image[ys][:, xs].max(-1) >= background_below
      out["object_drop"] = drop[on_object].mean() if on_object.any() else np.nan
      out["background_drop"] = drop[~on_object].mean() if (~on_object).any() else np.nan
    return out

  rows = []
  for image, label in zip(*shown):
    r = study(image, label)
    projection = _project(chain, params, steps.standardize(jnp.asarray(image[None]), mean, std),
                          len([l for l in chain if isinstance(l, deconvnet.Conv)]), r["c"],
                          keep="map")[0]
    rows.append(dict(image=image, size=size, label=int(label), feature_map=r["c"],
                     activation=r["totals"][..., r["c"]], projection=np.asarray(projection),
                     p_true=r["probs"][..., label], top_class=r["probs"].argmax(-1)))
  deconvnet_plots.occlusion_figure(
      rows, os.path.join(workdir, f"fig7_{name}.png"), class_names,
      f"{name}: occlusion by a {size}x{size} gray square, every {stride} pixels")
  results = [study(image, label) for image, label in zip(*measured)]
  keys = ["feature_drop", "p_drop_concentration"] + (
      ["object_drop", "background_drop"] if background_below is not None else [])
  metrics = {f"{name}/occlusion/{k}": float(np.nanmean([r[k] for r in results])) for k in keys}
  metrics[f"{name}/occlusion/images_measured"] = len(results)
  if background_below is not None:
    black = [study(image, label, jnp.zeros_like(gray)) for image, label in zip(*measured)]
    for k in ("object_drop", "background_drop"):
      metrics[f"{name}/occlusion/{k}_black"] = float(np.nanmean([r[k] for r in black]))
  return metrics


@dataclasses.dataclass(frozen=True)
class Network:
  """A trained classifier to look inside.

  name: prefix of the figures' files and of the metric keys; model, params:
  the Flax module and its trained parameters; mean, std: the per-channel
  standardisation it was trained with; class_names: label names.
  """
  name: str
  model: object
  params: dict
  mean: tuple
  std: tuple
  class_names: tuple


def look_inside(net: Network, images, labels, shown, vis, workdir: str, *, occluder,
                origins=None, background_below=None) -> dict:
  """Fig. 2, the first-layer filters and Fig. 7 for one trained network.

  Args:
    net: the network; its convolutional part must be one the deconvnet can
      invert (`deconvnet_chain.read_chain` raises NotImplementedError
      otherwise), with a first layer "conv1".
    images, labels: float [N, H, W, C] in [0, 1], int [N]: searched for each
      map's top 9; evenly spaced `vis.occlusion_measured` of them are the
      occlusion measurements.
    shown: (images, labels) drawn in Fig. 7.
    vis: config with layers, maps_per_layer, seed, occlusion_measured.
    workdir: where the PNGs go (fig2_<name>_layer<n>.png, filters_<name>.png,
      fig7_<name>.png).
    occluder: (side, stride) of the occluding square, pixels.
    origins: optional int [N, 2] crop origins (photo crops): the top 9 then skip
      nearly the same patch of the same photo.
    background_below: optional pixel level under which a pixel is background:
      adds the object-versus-background occlusion metrics.

  Returns:
    metrics {"<name>/layer<n>/top9_class_purity", "<name>/occlusion/...": float}.
  """
  name, model, params, mean, std = net.name, net.model, net.params, net.mean, net.std
  chain = deconvnet_chain.read_chain(model, params, images.shape[1:])
  metrics = top9(name, chain, params, images, labels, mean, std, vis, workdir, origins)
  deconvnet_plots.filters_figure(np.asarray(params["conv1"]["kernel"]),
                                 os.path.join(workdir, f"filters_{name}.png"),
                                 f"{name}: the first layer's filters")
  # Occlusion is measured on evenly spaced images of the dataset, not only on the shown ones.
  every = max(1, len(images) // vis.occlusion_measured)
  measured = (images[::every][:vis.occlusion_measured], labels[::every][:vis.occlusion_measured])
  size, stride = occluder
  metrics.update(occlusion_study(name, model, params, chain, shown, measured, mean, std,
                                 size, stride, net.class_names, workdir, background_below))
  return metrics


def confident_examples(net: Network, images01, labels, n: int, order=None) -> np.ndarray:
  """Up to n images, one per class, classified right with p > 0.9, taken in
  `order` (default: the dataset's) among the first 2,000."""
  probs = jax.jit(lambda x: jax.nn.softmax(net.model.apply(
      {"params": net.params}, steps.standardize(x, net.mean, net.std))[0]))(
          jnp.asarray(images01[:2000]))
  p_true = np.asarray(probs)[np.arange(len(probs)), labels[:2000]]
  order = [i for i in (range(len(p_true)) if order is None else order) if i < len(p_true)]
  chosen, seen = [], set()
  for threshold in (0.9, -1.0):  # An untrained (test) network may reach no 0.9.
    for i in order:
      if len(chosen) < n and p_true[i] > threshold and labels[i] not in seen:
        chosen.append(i)
        seen.add(labels[i])
  return np.asarray(chosen, int)
