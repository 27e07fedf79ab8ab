"""ZF Net: deconvnet visualisation and occlusion sensitivity (Zeiler & Fergus 2013).

The method, as the paper gives it. §2.1: to see what a feature map responds
to, take its activation (every other activation of the layer set to zero) and
project it back to pixel space with a deconvnet attached to the trained
network: unpool with the switches recorded by max pooling, rectify, filter
with the transposed filters (research/ops/deconvnet.py). Fig. 2: for each
layer, a few feature maps; for each, the 9 strongest activations over a
dataset, their projections, and the image patches they see (the receptive
field). §4.2, Fig. 7: slide a gray square over an image and map (b) the total
activation of the layer-5 map that responds most to the whole image, (d) the
probability of the true class and (e) the most probable class; if the
network localises the object, covering the object (not the background) is
what changes them (research/ops/occlusion.py).

At our scale, two networks with ZF Net's layout (5 conv layers, max pooling
after 1, 2 and 5, contrast normalisation after 1 and 2, fc6, fc7):
  1. `zfnet_small` trained on Fashion-MNIST with the standard trainer
     (subfolder fashion_mnist/; 1,200 steps of 64, Adam; the paper used SGD).
     Top-9 over 5,000 test images; occlusion with an 8x8 square of the mean
     pixel (the paper's gray: zero after standardisation), measured on 100
     test images (6 shown). A gray square on Fashion-MNIST's black background
     is itself new content, so the object-versus-background comparison is
     also made with a black square.
  2. Real photographs. A Fashion-MNIST network says nothing about photos
     (its occlusion maps there would show only what a clothing classifier
     makes of a texture), and the photos that ship with scikit-learn and
     scikit-image are ten, too few for object classes. So we train a network
     at a larger input size on them with a task they can support: which of
     the ten photos a 64x64 crop comes from (research/data/photos.py; test
     crops come from a held-out strip of each photo). It has the paper's
     first layer (7x7 filters, stride 2, on RGB) and zfnet_small's layers 2-5,
     and trains here (subfolder photos/) with a small loop over the project's
     train step, as its crops are drawn per step rather than read from a
     TFDS split. Its features are those of natural images (colour edges,
     textures), but its "classes" are photos, not objects: the occlusion maps
     show which part of a crop identifies its photo. Ten photos ask for little:
     it separates them by colour and texture within a few hundred steps, and
     its first-layer filters stay close to their random start (no Gabor-like
     edges as in the paper's Fig. 6, which needed 1.3 million images).

Command (about 17 minutes on 2 CPU cores shared with other jobs; the
Fashion-MNIST training is 9 of them):

  python launch.py --config=experiments/zfnet_visualization.py \
      --workdir=runs/zfnet_visualization

Expected: Fashion-MNIST test accuracy 0.888; the top 9 of layer-5 maps are
mostly one class (purity 0.87 against 0.43 in layer 1); occluding with the
gray square hurts p(true class) no more on the object than on the
background (0.8x), while a black square hurts it 5x more on the object; the
photo network gets 0.78 on held-out strips (chance 0.1). Figures:
`fig2_*_layer*.png`, `filters_*.png`, `fig7_*.png` for both networks.
"""

import functools
import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research import models
from research.data import augment, datasets, photos as photos_lib, tfds_source
from research.eval import zfnet_figures
from research.launch import multirun
from research.ops import deconvnet, occlusion
from research.report import Claim
from research.train import checkpoint, config as config_lib, steps


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  config.model.name = "zfnet_small"
  config.model.kwargs = ml_collections.ConfigDict(models.default_kwargs("zfnet_small"))
  config.batch_size = 64
  config.total_steps, config.num_epochs = 1200, 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.eval_every_steps = 400
  config.checkpoint_every_steps = 400
  config.vis = ml_collections.ConfigDict(dict(
      examples=5000,          # Test images searched for each map's top 9.
      layers=(1, 2, 3, 4, 5), # Conv layers shown (Fig. 2); the claims compare 1 and 5.
      maps_per_layer=6,       # Feature maps shown per layer, drawn at random among live ones.
      seed=0,
      occlusion_images=6,     # Shown in Fig. 7.
      occlusion_measured=100, # Images the occlusion claims are measured on.
      occlusion_size=8, occlusion_stride=2))
  config.photos = ml_collections.ConfigDict(dict(
      enabled=True, short_side=192, crop=64, test_columns=80,
      total_steps=1200, batch_size=32, learning_rate=1e-3, weight_decay=0.0,
      augment="flip_lr",
      grid_stride=16,         # Crops searched for top 9 and occlusion: every 16 pixels.
      occlusion_size=16, occlusion_stride=4))
  if arg:
    raise ValueError(f"Unknown argument {arg!r} for experiments/zfnet_visualization.py; use ''.")
  config.arg = ""
  return config


