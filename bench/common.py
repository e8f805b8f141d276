"""What every bench shares: the repository on the import path, the offline fixtures, and
one line that says which machine the figures came from (they mean little without it).

Benches run as ``python bench/NAME.py``, so this folder is on the path and
``from common import …`` finds this module.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
HED_VGG16 = SHARED / "models" / "vgg16_hed_notop.keras"


def cpu_name() -> str:
    """The processor's model name (``platform.processor()`` is empty on most Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """``"x86_64, 2 cores, AMD EPYC …"``."""
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu_name()}"


def clock(fn):
    """``(fn(), seconds it took)``."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start
