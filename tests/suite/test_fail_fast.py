"""The suite's own failure handling (tests/fail_fast.py): a test hung in a call that
swallows pytest's exceptions, as Ray's wait loop does, stops at its limit, and a failure
raised through a frame without line numbers is reported; the run ends with its summary."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.slow  # runs a pytest session of its own, which loads Keras again


FAILING = '''
import time

import pytest


def _boom():
    raise RuntimeError("raised in a frame without line numbers")


_boom.__code__ = _boom.__code__.replace(co_linetable=b"")  # as compiled extensions' frames are


def test_through_a_frame_without_line_numbers():
    _boom()


@pytest.mark.timeout(2)
def test_hung_in_a_loop_that_lets_only_system_exit_out():
    while True:  # Ray's wait loop: it runs signal handlers itself and keeps any other exception
        try:
            time.sleep(0.05)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise


def test_after_them_runs():
    pass
'''


def test_a_hung_or_unformattable_failure_still_ends_the_run_with_its_summary(tmp_path):
    (tmp_path / "test_failing.py").write_text(FAILING, encoding="utf-8")
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.fail_fast",
                          str(tmp_path / "test_failing.py")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert "INTERNALERROR" not in text, text[-3000:]
    assert text.strip().splitlines()[-1].startswith("2 failed, 1 passed"), text[-3000:]
    assert "RuntimeError: raised in a frame without line numbers" in text
    assert "TimedOut: Timeout: the test ran past its 2 s" in text
    assert time.monotonic() - start < 60