# --- Looking inside a trained network: Fig. 2, filters, Fig. 7 -----------------


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
    zfnet_figures.top9_figure(rows, os.path.join(workdir, f"fig2_{name}_layer{layer}.png"),
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
  zfnet_figures.occlusion_figure(rows, os.path.join(workdir, f"fig7_{name}.png"), class_names,
                                 f"{name}: occlusion by a {size}x{size} gray square, every "
                                 f"{stride} pixels")
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


def look_inside(name, model, params, data_images, data_labels, shown, mean, std, class_names,
                vis, size, stride, workdir, origins=None, background_below=None):
  """Fig. 2, the first-layer filters and Fig. 7 for one trained network."""
  chain = deconvnet.read_chain(model, params, data_images.shape[1:])
  metrics = top9(name, chain, params, data_images, data_labels, mean, std, vis, workdir, origins)
  zfnet_figures.filters_figure(np.asarray(params["conv1"]["kernel"]),
                               os.path.join(workdir, f"filters_{name}.png"),
                               f"{name}: the first layer's filters")
  # Occlusion is measured on evenly spaced images of the dataset, not only on the shown ones.
  every = max(1, len(data_images) // vis.occlusion_measured)
  measured = (data_images[::every][:vis.occlusion_measured],
              data_labels[::every][:vis.occlusion_measured])
  metrics.update(occlusion_study(name, model, params, chain, shown, measured, mean, std,
                                 size, stride, class_names, workdir, background_below))
  return metrics


# --- 1. Fashion-MNIST: zfnet_small with the standard trainer -----------------


def fashion_mnist(config, workdir: str) -> dict:
  run_dir = os.path.join(workdir, "fashion_mnist")
  train_metrics = multirun.run_variant(config, run_dir)  # Kept if it finished before.
  params = jax.tree.map(jnp.asarray, checkpoint.load_arrays(run_dir)[1]["params"])
  data = tfds_source.load_split(config.data.name, config.data.eval_split, config.data.data_dir)
  data = tfds_source.ArraySplit(data.images[:config.vis.examples],
                                data.labels[:config.vis.examples], data.class_names)
  model = models.get_model(config.model.name, num_classes=data.num_classes,
                           **config.model.kwargs.to_dict())
  mean, std = datasets.normalization(config.data.name, config.data.mean, config.data.std)
  images01 = data.images.astype(np.float32) / 255.0
  occ = _confident_examples(model, params, images01, data.labels, mean, std,
                            config.vis.occlusion_images)
  metrics = look_inside("fashion_mnist", model, params, images01, data.labels,
                        (images01[occ], data.labels[occ]), mean, std, data.class_names, config.vis,
                        config.vis.occlusion_size, config.vis.occlusion_stride, workdir,
                        background_below=0.1)
  metrics.update({f"fashion_mnist/{k}": v for k, v in train_metrics.items()
                  if k in ("test/accuracy", "steps", "wall_time_s")})
  return metrics


def _confident_examples(model, params, images01, labels, mean, std, n, order=None):
  """Up to n images, one per class, classified right with p > 0.9, taken in
  `order` (default: the dataset's) among the first 2,000."""
  probs = jax.jit(lambda x: jax.nn.softmax(model.apply(
      {"params": params}, steps.standardize(x, mean, std))[0]))(jnp.asarray(images01[:2000]))
  p_true = np.asarray(probs)[np.arange(len(probs)), labels[:2000]]
  order = [i for i in (range(len(p_true)) if order is None else order) if i < len(p_true)]
  chosen, seen = [], set()
  for threshold in (0.9, -1.0):  # An untrained (test) network may reach no 0.9.
    for i in order:
      if len(chosen) < n and p_true[i] > threshold and labels[i] not in seen:
        chosen.append(i)
        seen.add(labels[i])
  return np.asarray(chosen, int)


# --- 2. Photographs: which photo does a 64x64 crop come from? ----------------


def photo_model(num_classes: int):
  """ZF Net's first layer (7x7/2, §3, Fig. 3) on 64x64 RGB, zfnet_small above it."""
  kwargs = models.default_kwargs("zfnet_small", conv1_kernel=7, conv1_stride=2,
                                 conv1_padding=1)
  return models.get_model("zfnet_small", num_classes=num_classes, **kwargs)


def train_photo_net(config, crops: photos_lib.PhotoCrops, workdir: str):
  """Trains on random crops (resuming from workdir's checkpoints); returns (params, metrics)."""
  pc = config.photos
  mean, std = crops.mean_std()
  model = photo_model(len(crops.photos))
  tx = optax.adamw(optax.cosine_decay_schedule(pc.learning_rate, pc.total_steps),
                   weight_decay=pc.weight_decay)
  shape = (1, pc.crop, pc.crop, 3)
  state = steps.create_train_state(model, tx, shape, config.seed)
  ckpt = checkpoint.Checkpointer(workdir, keep=1)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
  train_step = jax.jit(steps.make_train_step(
      model, tx, mean=mean, std=std, augment=augment.make_augment(pc.augment, channels=3)),
      donate_argnums=0)
  for step in range(int(state.step), pc.total_steps):
    images, labels = crops.train_crop_batch(config.seed, step, pc.batch_size)
    state, step_metrics = train_step(state, {"image": images, "label": labels})
    if (step + 1) % 100 == 0:
      logging.info("photos: step %d of %d, loss %.3f", step + 1, pc.total_steps,
                   float(step_metrics["loss"]))
    if (step + 1) % 400 == 0 or step + 1 == pc.total_steps:
      ckpt.save(step + 1, state)
  ckpt.close()
  images, labels, _ = crops.grid_crops(8, region="test")
  logits = jax.jit(lambda x: model.apply({"params": state.params}, x)[0])(
      steps.standardize(jnp.asarray(images / 255.0, jnp.float32), mean, std))
  accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == labels))
  return state.params, {"photos/test/accuracy": accuracy, "photos/steps": pc.total_steps,
                        "photos/chance": 1 / len(crops.photos)}


