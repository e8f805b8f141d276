"""The build writes only where it owns the folder, and only what it lists; the rest stays as it was."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gallery import folders
from gallery.cli import main
from gallery.site.folder import INVENTORY

from ..conftest import tiny_backbone, tiny_classifier
from ..helpers.builds import check_site, cli_argv

pytestmark = pytest.mark.slow  # every test builds a whole gallery


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder`` with its bytes and modification time."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _persons_folder(folder: Path) -> Path:
    (folder / "static").mkdir(parents=True)
    (folder / "projects" / "deep").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>my homepage</h1>")
    (folder / "search.js").write_text("// my search")
    (folder / "static" / "style.css").write_text("body{}")
    (folder / "projects" / "deep" / ".report.docx.tmp").write_text("unsaved work")
    (folder / ".x.abc.tmp").write_text("mine too")
    return folder


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--out", "--cache"])
def test_a_folder_the_build_did_not_make_is_refused_untouched(setup, flag, capsys):
    tmp, model, photos = setup
    person = _persons_folder(tmp / "home")
    before = _tree(person)
    argv = cli_argv(tmp, model, photos, steps=2) + [flag, person]
    code, err = _run(argv, capsys)
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {flag} {str(person)!r} is not empty and was not made by cnn-gallery")
    assert "new or empty folder" in last
    assert _tree(person) == before


def test_a_site_folder_keeps_a_persons_files_and_ships_no_lock(setup, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
    assert main(argv) == 0
    site = tmp / "site"
    (site / "notes.txt").write_text("mine")
    (site / "tiny" / "drafts").mkdir()
    (site / "tiny" / "drafts" / ".draft.md.tmp").write_text("mine too")
    (site / ".cnn-gallery-tmp-lookalike.tmp").write_text("and this")
    assert main(argv) == 0
    assert (site / "notes.txt").read_text() == "mine"
    assert (site / "tiny" / "drafts" / ".draft.md.tmp").read_text() == "mine too"
    assert (site / ".cnn-gallery-tmp-lookalike.tmp").exists()
    assert not list(site.rglob("*.lock")) and not list((tmp / "cache").rglob("*.lock"))
    inventory = json.loads((site / INVENTORY).read_text())
    assert "notes.txt" not in json.dumps(inventory)
    check_site(site)


def test_only_the_builds_own_temporaries_are_swept_and_only_where_it_writes(setup, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
    assert main(argv) == 0
    page_dir = tmp / "site" / "tiny" / "layers" / "conv1"
    ours = page_dir / f".0.html.k2j3h4{folders.TEMP_SUFFIX}"
    theirs = page_dir / ".0.html.k2j3h4.tmp"
    mine = tmp / "site" / "mine" / f".notes{folders.TEMP_SUFFIX}"  # our naming, but not where we write
    for path in (ours, theirs, mine):
        path.parent.mkdir(exist_ok=True)
        path.write_text("half")
    assert main(argv) == 0
    assert not ours.exists() and theirs.exists() and mine.exists()
    assert "removed 1 half-written files" in capsys.readouterr().err


def test_a_site_from_before_inventories_is_adopted_and_its_lock_removed(setup, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
    assert main(argv) == 0
    site = tmp / "site"
    (site / INVENTORY).unlink()
    (site / folders.LEGACY_LOCK).write_text("1234")
    (tmp / "cache" / "CACHEDIR.TAG").unlink()
    (tmp / "cache" / folders.LEGACY_LOCK).write_text("1234")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "0 tiles computed" in err, err
    assert not (site / folders.LEGACY_LOCK).exists() and not (tmp / "cache" / folders.LEGACY_LOCK).exists()
    assert (site / INVENTORY).is_file() and (tmp / "cache" / "CACHEDIR.TAG").is_file()


def test_models_whose_files_share_a_name_keep_separate_galleries(tmp_path, capsys):
    for folder, model in (("mA", tiny_classifier()), ("mB", tiny_backbone())):
        (tmp_path / folder).mkdir()
        model.save(tmp_path / folder / "model.keras")
    common = ["--preprocess", "none", "--size", "16", "--steps", "2", "--filters", "0:1",
              "--out", tmp_path / "site", "--cache", tmp_path / "cache"]
    for folder in ("mA", "mB", "mA"):  # the second mA build replaces its own gallery, not B's
        assert _run(["--model", tmp_path / folder / "model.keras", *common], capsys)[0] == 0
    site = tmp_path / "site"
    manifests = sorted(site.glob("*/manifest.json"))
    assert len(manifests) == 2
    by_layers = {tuple(layer["name"] for layer in json.loads(m.read_text())["layers"]): m.parent.name
                 for m in manifests}
    assert set(by_layers) == {("conv1", "conv2"), ("c1", "dw", "sep")}
    index = (site / "index.html").read_text()
    assert all(f'{name}/index.html"' in index for name in by_layers.values())
    for manifest in manifests:  # every photo page of a model lives in that model's own folder
        for photo in json.loads(manifest.read_text())["photos"]:
            assert photo["page"].startswith(manifest.parent.name + "/")
    check_site(site)


def _two_photo_folder(folder: Path, names) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_removed_photos_and_filters_are_unpublished_and_nothing_else(setup, capsys):
    tmp, model, photos = setup
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(photos / "b.png")
    argv = cli_argv(tmp, model, photos, steps=2)
    assert main(argv) == 0
    site = tmp / "site"
    (site / "tiny" / "keep.txt").write_text("a person's file inside a model folder")
    (photos / "b.png").unlink()
    assert main([*argv, "--filters", "0:2"]) == 0
    err = capsys.readouterr().err
    manifest = json.loads((site / "tiny" / "manifest.json").read_text())
    listed = set(json.loads((site / INVENTORY).read_text())["models"]["tiny"]["files"])
    on_disk = {p.relative_to(site).as_posix() for p in (site / "tiny").rglob("*") if p.is_file()}
    assert on_disk == listed | {"tiny/keep.txt"}
    assert not (site / "tiny" / "photos" / "b.html").exists() and not (site / "tiny" / "photos" / "b").exists()
    assert sorted(p.name for p in (site / "tiny" / "layers" / "conv1").glob("*.html")) == ["0.html", "1.html",
                                                                                         "index.html"]
    assert [p["name"] for p in manifest["photos"]] == ["a"]
    assert "no longer listed removed" in err
    check_site(site)


@pytest.mark.parametrize("case", ["same", "cache inside out", "out inside cache", "out is a file"])
def test_impossible_folder_pairs_are_refused_before_anything_is_written(tmp_path, capsys, case):
    model = tmp_path / "tiny.keras"
    tiny_classifier().save(model)
    out, cache = {"same": (tmp_path / "x", tmp_path / "x"),
                  "cache inside out": (tmp_path / "x", tmp_path / "x" / "cache"),
                  "out inside cache": (tmp_path / "x" / "site", tmp_path / "x"),
                  "out is a file": (tmp_path / "file.html", tmp_path / "cache")}[case]
    if case == "out is a file":
        out.write_text("<p>mine</p>")
    before = _tree(tmp_path)
    code, err = _run(["--model", model, "--out", out, "--cache", cache], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert {"same": "are the same folder", "cache inside out": "would be published with the site",
            "out inside cache": "is inside --cache", "out is a file": "is a file, not a folder"}[case] in err
    assert "another build" not in err
    assert _tree(tmp_path) == before


class _FullDisk:
    """``os.fdopen`` for :func:`folders.write_atomic` that runs out of space after ``budget`` bytes."""

    def __init__(self, budget: int, code: int = errno.ENOSPC):
        self.left, self.code, self.real = budget, code, os.fdopen
        self.hit = False

    def __call__(self, fd, mode="r", *args, **kwargs):
        handle = self.real(fd, mode, *args, **kwargs)
        outer = self

        class Limited:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def write(self, data):
                if outer.left < len(data):
                    outer.hit = True
                    raise OSError(outer.code, os.strerror(outer.code))
                outer.left -= len(data)
                return handle.write(data)

            def __getattr__(self, name):
                return getattr(handle, name)

        return Limited()


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_a_disk_that_fills_mid_build_stops_in_one_line_and_the_rerun_is_byte_identical(
        tmp_path, capsys, monkeypatch, fraction):
    model = tmp_path / "tiny.keras"
    tiny_classifier().save(model)
    photos = _two_photo_folder(tmp_path / "photos", ["a.png", "b.png"])

    def argv(root):
        return ["--model", model, "--preprocess", "none", "--size", "16", "--steps", "2", "--images", photos,
                "--out", root / "site", "--cache", root / "cache"]

    assert _run(argv(tmp_path / "clean"), capsys)[0] == 0
    total = sum(p.stat().st_size for p in (tmp_path / "clean").rglob("*") if p.is_file())
    disk = _FullDisk(int(total * fraction))
    monkeypatch.setattr(folders.os, "fdopen", disk)
    code, err = _run(argv(tmp_path / "full"), capsys)
    assert disk.hit and code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "no space left on the device of --" in lines[0] and "Traceback" not in err
    assert not [p for p in (tmp_path / "full").rglob("*") if p.name.endswith(folders.TEMP_SUFFIX)]
    monkeypatch.setattr(folders.os, "fdopen", disk.real)  # space freed
    assert _run(argv(tmp_path / "full"), capsys)[0] == 0
    assert _tree_bytes(tmp_path / "full" / "site") == _tree_bytes(tmp_path / "clean" / "site")


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {path: data for path, (data, _) in _tree(folder).items()}


@pytest.mark.parametrize("flag,code", [("--out", errno.EROFS), ("--cache", errno.EACCES)])
def test_a_folder_that_refuses_writes_is_one_line(setup, capsys, monkeypatch, flag, code):
    tmp, model, photos = setup
    target = tmp / ("site" if flag == "--out" else "cache")
    real = folders.tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if Path(dir).resolve().is_relative_to(target.resolve()):
            raise OSError(code, os.strerror(code), str(dir))
        return real(*args, dir=dir, **kwargs)

    target.mkdir()
    monkeypatch.setattr(folders.tempfile, "mkstemp", refuse)
    code_, err = _run(cli_argv(tmp, model, photos, steps=2), capsys)
    assert code_ == 2 and "Traceback" not in err
    assert f"error: {flag} {str(target)!r} is not writable" in err.strip().splitlines()[-1]
    assert not any(target.iterdir())
