"""Crash safety, concurrent builds, awkward photos, odd models and hostile names."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from gallery.orchestrate import pipeline
from gallery.site import pages as site
from gallery.orchestrate.cache import Cache
from gallery.cli import main
from gallery.config import BuildConfig, RenderSettings
from gallery.errors import GalleryError
from gallery.folders import FolderLock, _holder
from gallery.photos.sources import load_photos

from ..conftest import ROOT, tiny_classifier
from ..helpers.builds import check_site, cli_argv

# filters and their thumbnails, the two layers' collages, the first layer's kernel sheet,
# the photo, two layers' peaks and feature sheets, predictions, four CAMs, contributions,
# and the random-order curves of the four classes
TILES_PER_BUILD = 11 + 11 + 2 + 1 + 1 + 2 + 2 + 1 + 4 + 1 + 4


def _start(argv):
    return subprocess.Popen([sys.executable, "build.py", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _records(cache: Path) -> list[Path]:
    return sorted(cache.glob("objects/*/*.json"))


def _wait(predicate, proc, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate() or proc.poll() is not None:
            return
        time.sleep(0.02)


def _entry_files(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """An entry's payload and record."""
    folder = cache_dir / "objects" / key[:2]
    return folder / f"{key}.bin", folder / f"{key}.json"


def _every_entry_verifies(cache_dir: Path):
    cache = Cache(cache_dir)
    for record in _records(cache_dir):
        assert cache.get(record.stem) is not None, f"damaged entry {record}"
    assert cache.damaged == 0


@pytest.mark.parametrize("moment", ["filters", "photos", "pages"])
@pytest.mark.slow
def test_kill_9_then_rerun_finishes_without_redoing_work(setup, moment, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos)
    proc = _start(argv)
    triggers = {
        "filters": lambda: len(_records(tmp / "cache")) >= 3,
        "photos": lambda: len(_records(tmp / "cache")) >= 23,
        "pages": lambda: any((tmp / "site").rglob("*.html")) if (tmp / "site").is_dir() else False,
    }
    _wait(triggers[moment], proc)
    assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_records(tmp / "cache"))
    _every_entry_verifies(tmp / "cache")  # killed mid-write, yet no entry is damaged
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    computed = int(re.search(r"(\d+) tiles computed", err).group(1))
    assert computed == TILES_PER_BUILD - done, err
    assert not list(tmp.rglob("*.tmp")), "a half-written file survived"
    _every_entry_verifies(tmp / "cache")
    check_site(tmp / "site")


@pytest.mark.slow
def test_truncated_cache_entries_are_recomputed_not_published(setup, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
    assert main(argv) == 0
    # Entries that hold one tile each (a photo entry can stand for a whole batch).
    single = sorted(key for key, record in Cache(tmp / "cache").records()
                    if record.get("about", {}).get("kind") in ("filter", "thumb"))
    for key in single[:3]:
        victim = _entry_files(tmp / "cache", key)[0]
        victim.write_bytes(victim.read_bytes()[:10])
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("is damaged") == 3 and "3 tiles computed" in err
    check_site(tmp / "site")
    _every_entry_verifies(tmp / "cache")


@pytest.mark.slow
def test_a_second_build_on_the_same_folders_is_refused(setup, capsys):
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=100000)
    proc = _start(argv)
    try:
        _wait(lambda: _holder(tmp / "site") == str(proc.pid), proc)
        assert proc.poll() is None, proc.stderr.read()
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2
        assert f"another build (pid {proc.pid}) holds the cache folder" in err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The kernel released the dead build's lock.
    with FolderLock(tmp / "cache", "cache"):
        pass


@pytest.mark.slow
def test_cache_info_and_prune(setup, capsys):
    tmp, model, photos = setup
    assert main(cli_argv(tmp, model, photos, steps=2)) == 0
    assert main(cli_argv(tmp, model, photos, steps=3)) == 0
    capsys.readouterr()
    assert main(["--cache-info", "--cache", str(tmp / "cache")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"filter\s+22 entries", out) and re.search(r"cam\s+4 entries", out)
    assert main([*cli_argv(tmp, model, photos, steps=3), "--prune"]) == 0
    assert "pruned 24 cache entries" in capsys.readouterr().err  # 2-step filters, thumbnails, collages
    assert len(_records(tmp / "cache")) == TILES_PER_BUILD


def make_awkward(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, np.zeros((20, 30), np.uint8)]), "RGBA").save(folder / "alpha.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    Image.fromarray(np.full((20, 30), 65535, np.uint16)).save(folder / "sixteen.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90°
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif)
    Image.new("RGB", (3000, 1500), (10, 20, 30)).save(folder / "huge.png")
    (folder / "empty.png").write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:200])
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_text("<html>not a png</html>")
    Image.new("L", (9000, 8000)).save(folder / "bomb.png")