def photographs(config, workdir: str) -> dict:
  pc = config.photos
  crops = photos_lib.PhotoCrops(tuple(photos_lib.load_photos(pc.short_side)), pc.crop,
                                pc.test_columns)
  params, metrics = train_photo_net(config, crops, os.path.join(workdir, "photos"))
  model = photo_model(len(crops.photos))
  mean, std = crops.mean_std()
  images, labels, origins = crops.grid_crops(pc.grid_stride, region="all")
  images01 = images.astype(np.float32) / 255.0
  # For Fig. 7, from six photos, the confidently classified crop nearest the
  # photo's centre (where its subject is).
  centres = np.asarray([(p.shape[0] - pc.crop) / 2 for p in crops.photos])[labels], np.asarray(
      [(p.shape[1] - pc.crop) / 2 for p in crops.photos])[labels]
  order = np.argsort(np.hypot(origins[:, 0] - centres[0], origins[:, 1] - centres[1]))
  occ = _confident_examples(model, params, images01, labels, mean, std, 6, order)
  metrics.update(look_inside("photos", model, params, images01, labels,
                             (images01[occ], labels[occ]), mean, std, photos_lib.NAMES, config.vis,
                             pc.occlusion_size, pc.occlusion_stride, workdir, origins))
  return metrics


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  metrics = fashion_mnist(config, workdir)
  if config.photos.enabled:
    metrics.update(photographs(config, workdir))
  return metrics


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  top = 5
  result = [
      Claim(source="Fashion-MNIST benchmark (Xiao et al. 2017), CNNs",
            statement="zfnet_small, trained briefly, is a working Fashion-MNIST classifier.",
            paper="0.876-0.925 (2-conv CNNs)", measure="fashion_mnist/test/accuracy",
            check=lambda a: a >= 0.876, check_text=">= 0.876"),
      Claim(source="Zeiler & Fergus 2013, §4, Fig. 2",
            statement="Higher layers are more class-specific: the top-9 images of a layer-5 "
                      "map share a class more often than those of a layer-1 map (ours: "
                      "class purity of the top 9, layer 5 minus layer 1, Fashion-MNIST).",
            paper="layer 1-2: edges, colours; layer 5: whole objects of a class",
            measure=lambda m: (m[f"fashion_mnist/layer{top}/top9_class_purity"]
                               - m["fashion_mnist/layer1/top9_class_purity"]),
            check=lambda d: d > 0, check_text="> 0", fmt="{:+.3f}"),
      Claim(source="Zeiler & Fergus 2013, §4.2, Fig. 7 (a-d)",
            statement="The classifier localises the object: occluding the garment lowers "
                      "p(true class) more than occluding the background (ours: mean drop "
                      "with the square centred on the object / on the background).",
            paper="p(true class) drops sharply when the object is covered",
            measure=lambda m: (m["fashion_mnist/occlusion/object_drop"]
                               / max(m["fashion_mnist/occlusion/background_drop"], 1e-6)),
            check=lambda r: r > 2, check_text="> 2x", fmt="{:.1f}x"),
      Claim(source="Zeiler & Fergus 2013, §4.2 (ours: the occluder in the background's colour)",
            statement="The same with a black square: on Fashion-MNIST's black background a "
                      "gray square adds content; a black one only hides (ours: object / "
                      "background mean drop).",
            paper="— (the paper's photos have no uniform background)",
            measure=lambda m: (m["fashion_mnist/occlusion/object_drop_black"]
                               / max(m["fashion_mnist/occlusion/background_drop_black"], 1e-6)),
            check=lambda r: r > 2, check_text="> 2x", fmt="{:.1f}x"),
      Claim(source="Zeiler & Fergus 2013, §4.2, Fig. 7 (b)",
            statement="The strongest layer-5 feature map depends on a part of the image: "
                      "occluding it there cuts the map's total activation (ours: the largest "
                      "relative drop over square positions, mean over images, Fashion-MNIST).",
            paper="activity drops sharply when the square covers the map's stimulus",
            measure="fashion_mnist/occlusion/feature_drop",
            check=lambda d: d > 0.3, check_text="> 30%", fmt="{:.0%}")]
  if config.photos.enabled:
    result += [
        Claim(source="our photo task (research/data/photos.py)",
              statement="The photo network recognises unseen parts of the 10 photos "
                        "(held-out strip).",
              paper="— (not in the paper)", measure="photos/test/accuracy",
              check=lambda a: a > 0.5, check_text="> 0.5 (chance 0.1)"),
        Claim(source="Zeiler & Fergus 2013, §4, Fig. 2 (photos)",
              statement="On photos too, layer-5 maps are more specific than layer-1 maps "
                        "(top-9 purity of the source photo, layer 5 minus layer 1).",
              paper="higher layers more class-specific",
              measure=lambda m: (m[f"photos/layer{top}/top9_class_purity"]
                                 - m["photos/layer1/top9_class_purity"]),
              check=lambda d: d > 0, check_text="> 0", fmt="{:+.3f}"),
        Claim(source="Zeiler & Fergus 2013, §4.2, Fig. 7 (d) (photos)",
              statement="Occlusion sensitivity is localised: the 20% most sensitive square "
                        "positions account for most of the drop in p(true photo) (mean over "
                        "crops).",
              paper="a few positions (the object) matter",
              measure="photos/occlusion/p_drop_concentration",
              check=lambda f: f > 0.5, check_text="> 50% (uniform: 20%)", fmt="{:.0%}")]
  return result
