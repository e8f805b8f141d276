"""Issue 20 (reliability, round three): a person's files, links, FIFOs and swapped cache
entries in the folders a build writes; each test failed before its fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gallery.cli import main
from gallery.site.folder import INVENTORY

from .conftest import tiny_classifier
from .test_reliability import ROOT, _argv

FILTER_PAGE = Path("tiny") / "layers" / "conv1" / "3.html"


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_persons_file_at_a_path_a_later_build_wants_is_never_overwritten_or_removed(setup, capsys):
    tmp, model, photos = setup
    argv = _argv(tmp, model, photos, steps=2)
    site = tmp / "site"
    assert main([*argv, "--filters", "0:2"]) == 0
    (site / FILTER_PAGE).write_text("my notes on filter 3")
    capsys.readouterr()
    assert main([*argv, "--filters", "0:6"]) == 0
    err = capsys.readouterr().err
    assert (site / FILTER_PAGE).read_text() == "my notes on filter 3"
    assert f"{FILTER_PAGE.as_posix()!r} is not published" in err
    assert FILTER_PAGE.as_posix() not in json.loads((site / INVENTORY).read_text())["models"]["tiny"]["files"]
    assert (site / "tiny" / "layers" / "conv1" / "4.html").is_file()  # the rest is published
    assert main([*argv, "--filters", "0:2"]) == 0
    assert (site / FILTER_PAGE).read_text() == "my notes on filter 3"
    assert not (site / "tiny" / "layers" / "conv1" / "4.html").exists()


def test_a_linked_folder_in_the_site_is_never_written_or_removed_through(setup, capsys):
    tmp, model, photos = setup
    argv = _argv(tmp, model, photos, steps=2)
    site = tmp / "site"
    assert main([*argv, "--filters", "0:2"]) == 0
    outside = tmp / "elsewhere"
    layer = site / "tiny" / "layers" / "conv1"
    shutil.copytree(layer, outside)
    (outside / "5.html").write_text("a file outside --out that the build would list as stale")
    shutil.rmtree(layer)
    layer.symlink_to(outside, target_is_directory=True)
    before = _tree(outside)
    capsys.readouterr()
    assert main([*argv, "--filters", "0:6"]) == 0
    err = capsys.readouterr().err
    assert err.count("as it is: it is a link or a file, not a folder") == 1, err
    assert main([*argv, "--filters", "0:2"]) == 0
    assert _tree(outside) == before and layer.is_symlink()


def test_swapped_filter_entries_are_recomputed_not_published(setup, capsys):
    tmp, model, photos = setup
    argv = _argv(tmp, model, photos, steps=2)
    assert main(argv) == 0
    first = json.loads((tmp / "site" / "tiny" / "manifest.json").read_text())
    tiles = _tree(tmp / "site" / "tiny" / "layers")
    records = {}
    for path in sorted((tmp / "cache").glob("objects/*/*.json")):
        record = json.loads(path.read_text())
        if record["about"].get("kind") == "filter" and record["about"].get("layer") == "conv1":
            records[path.stem] = path
    a, b = list(records)[:2]
    for suffix in (".bin", ".json"):  # payload and record together, as moving files by hand might
        x, y = records[a].with_suffix(suffix), records[b].with_suffix(suffix)
        swap = x.with_suffix(".swap")
        x.rename(swap)
        y.rename(x)
        swap.rename(y)
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("key does not match its digest") == 2 and "2 damaged entries replaced" in err
    assert json.loads((tmp / "site" / "tiny" / "manifest.json").read_text()) == first
    assert _tree(tmp / "site" / "tiny" / "layers") == tiles


def test_a_fifo_in_the_site_never_blocks_the_build(setup):
    tmp, model, photos = setup
    other = tmp / "other.keras"
    tiny_classifier(name="other").save(other)
    argv = _argv(tmp, model, photos, steps=2)
    assert main(_argv(tmp, other, photos, steps=2)) == 0
    assert main(argv) == 0
    fifos = [tmp / "site" / "other" / "manifest.json", tmp / "site" / "tiny" / "layers" / "conv1" / "0.html"]
    for fifo in fifos:
        fifo.unlink()
        os.mkfifo(fifo)
    try:
        done = subprocess.run([sys.executable, "build.py", *argv], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("a FIFO in the site blocked the build") from None
    assert done.returncode == 0, done.stderr
    assert fifos[1].is_file() and not fifos[1].is_symlink()  # its own page, replaced
