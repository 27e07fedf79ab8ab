"""The GAN training loop: Algorithm 1's steps, resumable, with sample grids.

`train_gan` runs `research.train.gan_step`'s jitted step (one D update, then
one G update) over a dataset, with the guarantees of the classifier trainer:
the data batch of step s is a function of (seed, s) (`pipeline.train_batches`)
and the step's noise and dropout key is fold_in(key, s), so a killed run
resumes from its newest orbax checkpoint and ends with exactly the state of an
uninterrupted one. It writes metrics.jsonl and progress lines, and every
`sample_every_steps` a grid of samples from a fixed noise batch
(samples/step_XXXXXX.npy, for figures; `on_samples` may draw it), plus whatever
`eval_fn(state)` returns (e.g. a Fréchet distance), so training can be
watched as it goes. A NaN or inf loss stops the run, keeping the last good
checkpoint.
"""

import functools
import glob
import os

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.data import pipeline
from research.data.tfds_source import ArraySplit
from research.models.gan import to_unit_range
from research.ops import gan as gan_ops
from research.train import checkpoint, gan_step, metrics as metrics_lib


def run_keys(seed: int) -> dict[str, jax.Array]:
  """The run's keys, all from its seed: init, per-step (fold_in step), the fixed grid noise."""
  init, steps, grid, evals = jax.random.split(jax.random.PRNGKey(seed), 4)
  return {"init": init, "steps": steps, "grid": grid, "eval": evals}


@functools.cache
def make_sampler(generator: nn.Module, *, batch_stats_mode: bool = False):
  """sample(state, z [N, latent]) -> images in [0, 1], jitted once per generator
  (cached: equal generators share one function and its compilations).

  batch_stats_mode: normalise with the batch's own statistics (what many
  DCGAN implementations sample with) instead of batch norm's running averages.
  """
  @jax.jit
  def sample(state, z):
    images = gan_step.generate(generator, state, z, train=batch_stats_mode)
    return to_unit_range(images, generator.output_range)
  return sample


def generate_images(sampler, generator: nn.Module, state, key: jax.Array, num: int,
                    batch_size: int = 1000) -> np.ndarray:
  """`num` samples in [0, 1], float32 [num, H, W, C], drawn in batches (noise from `key`)."""
  out = []
  for i, start in enumerate(range(0, num, batch_size)):
    z = gan_ops.sample_latent(jax.random.fold_in(key, i), min(batch_size, num - start),
                              generator.latent_dim, generator.latent_distribution)
    out.append(np.asarray(sampler(state, z)))
  return np.concatenate(out)


def snapshots(workdir: str) -> list[tuple[int, np.ndarray]]:
  """(step, uint8 images) of every saved sample grid, in step order."""
  paths = sorted(glob.glob(os.path.join(workdir, "samples", "step_*.npy")))
  return [(int(os.path.basename(p)[5:-4]), np.load(p)) for p in paths]


def train_gan(generator: nn.Module, discriminator: nn.Module,
              g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
              train_data: ArraySplit, workdir: str, *, total_steps: int, batch_size: int,
              seed: int, generator_loss: str = "non_saturating", init_fn=None,
              eval_fn=None, log_every_steps: int = 100, checkpoint_every_steps: int = 500,
              sample_every_steps: int = 500, grid_size: int = 64,
              sample_with_batch_stats: bool = False, keep_checkpoints: int = 2,
              on_samples=None):
  """Trains (or resumes) a GAN into `workdir`; returns the final GANState.

  init_fn(state) -> state adjusts the fresh state before step 1 (e.g. the
  MLP generator's output bias from the data's pixel marginals). eval_fn(state)
  -> dict of floats runs at every sample step; its values go to metrics.jsonl
  under "eval/". on_samples(step, images) gets each sample grid's images
  (float [grid_size, H, W, C] in [0, 1]) after they are saved as .npy, e.g.
  to draw them (`research.eval.gan_figures.sample_grid_writer`); training
  itself draws nothing, so this layer needs no plotting.
  """
  keys = run_keys(seed)
  image_shape = train_data.images.shape[1:]
  state = gan_step.create_gan_state(generator, discriminator, g_tx, d_tx, image_shape,
                                    keys["init"])
  if init_fn is not None:
    state = init_fn(state)
  ckpt = checkpoint.Checkpointer(workdir, keep=keep_checkpoints)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
  # Restored arrays are committed to a device and jit keys its cache on that:
  # committing a fresh state too lets a resumed run reuse the compiled step.
  state = jax.device_put(state, jax.devices()[0])
  start_step = int(state.step)
  name = os.path.basename(os.path.normpath(workdir))
  sampler = make_sampler(generator, batch_stats_mode=sample_with_batch_stats)
  grid_z = gan_ops.sample_latent(keys["grid"], grid_size, generator.latent_dim,
                                 generator.latent_distribution)
  writer = metrics_lib.MetricWriter(workdir, tensorboard=False)

  def snapshot(step: int) -> None:
    images = np.asarray(sampler(state, grid_z))
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    np.save(os.path.join(workdir, "samples", f"step_{step:06d}.npy"),
            np.round(images * 255).astype(np.uint8))
    if on_samples is not None:
      on_samples(step, images)
    if eval_fn is not None:
      results = eval_fn(state)
      writer.write(step, {f"eval/{k}": v for k, v in results.items()})
      logging.info("%s: eval at step %d: %s", name, step,
                   ", ".join(f"{k} {v:.4g}" for k, v in results.items()))

  if start_step == 0:
    snapshot(0)
  step_fn = gan_step.make_gan_train_step(generator, discriminator, g_tx, d_tx,
                                         generator_loss)
  batches = pipeline.train_batches(train_data, batch_size, seed, start_step)
  progress = metrics_lib.Progress(total_steps, batch_size, start_step)
  pending = []
  for step in range(start_step + 1, total_steps + 1):
    batch = next(batches)
    state, step_metrics = step_fn(state, {"image": batch["image"]},
                                  jax.random.fold_in(keys["steps"], step))
    pending.append(step_metrics)
    if step == start_step + 1:
      progress.restart_clock(step)
    is_log = step % log_every_steps == 0 or step == total_steps
    is_checkpoint = step % checkpoint_every_steps == 0 or step == total_steps
    if is_log or is_checkpoint:  # Never checkpoint a NaN state.
      means = metrics_lib.fetch_means(pending)
      if not (np.isfinite(means["d_loss"]) and np.isfinite(means["g_loss"])):
        ckpt.wait()
        raise FloatingPointError(
            f"{name}: a GAN loss became non-finite by step {step} (d_loss "
            f"{means['d_loss']}, g_loss {means['g_loss']}); the last good checkpoint is "
            f"kept in {ckpt.directory}. Lower the learning rates.")
      if is_log:
        writer.write(step, {f"train/{k}": v for k, v in means.items()})
        logging.info("%s: %s", name, progress.line(step, {
            k: means[k] for k in ("d_loss", "g_loss", "d_real", "d_fake")}))
    if step % sample_every_steps == 0 or step == total_steps:
      snapshot(step)
    if is_checkpoint:
      ckpt.save(step, state)
  ckpt.close()
  writer.close()
  return state