def test_awkward_photo_folder(tmp_path, capsys):
    make_awkward(tmp_path / "awkward")
    photos = {p.name: p.pixels for p in load_photos([tmp_path / "awkward"])}
    err = capsys.readouterr().err
    assert sorted(photos) == ["alpha", "cmyk", "gray", "huge", "palette", "rotated", "sixteen"]
    for name in ("bomb.png", "empty.png", "truncated.jpg", "notes.txt", "fake.png"):
        assert f"{name}'" in err, name
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos.values())
    assert np.all(photos["alpha"] == 255)  # transparent over white
    assert np.all(photos["sixteen"] == 255)  # 65535 is full white, not wrapped
    assert photos["rotated"].shape == (30, 20, 3)  # EXIF orientation applied
    assert photos["huge"].shape == (512, 1024, 3)  # shrunk on load


@pytest.mark.slow
def test_awkward_folder_builds(tmp_path):
    make_awkward(tmp_path / "awkward")
    model = tmp_path / "tiny.keras"
    tiny_classifier().save(model)
    config = BuildConfig(model=str(model), preprocess="none", filters=slice(0, 1), images=(tmp_path / "awkward",),
                         render=RenderSettings(size=16, steps=1), out=tmp_path / "site", cache=tmp_path / "cache")
    assert len(pipeline.build(config)["photos"]) == 7
    check_site(config.out)


def _save(tmp_path, model, name):
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path


