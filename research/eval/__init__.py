"""Evaluation of generative models and attacks: Parzen-window log-likelihood,
Fréchet distance on classifier features, a Gaussian baseline sampler, and
pictures (numpy / scipy / matplotlib; not jitted model code)."""
