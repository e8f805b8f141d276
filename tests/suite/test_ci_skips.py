"""Under CI, a skip for a reason the suite does not expect is a failure, not a quiet pass."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.slow  # runs a pytest session of its own, which loads Keras again

PROBE = '''
import pytest

def test_needs_a_browser():
    pytest.skip("chromium is not installed")

@pytest.mark.skipif(True, reason="only JAX compiles ahead of the first call")
def test_expected():
    pass
'''


def _run(tmp_path, ci: str) -> str:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    # The suite's own conftest, loaded as a plugin, judges the probe's skips.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          str(probe)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return run.stdout


def test_an_unexpected_skip_fails_under_ci_and_only_there(tmp_path):
    under_ci = _run(tmp_path, "true")
    assert "1 failed, 1 skipped" in under_ci and "skipped under CI, where it must run" in under_ci, under_ci
    elsewhere = _run(tmp_path, "")
    assert "2 skipped" in elsewhere and "failed" not in elsewhere, elsewhere
