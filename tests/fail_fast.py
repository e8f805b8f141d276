"""A failing test fails fast and readably, whatever it was waiting on or raised through.

**Time limits that Ray cannot swallow.** pytest-timeout (``timeout`` in pyproject) fails a
test by raising pytest's ``Failed`` from a ``SIGALRM`` handler. A test blocked in a Ray
call never sees it: Ray's wait loop runs the pending signal handlers itself and lets only
``KeyboardInterrupt`` and ``SystemExit`` out, swallowing any other exception, so the test
went on waiting (a deliberately hung ``ray.get`` outlived its 45-second limit by 14
minutes). Here the handler raises :class:`TimedOut`, a ``SystemExit``: Ray gives it up,
pytest records the test as failed (a ``SystemExit`` from a test fails that test, it does
not end the run), the fixtures' finalizers stop Ray and the run goes on to its summary.

**A report pytest can always write.** pytest numbers each traceback entry by
``tb_lineno - 1``; a frame whose code object has no line table (compiled extensions build
such frames for their tracebacks) has ``tb_lineno`` None, and formatting the failure then
dies in pytest itself (``INTERNALERROR … TypeError: unsupported operand type(s) for -:
'NoneType' and 'int'``), with no report and no summary. Such frames say nothing a reader
could follow, so they are unlinked from the exception's traceback (and its causes' and
contexts') before pytest formats it.
"""

from __future__ import annotations

import faulthandler
import signal
import sys

import pytest


class TimedOut(SystemExit):
    """A test ran past its time limit."""


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    if settings.method != "signal":
        return None

    def expire(signum, frame):
        item.timed_out = settings.timeout
        sys.stderr.write(f"\nTimeout: {item.nodeid} ran past its {settings.timeout:g} s; its threads:\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        raise TimedOut(f"Timeout: the test ran past its {settings.timeout:g} s")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_cancel_timer(item):
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    return True


def _drop_unnumbered(exc: BaseException | None, seen: set) -> None:
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb, kept = exc.__traceback__, []
        while tb is not None:
            if tb.tb_lineno is not None:
                kept.append(tb)
            tb = tb.tb_next
        for a, b in zip(kept, kept[1:] + [None]):
            a.tb_next = b
        exc.__traceback__ = kept[0] if kept else None
        _drop_unnumbered(exc.__cause__, seen)
        exc = exc.__context__


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    if call.excinfo is None:
        return
    exc = call.excinfo.value
    limit = getattr(item, "timed_out", None)
    if limit is not None and isinstance(exc, SystemExit) and not isinstance(exc, TimedOut):
        # Ray re-raises a SystemExit of its own (``SystemExit: 1``): name the cause instead.
        exc = TimedOut(f"Timeout: the test ran past its {limit:g} s (raised inside Ray as {exc!r})")
        exc.__traceback__ = call.excinfo.value.__traceback__
    _drop_unnumbered(exc, set())
    if exc.__traceback__ is not None:  # ExceptionInfo keeps the traceback it was made with
        call.excinfo = pytest.ExceptionInfo.from_exception(exc)
