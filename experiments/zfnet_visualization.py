"""ZF Net: deconvnet visualisation and occlusion sensitivity (Zeiler & Fergus 2013).

(Over 200 lines because it holds two experiments: the photo network's crops
are drawn per step, so its short training loop lives here until the one
training loop takes a per-step batch source.)

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
what changes them (research/ops/occlusion.py). The analysis, both figures
and their metrics, is `research/eval/deconvnet_vis.py`'s `look_inside`.

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

import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research import models
from research.data import augment, datasets, photos as photos_lib, tfds_source
from research.eval import deconvnet_vis
from research.launch import multirun
from research.report import Claim
from research.train import checkpoint, config as config_lib, steps


# This experiment's own config keys (research/launch/multirun.py's schema); the
# rest is the Fashion-MNIST network's run.
STUDY_KEYS = ("vis", "photos", "arg")


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


# --- 1. Fashion-MNIST: zfnet_small with the standard trainer -----------------


def fashion_mnist(config, workdir: str) -> dict:
  run_dir = os.path.join(workdir, "fashion_mnist")
  # Kept if it finished before.
  train_metrics = multirun.run_variant(multirun.base_config(config, STUDY_KEYS), run_dir)
  params = jax.tree.map(jnp.asarray, checkpoint.load_arrays(run_dir)[1]["params"])
  data = tfds_source.load_split(config.data.name, config.data.eval_split, config.data.data_dir)
  data = tfds_source.ArraySplit(data.images[:config.vis.examples],
                                data.labels[:config.vis.examples], data.class_names)
  model = models.get_model(config.model.name, num_classes=data.num_classes,
                           **config.model.kwargs.to_dict())
  mean, std = datasets.normalization(config.data.name, config.data.mean, config.data.std)
  net = deconvnet_vis.Network("fashion_mnist", model, params, mean, std, data.class_names)
  images01 = data.images.astype(np.float32) / 255.0
  occ = deconvnet_vis.confident_examples(net, images01, data.labels, config.vis.occlusion_images)
  metrics = deconvnet_vis.look_inside(
      net, images01, data.labels, (images01[occ], data.labels[occ]), config.vis, workdir,
      occluder=(config.vis.occlusion_size, config.vis.occlusion_stride), background_below=0.1)
  metrics.update({f"fashion_mnist/{k}": v for k, v in train_metrics.items()
                  if k in ("test/accuracy", "steps", "wall_time_s")})
  return metrics


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
  net = deconvnet_vis.Network("photos", photo_model(len(crops.photos)), params,
                              *crops.mean_std(), photos_lib.NAMES)
  images, labels, origins = crops.grid_crops(pc.grid_stride, region="all")
  images01 = images.astype(np.float32) / 255.0
  # For Fig. 7, from six photos, the confidently classified crop nearest the
  # photo's centre (where its subject is).
  centres = np.asarray([(p.shape[0] - pc.crop) / 2 for p in crops.photos])[labels], np.asarray(
      [(p.shape[1] - pc.crop) / 2 for p in crops.photos])[labels]
  order = np.argsort(np.hypot(origins[:, 0] - centres[0], origins[:, 1] - centres[1]))
  occ = deconvnet_vis.confident_examples(net, images01, labels, 6, order)
  metrics.update(deconvnet_vis.look_inside(
      net, images01, labels, (images01[occ], labels[occ]), config.vis, workdir,
      occluder=(pc.occlusion_size, pc.occlusion_stride), origins=origins))
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
