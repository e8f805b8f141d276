"""An installed, non-editable package carries everything a build needs (issue 20, item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import ROOT, tiny_classifier


def test_the_listed_packages_are_every_package_of_the_source_tree():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gallery").rglob("__init__.py")}
    assert listed == found | {"gallery.templates"}


def _run(command, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{command[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_a_wheel_installed_away_from_the_source_builds_a_gallery(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], tmp_path, 600)
    wheel = next(wheels.glob("cnn_gallery-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("gallery/templates/")}
    source = {f"gallery/templates/{p.relative_to(ROOT / 'templates').as_posix()}"
              for p in (ROOT / "templates").rglob("*") if p.is_file()}
    assert shipped == source  # every template and asset, whatever folders the assets grow

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(venv / "bin" / "python"), "-c", "import gallery; print(gallery.__file__)"], elsewhere)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the wheel's copy, not the source's

    tiny_classifier().save(elsewhere / "tiny.keras")
    (elsewhere / "photos").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
        elsewhere / "photos" / "a.png")
    _run([str(venv / "bin" / "cnn-gallery"), "--model", "tiny.keras", "--preprocess", "none", "--size", "16",
          "--steps", "2", "--filters", "0:2", "--images", "photos", "--out", "site", "--cache", "cache"], elsewhere)
    assert (elsewhere / "site" / "static" / "style.css").read_bytes() == (ROOT / "templates" / "static" /
                                                                            "style.css").read_bytes()
    assert "Grad-CAM" in (elsewhere / "site" / "tiny" / "photos" / "a.html").read_text()
