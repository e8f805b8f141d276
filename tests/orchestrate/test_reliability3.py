"""Issue 20 (reliability, round three): a person's files, links, FIFOs and swapped cache
entries in the folders a build writes; each test failed before its fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gallery
from gallery.cli import main
from gallery.site.folder import INVENTORY
from gallery.site.pages import TEMPLATES

from ..conftest import ROOT, tiny_classifier
from ..helpers.builds import check_site, cli_argv

FILTER_PAGE = Path("tiny") / "layers" / "conv1" / "3.html"


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_persons_file_at_a_path_a_later_build_wants_is_never_overwritten_or_removed(setup, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
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


@pytest.mark.slow
def test_a_linked_folder_in_the_site_is_never_written_or_removed_through(setup, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
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


@pytest.mark.slow
def test_swapped_entries_are_recomputed_not_published(setup, capsys):
    """Two entries of each kind swapped, payload and record together: filter tiles,
    thumbnails, feature-map sheets, CAMs. Each is caught and the site comes out the same."""
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
    assert main(argv) == 0
    site = _tree(tmp / "site")
    by_kind: dict[str, list[Path]] = {}
    for path in sorted((tmp / "cache").glob("objects/*/*.json")):
        by_kind.setdefault(json.loads(path.read_text())["about"].get("kind"), []).append(path)
    kinds = ("filter", "thumb", "features", "cam")
    for kind in kinds:
        a, b = by_kind[kind][:2]
        for suffix in (".bin", ".json"):  # payload and record together, as moving files by hand might
            x, y = a.with_suffix(suffix), b.with_suffix(suffix)
            swap = x.with_suffix(".swap")
            x.rename(swap)
            y.rename(x)
            swap.rename(y)
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("key does not match its digest") == 2 * len(kinds), err
    assert _tree(tmp / "site") == site


@pytest.mark.slow
def test_a_fifo_in_the_site_never_blocks_the_build(setup):
    tmp, model, photos = setup
    other = tmp / "other.keras"
    tiny_classifier(name="other").save(other)
    argv = cli_argv(tmp, model, photos, steps=2)
    assert main(cli_argv(tmp, other, photos, steps=2)) == 0
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


@pytest.mark.parametrize("flag", ["--out", "--cache"])
@pytest.mark.parametrize("inside", ["templates", "package"])
@pytest.mark.slow
def test_out_or_cache_inside_cnn_gallerys_own_files_is_refused(setup, capsys, flag, inside):
    tmp, model, photos = setup
    where = {"templates": TEMPLATES / "static", "package": Path(gallery.__file__).parent}[inside]
    target = where / "nested-site-from-a-test"
    argv = [*cli_argv(tmp, model, photos, steps=2), flag, target]
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"error: {flag} {str(target)!r} is inside "
                                                                 "cnn-gallery's own files"), err
    assert not target.exists() and not (tmp / "site").exists() and not (tmp / "cache").exists()


@pytest.mark.slow
def test_a_refused_out_leaves_no_new_cache_and_a_dangling_link_is_named(setup, capsys):
    tmp, model, photos = setup
    person = tmp / "home"
    person.mkdir()
    (person / "notes.txt").write_text("mine")
    assert main([str(a) for a in cli_argv(tmp, model, photos, steps=2)] + ["--out", str(person)]) == 2
    assert "is not empty and was not made by cnn-gallery" in capsys.readouterr().err
    assert not (tmp / "cache").exists()
    link = tmp / "gone"
    link.symlink_to(tmp / "nowhere")
    assert main([str(a) for a in cli_argv(tmp, model, photos, steps=2)] + ["--out", str(link)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(link)!r} is a link to" in err and "does not exist" in err and "Errno" not in err, err
    assert not (tmp / "cache").exists() and not (tmp / "nowhere").exists()


def test_a_trajectory_with_one_place_says_so_in_words():
    from gallery.config import RenderSettings
    from gallery.errors import GalleryError
    from gallery.render.schedule import CHUNK, snapshot_steps

    # One compiled loop still has two places, its start and its end; a third is refused in words.
    assert snapshot_steps(RenderSettings(size=16, steps=CHUNK, scales=(1.0,)), 2) == [0, CHUNK]
    with pytest.raises(GalleryError) as caught:
        snapshot_steps(RenderSettings(size=16, steps=CHUNK, scales=(1.0,)), 3)
    assert "1 places" not in str(caught.value) and "expected 2 to 1" not in str(caught.value)
    assert "give 2 places to take one" in str(caught.value)


HOSTILE = "c\x1b]0;pwned\x07\x1b[2J\x9b"


def _hostile_model(path: Path) -> Path:
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name=HOSTILE)(inputs)
    keras.Model(inputs, x).save(path)
    return path


def _raw_controls(text: str) -> list[str]:
    return [ch for ch in text if ch in "\x1b\x07\x9b"]


@pytest.mark.slow
def test_names_from_a_model_or_a_cache_never_reach_the_terminal_raw(tmp_path, capsys):
    model = _hostile_model(tmp_path / "esc.keras")
    assert main(["--model", str(model), "--list-layers"]) == 0
    out, err = capsys.readouterr()
    assert not _raw_controls(out + err) and "\\x1b]0;pwned" in out
    assert main(["--model", str(model), "--layers", HOSTILE + "x", "--out", str(tmp_path / "s"),
                 "--cache", str(tmp_path / "c")]) == 2
    out, err = capsys.readouterr()
    last = err.strip().splitlines()[-1]
    assert not _raw_controls(out + err) and last.startswith("error: --layers names what esc has no conv layer for: 'c\\x1b]0;pwned"), err

    from gallery.orchestrate.cache import Cache, make_key

    cache = Cache(tmp_path / "c2")
    cache.claim()
    cache.put(make_key(x=1), b"tile", about={"kind": HOSTILE, "model": HOSTILE})
    assert main(["--cache-info", "--cache", str(tmp_path / "c2")]) == 0
    out, err = capsys.readouterr()
    assert not _raw_controls(out + err) and "\\x1b" in out and len(out.strip().splitlines()) == 5, out


@pytest.mark.slow
def test_photo_file_names_that_are_not_utf8_build(setup, capsys):
    tmp, model, photos = setup
    rng = np.random.default_rng(3)
    for raw in (b"caf\xe9.png", b"caf\xe8.png", b"\xff\xfe.png"):  # Latin-1 names on a UTF-8 system
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            os.fsdecode(os.path.join(os.fsencode(photos), raw)))
    assert main(cli_argv(tmp, model, photos, steps=2)) == 0
    names = [p["name"] for p in json.loads((tmp / "site" / "tiny" / "manifest.json").read_text())["photos"]]
    assert len(names) == len(set(names)) == 4 and "caf\ufffd" in names, names
    check_site(tmp / "site")


@pytest.mark.slow
def test_cam_layers_naming_a_layer_without_maps_is_refused_before_the_build(setup, capsys):
    tmp, model, photos = setup
    code = main([*cli_argv(tmp, model, photos, steps=2), "--cam-layers", "gap"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == ("error: --cam-layers: 'gap' is a GlobalAveragePooling2D with no spatial "
                                            "maps to weigh; give a conv layer, such as 'conv1', 'conv2'")
    assert not (tmp / "site").exists() or not list((tmp / "site").rglob("*.html"))


@pytest.mark.slow
def test_a_keras_file_whose_weights_do_not_fit_its_layers_is_one_short_line(tmp_path, capsys):
    import zipfile

    import keras

    def model(filters):
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.Conv2D(filters, 3, name="c")(inputs))

    model(2).save(tmp_path / "a.keras")
    model(5).save(tmp_path / "b.keras")
    a, b = zipfile.ZipFile(tmp_path / "a.keras"), zipfile.ZipFile(tmp_path / "b.keras")
    with zipfile.ZipFile(tmp_path / "mixed.keras", "w") as mixed:
        for name in a.namelist():
            mixed.writestr(name, (b if name == "model.weights.h5" else a).read(name))
    assert main(["--model", str(tmp_path / "mixed.keras"), "--list-layers"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and len(errors[0]) < 600 and "value.shape=(3, 3, 3, 5)" in errors[0], err
    assert not any(line.lstrip().startswith("[[") for line in err.splitlines()), err


@pytest.mark.slow
def test_a_model_file_name_that_is_not_utf8_builds(setup, capsys):
    tmp, model, photos = setup
    odd = Path(os.fsdecode(os.path.join(os.fsencode(tmp), b"m\xe9.keras")))
    shutil.copy(model, odd)
    argv = cli_argv(tmp, model, photos, steps=2)
    argv[argv.index(str(model))] = str(odd)
    assert main(argv) == 0
    (manifest,) = (tmp / "site").glob("*/manifest.json")
    assert json.loads(manifest.read_text())["model"]["name"] == "m\ufffd"
    check_site(tmp / "site")


@pytest.mark.slow
def test_a_persons_folder_where_a_page_was_is_left_and_sweeping_never_follows_a_link(setup, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
    site = tmp / "site"
    assert main([*argv, "--filters", "0:2"]) == 0
    page = site / "tiny" / "layers" / "conv1" / "1.html"
    page.unlink()
    (page / "draft").mkdir(parents=True)
    (page / "draft" / "notes.md").write_text("mine")
    outside = tmp / "elsewhere"
    layer = site / "tiny" / "layers" / "conv2"
    shutil.copytree(layer, outside)
    lookalike = outside / ".0.html.abc123.cnn-gallery-tmp"  # shaped like the build's own temporary
    lookalike.write_text("not the build's: it is outside --out")
    shutil.rmtree(layer)
    layer.symlink_to(outside, target_is_directory=True)
    capsys.readouterr()
    assert main([*argv, "--filters", "0:2"]) == 0
    assert (page / "draft" / "notes.md").read_text() == "mine" and lookalike.exists()
    assert "tiny/layers/conv1/1.html' is not published" in capsys.readouterr().err
