"""Whole builds of tiny models, and integration on the real weights in ../shared."""