@pytest.mark.slow
def test_odd_models_are_handled_or_refused_clearly(tmp_path, capsys):
    def refused(model, name, message):
        path = _save(tmp_path, model, name)
        code = main(["--model", str(path), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err

    # Grey models build (tests/basics/test_channels.py); one of 2 channels cannot read the sample photos.
    bands = keras.Input((8, 8, 2))
    refused(keras.Model(bands, keras.layers.Conv2D(2, 3)(bands)), "bands", "takes 2-channel images, so --images must be")
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    refused(keras.Model([a, b], keras.layers.Conv2D(2, 3)(keras.layers.Add()([a, b]))), "two", "has 2 inputs")
    flat = keras.Input((8, 8, 3))
    refused(keras.Model(flat, keras.layers.Dense(2)(keras.layers.Flatten()(flat))), "dense", "has no Conv2D")
    seq = keras.Input((8, 3))
    refused(keras.Model(seq, keras.layers.Conv1D(2, 3)(seq)), "conv1d", "an image model takes (batch, h, w, c)")
    lam = keras.Input((8, 8, 3))
    path = _save(tmp_path, keras.Model(lam, keras.layers.Conv2D(2, 3)(keras.layers.Lambda(lambda t: t * 2)(lam))), "lam")
    code = main(["--model", str(path), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    assert code == 2 and "Pass --unsafe if you trust the file" in capsys.readouterr().err


@pytest.mark.slow
def test_mixed_precision_and_multi_output_models_build(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        outputs = keras.layers.Dense(3, activation="softmax", dtype="float32")(keras.layers.GlobalAveragePooling2D()(x))
        mixed = keras.Model(inputs, outputs, name="mixed")
    finally:
        keras.config.set_dtype_policy("float32")
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    multi = keras.Model(inputs, [keras.layers.Dense(3)(pooled), keras.layers.Dense(2)(pooled)], name="multi")
    for model, has_cams in ((mixed, True), (multi, False)):
        path = _save(tmp_path, model, model.name)
        config = BuildConfig(model=str(path), preprocess="none", render=RenderSettings(size=16, steps=3),
                             out=tmp_path / "site", cache=tmp_path / "cache")
        manifest = pipeline.build(config)
        assert bool(manifest["photos"][0]["cams"]) == has_cams
        assert all(np.isfinite(f["activation"]) for f in manifest["layers"][0]["filters"])
    check_site(tmp_path / "site")


class Structure(HTMLParser):
    """Counts the tags and attributes of a page; injected markup would change them."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.events: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "wbr" and not attrs:  # the line-break hints long names get after "_", "/", "-"
            return
        self.tags.append(tag)
        self.events += [name for name, _ in attrs if name.startswith("on")]


@pytest.fixture(scope="module")
def base_manifest(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("escape")
    model = tmp / "tiny.keras"
    tiny_classifier().save(model)
    config = BuildConfig(model=str(model), preprocess="none", filters=slice(0, 2),
                         render=RenderSettings(size=16, steps=1), out=tmp / "site", cache=tmp / "cache")
    return pipeline.build(config), tmp / "site"


HOSTILE = st.lists(st.sampled_from(list("<>&\"'/`=; {}()\\\né\u2028") + ["</script>", "<!--", "javascript:", "<b>"]),
                   min_size=1, max_size=12).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=HOSTILE)
@pytest.mark.slow
def test_hostile_names_cannot_change_page_structure(base_manifest, name):
    manifest, out = base_manifest
    reference = _structures(_rename(manifest, "plain"), out)  # the same pages with a harmless name
    evil = _rename(manifest, name)
    for page, html in _render(evil, out).items():
        parsed = Structure()
        parsed.feed(html)
        assert parsed.tags == reference[page][0], (page, name)
        assert not parsed.events
        assert html.count("<script") == 2  # search.js and site.js, nothing injected


def _rename(manifest, name):
    import copy

    evil = copy.deepcopy(manifest)
    evil["model"]["name"] = name
    evil["model"]["source"] = name
    evil["command"] = name
    for layer in evil["layers"]:
        layer["name"] = name
    for row in evil["table"]:
        row["name"] = name
    for photo in evil["photos"]:
        photo["name"] = name
        for pred in photo["predictions"]:
            pred["name"] = name
        for cam in photo["cams"]:
            cam["name"] = cam["layer"] = name
        for sheet in photo["features"]:
            sheet["layer"] = name
    return evil


def _render(manifest, out):
    env = site.environment()
    return {path: env.get_template(template).render(root=site._root(path), page=path, **context)
            for path, template, context in site.pages(manifest, [manifest])}


def _structures(manifest, out):
    result = {}
    for page, html in _render(manifest, out).items():
        parsed = Structure()
        parsed.feed(html)
        result[page] = (parsed.tags, parsed.events)
    return result


def test_lock_reports_the_holder_and_leaves_no_file(tmp_path):
    with FolderLock(tmp_path, "output"):
        pid = str(os.getpid())
        assert _holder(tmp_path) == pid
        with pytest.raises(GalleryError, match=f"pid {pid}.*--out"):
            # flock is per open file description, so a second open in one process conflicts too
            with FolderLock(tmp_path, "output"):
                pass
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("lost", [("features",), ("contributions",), ("features", "contributions"), ("thumb",)])
@pytest.mark.slow
def test_losing_part_of_a_shared_computation_rewrites_only_that_part(setup, lost, capsys):
    # A feature sheet is computed with its peaks, and contributions with their CAMs: a build
    # killed between the two writes leaves one of the pair. The rerun must recompute the pass
    # but rewrite (and count) only the entry that was lost, so "tiles computed" stays honest.
    # A thumbnail is made from its filter image read back: still one entry reused, not two.
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2)
    assert main(argv) == 0
    cache = Cache(tmp / "cache")
    victims = [next(key for key, record in cache.records() if record.get("about", {}).get("kind") == kind)
               for kind in lost]
    kept = {key: _entry_files(tmp / "cache", key)[1].stat().st_mtime_ns
            for key, _ in cache.records() if key not in victims}
    for key in victims:
        for path in _entry_files(tmp / "cache", key):
            path.unlink()
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"{len(victims)} tiles computed, {TILES_PER_BUILD - len(victims)} reused" in err, err
    after = {key: _entry_files(tmp / "cache", key)[1].stat().st_mtime_ns for key in kept}
    assert after == kept, "an entry that was still valid was written again"
    _every_entry_verifies(tmp / "cache")
    check_site(tmp / "site")


@pytest.mark.slow
def test_losing_one_diversity_copy_keeps_its_siblings_and_their_activations(setup, capsys):
    # Diversity copies are rendered together, so losing one renders all four again. The three
    # still cached must keep their images and the activations recorded for those images.
    tmp, model, photos = setup
    argv = cli_argv(tmp, model, photos, steps=2) + ["--variants", "diversity"]
    assert main(argv) == 0
    manifest = tmp / "site" / "tiny" / "manifest.json"

    def copies():
        items = json.loads(manifest.read_text())["layers"][0]["filters"][0]["variants"][0]["images"]
        return [(item, (tmp / "site" / item["image"]).read_bytes()) for item in items]

    before = copies()
    cache = Cache(tmp / "cache")
    victim = next(key for key, _ in cache.records() if cache.get(key)[0] == before[1][1])
    for path in _entry_files(tmp / "cache", victim):
        path.unlink()
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "1 tiles computed" in err, err
    after = copies()
    assert [after[i] for i in (0, 2, 3)] == [before[i] for i in (0, 2, 3)]
    _every_entry_verifies(tmp / "cache")
    check_site(tmp / "site")
