"""The backend-neutral core, run again under JAX and PyTorch, each in a process of its own.

Keras fixes its backend when it is first imported, so a second backend needs a second
process. The rest of the suite runs on the default backend (TensorFlow). JAX is in the
test extra, so CI always runs it; PyTorch (a large download) runs where it is installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEUTRAL = ["tests/test_params.py", "tests/test_transforms.py", "tests/test_objectives.py",
           "tests/test_optimize.py", "tests/test_precision.py", "tests/test_cams.py",
           "tests/test_build.py::test_build_writes_a_complete_site"]


@pytest.mark.parametrize("backend,module,extra", [
    ("jax", "jax", {"JAX_PLATFORMS": "cpu"}),
    ("torch", "torch", {"CUDA_VISIBLE_DEVICES": ""}),
])
def test_core_passes_under_another_backend(backend, module, extra):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, **extra}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NEUTRAL],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-25:])
    assert run.returncode == 0, tail
    assert "passed" in tail and "skipped" not in tail.split("passed")[-1], tail
