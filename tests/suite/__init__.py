"""The suite's own machinery: the JAX and PyTorch re-runs, skips under CI, fail-fast hooks, the picture scorer."""
