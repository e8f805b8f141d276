"""The site room renders plain data: it imports no Keras and no room that reads a model
(issue 22, item 2), so pages can be rendered, and the site tested, without TensorFlow."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import ROOT


# Run in a fresh interpreter: this one has long imported Keras. ``None`` in sys.modules
# makes any import of these names fail at once, however deep.
_SCRIPT = """
import pkgutil, sys
for name in ("keras", "tensorflow", "jax", "torch"):
    sys.modules[name] = None
import gallery.site
for info in pkgutil.iter_modules(gallery.site.__path__, "gallery.site."):
    __import__(info.name)
rooms = sorted(m for m in sys.modules if m.startswith(("gallery.model", "gallery.photos", "gallery.render",
                                                        "gallery.orchestrate")))
assert not rooms, f"gallery.site imports {rooms}"
print("ok", len([m for m in sys.modules if m.startswith("gallery.site.")]))
"""


def test_the_site_imports_without_keras_or_the_model_rooms():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "7"]  # folder, manifest, pages, photo_pages, records, slugs, urls: all imported
