"""Generative adversarial nets: Algorithm 1 of Goodfellow et al. 2014 (k = 1).

One step is one discriminator update then one generator update
(`research.train.gan_step.gan_train_step`); the state is `gan_step.GANState`
(both players). Keys, in config.objective:

  gan              "gan_mlp" or "dcgan" (research.models.gan.GAN_MODELS)
  generator        the generator's constructor fields (dict)
  discriminator    the discriminator's constructor fields (dict)
  optimizer        name "adam" (g_learning_rate, d_learning_rate, b1) or
                   "paper_sgd" (the released MNIST configuration,
                   `gan_step.gan_mlp_optimizers`)
  generator_loss   "non_saturating" (§3) or "minimax" (Algorithm 1 as written)
  init_output_bias the MLP generator's output bias from the pixel marginals
  sample_with_batch_stats  sample grids normalised with batch statistics
  grid_size        samples in each grid

The step's noise and dropout key is fold_in(run_keys(seed)["steps"], s) for
step s. At every evaluation (config.eval_every_steps, and at step 0) the
generator's samples of a fixed noise batch are saved as uint8
<workdir>/samples/step_XXXXXX.npy (`snapshots` reads them back), so training
can be watched as it goes; the caller's eval_fn adds measures (a Fréchet
distance) and pictures.
"""

import glob
import os

import jax
import numpy as np
import optax

from research.models import gan as gan_models
from research.models import summary as summary_lib
from research.ops import gan as gan_ops
from research.train import gan_step
from research.errors import require
from research.train.objectives.base import Objective as _Base

OPTIMIZERS = ("adam", "paper_sgd")


def validate_config(config) -> None:
  o = config.objective
  for key in ("gan", "generator", "discriminator", "optimizer", "generator_loss"):
    require(key in o, f"objective.{key}", None, "the gan objective needs it.")
  require(o.gan in gan_models.GAN_MODELS, "objective.gan", o.gan,
          f"choose one of {sorted(gan_models.GAN_MODELS)}.")
  require(o.optimizer.name in OPTIMIZERS, "objective.optimizer.name", o.optimizer.name,
          f"choose one of {OPTIMIZERS}.")
  require(o.generator_loss in gan_ops.GENERATOR_LOSSES, "objective.generator_loss",
          o.generator_loss, f"choose one of {gan_ops.GENERATOR_LOSSES}.")
  require(not o.get("init_output_bias") or o.gan == "gan_mlp", "objective.init_output_bias",
          o.get("init_output_bias"), "only the MLP generator (gan_mlp) has it.")
  require(o.get("grid_size", 64) > 0, "objective.grid_size", o.get("grid_size"), "must be > 0.")


def snapshots(workdir: str) -> list[tuple[int, np.ndarray]]:
  """(step, uint8 images [N, H, W, C]) of every saved sample grid, in step order."""
  paths = sorted(glob.glob(os.path.join(workdir, "samples", "step_*.npy")))
  return [(int(os.path.basename(p)[5:-4]), np.load(p)) for p in paths]


class Objective(_Base):
  """Both players of config.objective.gan, trained on config.data's images."""

  progress_keys = ("d_loss", "g_loss", "d_real", "d_fake")
  evaluate_at_start = True

  def __init__(self, config, train_data, total_steps, workdir):
    super().__init__(config, train_data, total_steps, workdir)
    o = config.objective
    self.generator, self.discriminator = gan_models.get_gan(
        o.gan, o.generator.to_dict(), o.discriminator.to_dict())
    if o.optimizer.name == "paper_sgd":
      self.g_tx, self.d_tx = gan_step.gan_mlp_optimizers(len(train_data) // config.batch_size)
    else:
      self.g_tx = optax.adam(o.optimizer.g_learning_rate, b1=o.optimizer.b1)
      self.d_tx = optax.adam(o.optimizer.d_learning_rate, b1=o.optimizer.b1)
    self.keys = gan_step.run_keys(config.seed)
    self.image_shape = tuple(train_data.image_shape)
    self.step_fn = gan_step.make_gan_train_step(self.generator, self.discriminator, self.g_tx,
                                                self.d_tx, o.generator_loss,
                                                compute_dtype=config.compute_dtype)
    self.sampler = gan_step.make_sampler(self.generator,
                                         batch_stats_mode=o.get("sample_with_batch_stats", False))
    self.grid_z = gan_ops.sample_latent(self.keys["grid"], o.get("grid_size", 64),
                                        self.generator.latent_dim,
                                        self.generator.latent_distribution)

  def summary(self):
    g = summary_lib.summarize(self.generator, (2, self.generator.latent_dim), train=False)
    d = summary_lib.summarize(self.discriminator, self.image_shape, train=False)
    text = f"Generator\n{g.table()}\n\nDiscriminator\n{d.table()}"
    return text, g.total_params + d.total_params

  def init_state(self):
    return gan_step.create_gan_state(self.generator, self.discriminator, self.g_tx, self.d_tx,
                                     self.image_shape, self.keys["init"])

  def start(self, state):
    if not self.config.objective.get("init_output_bias"):
      return state
    unit = self.train_data.sample_images(10_000).astype(np.float32) / 255.0
    g_params = gan_models.init_output_bias_from_marginals(jax.device_get(state.g_params), unit)
    sharding = jax.tree.leaves(state)[0].sharding
    return state.replace(g_params=jax.device_put(g_params, sharding))

  def train_step(self, state, batch):
    # Step s (state.step = s - 1 before it) draws its noise and dropout from fold_in(key, s).
    return self.step_fn(state, batch, jax.random.fold_in(self.keys["steps"], state.step + 1))

  def evaluate(self, state, step):
    """Saves the samples of the fixed noise batch as samples/step_XXXXXX.npy."""
    images = np.asarray(self.sampler(state, self.grid_z))
    if jax.process_index() == 0:
      os.makedirs(os.path.join(self.workdir, "samples"), exist_ok=True)
      np.save(os.path.join(self.workdir, "samples", f"step_{step:06d}.npy"),
              np.round(images * 255).astype(np.uint8))
    return {}
