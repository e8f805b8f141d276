"""Everything the build prints goes through here, made safe for a terminal.

Names come from files and models the user did not necessarily write: a photo called
``\\x1b]0;pwned\\x07.png`` would otherwise set the window title, and ``\\x1b[2J`` clear the
screen. Control and format characters (C0, C1, bidirectional overrides) are shown as
escapes instead of being sent raw.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import unicodedata


def clean(text: str) -> str:
    """``text`` with every control or format character replaced by its ``\\x``/``\\u`` escape."""
    return "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")
                   else ascii(ch)[1:-1] for ch in str(text))


def log(*lines: str, stream=None) -> None:
    """Lines for the person running the build, on stderr unless ``stream`` says otherwise."""
    for line in lines:
        print(clean(line), file=stream or sys.stderr, flush=True)


def warn(message: str) -> None:
    log(f"warning: {message}")


@contextlib.contextmanager
def native_quiet(enabled: bool = True):
    """Hold back what native libraries write straight to file descriptor 2 while they start.

    TensorFlow and XLA log from C++ before absl is initialised, so ``TF_CPP_MIN_LOG_LEVEL``
    cannot silence them (tensorflow/tensorflow#100442): "Could not find cuda drivers",
    "failed call to cuInit", CPU-feature notices. They are kept in a temporary file and
    dropped if the block succeeds, or replayed before its error if it fails.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
