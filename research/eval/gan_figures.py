"""Pictures for the GAN experiment (experiments/gan.py).

  pictures        final samples, samples of a fixed noise batch over training,
                  and walks through the noise space (DCGAN §6.1).
  sample_grid     the picture of one sample grid saved during training.
  frechet_curves  the Fréchet distance logged during training, one line per GAN.

Images are float arrays [N, H, W, C] in [0, 1].
"""

import os

import jax
import numpy as np

from research.eval import plots
from research.ops import gan as gan_ops
from research.train import gan_step, metrics as metrics_lib
from research.train.objectives import gan as gan_objective


def pictures(config, name, generator, state, sampler, samples, workdir) -> None:
  """Final samples, samples over training (fixed noise), and latent walks."""
  plots.image_grid(samples[:100], 10, os.path.join(workdir, f"samples_{name}.png"),
                   title=f"{name}: samples after {int(state.step)} steps")
  snaps = gan_objective.snapshots(os.path.join(workdir, name))
  if len(snaps) > 8:  # Evenly spaced rows, always the first and the last.
    snaps = [snaps[i] for i in np.linspace(0, len(snaps) - 1, 8).round().astype(int)]
  rows = np.stack([images[:12] for _, images in snaps]).astype(np.float32) / 255.0
  plots.interpolation_strip(rows, os.path.join(workdir, f"progress_{name}.png"),
                            title=f"{name}, fixed noise; rows: steps "
                                  f"{', '.join(str(s) for s, _ in snaps)}")
  # DCGAN §6.1 walks along straight lines in U(-1, 1)^100; for the MLP GAN's
  # N(0, I) noise a spherical path keeps the norm typical of the prior.
  key = jax.random.fold_in(gan_step.run_keys(config.seed)["eval"], 10**6)
  ends = gan_ops.sample_latent(key, 2 * config.eval.interpolation_walks, generator.latent_dim,
                               generator.latent_distribution)
  kind = "linear" if generator.latent_distribution == "uniform" else "slerp"
  z = gan_ops.interpolate_latents(ends[0::2], ends[1::2], config.eval.interpolation_steps, kind)
  walks = np.asarray(sampler(state, z.reshape(-1, generator.latent_dim)))
  plots.interpolation_strip(walks.reshape(*z.shape[:2], *walks.shape[1:]),
                            os.path.join(workdir, f"interpolation_{name}.png"),
                            title=f"{name}: {kind} walks between random noise vectors")


def sample_grid(run_dir: str, step: int) -> str:
  """samples/step_XXXXXX.png of the grid the GAN objective saved as .npy at `step`."""
  path = os.path.join(run_dir, "samples", f"step_{step:06d}")
  images = np.load(path + ".npy").astype(np.float32) / 255.0
  plots.image_grid(images, int(np.ceil(np.sqrt(len(images)))), path + ".png",
                   title=f"{os.path.basename(os.path.normpath(run_dir))}, step {step}")
  return path + ".png"


def frechet_curves(gans: list[str], workdir: str) -> str:
  """The Fréchet distance of 2,000 samples over training (log scale), one line per GAN."""
  curves = {name: metrics_lib.series(os.path.join(workdir, name), "eval/frechet_2k")
            for name in gans}
  return plots.plot_curves(
      curves, os.path.join(workdir, "frechet_during_training.png"), xlabel="training step",
      ylabel="Fréchet distance (LeNet-5 F6), 2,000 samples", yscale="log",
      styles={name: dict(marker=".") for name in gans})
