"""Training: state, jitted steps, optimizers, checkpoints, metrics, the loop."""
