"""Rendering filters by activation maximization: parameterizations, transforms, objectives, the loop."""
