"""Everything the build prints goes through here, made safe for a terminal.

Names come from files and models the user did not necessarily write: a photo called
``\\x1b]0;pwned\\x07.png`` would otherwise set the window title, and ``\\x1b[2J`` clear the
screen. Control and format characters (C0, C1, bidirectional overrides) are shown as
escapes instead of being sent raw.
"""

from __future__ import annotations

import sys
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
