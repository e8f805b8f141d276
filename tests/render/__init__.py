"""Tests of gallery/render: parameterizations, transforms, objectives, the optimizer, MACO, caricatures, first layers, trajectories, and the preset's picture limits."""
