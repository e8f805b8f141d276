"""--trajectory N: snapshots of each filter image's own optimization, at no extra step."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from gallery import imaging
from gallery.orchestrate import pipeline
from gallery.orchestrate.cache import Cache
from gallery.orchestrate.units.filters import TRAJECTORY
from gallery.config import BuildConfig, RenderSettings
from gallery.errors import GalleryError
from gallery.render.optimize import FilterRenderer
from gallery.render.schedule import snapshot_steps
from gallery.site.pages import sig

from ..conftest import tiny_classifier
from ..helpers.builds import build_config, check_site


@pytest.mark.parametrize("steps,scales,count,expected", [
    (64, (1.0,), 9, [0, 8, 16, 24, 32, 40, 48, 56, 64]),  # every place
    (64, (1.0,), 5, [0, 8, 16, 32, 64]),  # doubling
    (64, (1.0,), 4, [0, 8, 24, 64]),  # the ends nearest 8, 22.6 and 64
    (64, (1.0,), 2, [0, 64]),  # the start and the end
    (512, (0.5, 1.0), 8, [0, 8, 16, 32, 64, 128, 256, 512]),  # the GPU preset, across its two stages
    (20, (0.5, 1.0), 5, [0, 8, 10, 18, 20]),  # two stages of 10: chunks of 8 and 2 each
])
def test_snapshots_run_from_the_start_to_the_end_geometrically_spaced(steps, scales, count, expected):
    assert snapshot_steps(RenderSettings(size=64, steps=steps, scales=scales), count) == expected


@pytest.mark.parametrize("count", [0, 1, 10])
def test_too_few_or_too_many_snapshots_are_refused(count):
    with pytest.raises(GalleryError, match=f"--trajectory {count}: expected 2 to 9 snapshots"):
        snapshot_steps(RenderSettings(steps=64), count)


@pytest.mark.slow
def test_snapshots_cost_no_step_and_change_no_pixel():
    """The same steps run, the final images are the same, the last snapshot is the final
    image, and coarse snapshots are the full-size image the network saw shrunk."""
    model = tiny_classifier()
    settings = RenderSettings(size=32, steps=20, scales=(0.5, 1.0))
    plain_steps, traced_steps, taken = [], [], []
    plain, plain_act = FilterRenderer(model, "conv2", settings).render([0, 3], on_step=plain_steps.append)
    traced, traced_act = FilterRenderer(model, "conv2", settings).render(
        [0, 3], on_step=traced_steps.append, snapshots=snapshot_steps(settings, 4),
        on_snapshot=lambda *snapshot: taken.append(snapshot))
    assert sum(traced_steps) == sum(plain_steps) == 20 and traced_steps == plain_steps
    np.testing.assert_array_equal(traced, plain)
    np.testing.assert_array_equal(traced_act, plain_act)
    assert [(step, canvas) for step, canvas, _ in taken] == [(0, 16), (8, 16), (10, 16), (20, 32)]
    assert all(images.shape == (2, 32, 32, 3) and images.dtype == np.uint8 for _, _, images in taken)
    np.testing.assert_array_equal(taken[-1][2], plain)
    assert not np.array_equal(taken[0][2], plain)  # an earlier stage of the image, not a copy of the end


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_each_frame_shows_a_visible_change_from_the_last(layer):
    """Five frames of 64 steps, from the starting noise: each differs from the one before by
    over 6 grey levels on average, in every filter (8 to 95 here). Evenly spaced frames, as
    before (16, 32, 48, 64), changed by as little as 3.1 between their last two."""
    settings = RenderSettings(size=32, steps=64)
    taken = []
    FilterRenderer(tiny_classifier(), layer, settings).render(
        [0, 1, 2], snapshots=snapshot_steps(settings, 5), on_snapshot=lambda *snapshot: taken.append(snapshot))
    assert [step for step, _, _ in taken] == [0, 8, 16, 32, 64]
    frames = np.stack([images for _, _, images in taken]).astype("float64")  # (frames, filters, h, w, 3)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(2, 3, 4))  # (frames − 1, filters)
    assert change.min() > 6.0, change


def _tiles(site):
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*.png") if "features-" not in p.name}


def _records(cache_dir, kind):
    return {p: json.loads(p.read_text()) for p in (cache_dir / "objects").rglob("*.json")
            if json.loads(p.read_text())["about"].get("kind") == kind}


@pytest.mark.slow
def test_a_build_records_trajectories_without_changing_its_tiles(tmp_path, classifier_file, photo_dir, capsys):
    render = RenderSettings(size=16, steps=24, batch=4)
    plain = build_config(tmp_path / "a", classifier_file, images=(photo_dir,), render=render)
    pipeline.build(plain)
    plain_err = capsys.readouterr().err
    traced = build_config(tmp_path / "b", classifier_file, images=(photo_dir,), render=render, trajectory=3)
    manifest = pipeline.build(traced)
    err = capsys.readouterr().err
    check_site(traced.out)
    assert _tiles(traced.out) == _tiles(plain.out)  # every filter image byte for byte
    computed = [int(re.search(r"(\d+) tiles computed", e).group(1)) for e in (plain_err, err)]
    # An animation and a row of frames per filter of both layers: conv1, linear in the
    # pixels, is optimized too (on a rectified objective), so it has a path to show.
    assert computed[1] == computed[0] + 2 * (6 + 5)

    for layer in manifest["layers"]:
        for f in layer["filters"]:
            t = f["trajectory"]
            assert [s["step"] for s in t["snapshots"]] == [0, 8, 24]
            assert t["snapshots"][-1]["activation"] == f["activation"] and t["snapshots"][-1]["peak"] == f["peak"]
            with Image.open(traced.out / t["image"]) as animation:
                assert animation.format == "WEBP" and animation.n_frames == 3
            frames = imaging.decode_frames((traced.out / t["image"]).read_bytes())
            final = np.asarray(Image.open(traced.out / f["image"]).convert("RGB"))
            off = [np.abs(frame.astype(int) - final).mean() for frame in frames]
            # Lossy WebP (chroma at half resolution, which costs a 16-pixel tile most, and
            # conv1's saturated colour edges more): the last frame is the final image, the
            # others are earlier ones.
            assert off[-1] < 16 and off[-1] < min(off[:-1]), off
            with Image.open(traced.out / t["frames"]["image"]) as row:
                assert row.size == (128 * 3, 128)
    f = manifest["layers"][1]["filters"][0]
    page = (traced.out / f["page"]).read_text()
    assert "How it formed" in page and 'media="(prefers-reduced-motion: no-preference)"' in page
    for s in f["trajectory"]["snapshots"]:
        assert f"<span>step {s['step']}</span><span class=\"muted\">peak {sig(s['peak'])}</span>" in page
    plain_page = (plain.out / f["page"]).read_text()
    assert "How it formed" not in plain_page and "trajectory" not in plain_page


@pytest.mark.slow
def test_turning_it_on_later_adds_trajectories_and_rewrites_no_tile(tmp_path, classifier_file, capsys):
    render = RenderSettings(size=16, steps=24, batch=4)
    pipeline.build(build_config(tmp_path, classifier_file, render=render))
    tiles = {p: (p.stat().st_mtime_ns, p.with_suffix(".bin").stat().st_mtime_ns)
             for p in _records(tmp_path / "cache", "filter")}
    capsys.readouterr()
    pipeline.build(build_config(tmp_path, classifier_file, render=render, trajectory=2))
    err = capsys.readouterr().err
    assert "22 tiles computed" in err, err  # 11 animations and 11 rows of frames, nothing else
    assert len(_records(tmp_path / "cache", "trajectory")) == 11
    assert {p: (p.stat().st_mtime_ns, p.with_suffix(".bin").stat().st_mtime_ns) for p in tiles} == tiles
    pipeline.build(build_config(tmp_path, classifier_file, render=render, trajectory=2))
    assert "0 tiles computed" in capsys.readouterr().err
    pipeline.build(build_config(tmp_path, classifier_file, render=render, trajectory=3))  # another N: other entries
    assert "22 tiles computed" in capsys.readouterr().err


@pytest.mark.slow
def test_a_trajectory_record_that_does_not_add_up_is_damaged(tmp_path, classifier_file, capsys):
    config = build_config(tmp_path, classifier_file, render=RenderSettings(size=16, steps=16, batch=4), trajectory=2)
    pipeline.build(config)
    cache = Cache(config.cache)
    path, record = next(iter(_records(config.cache, "trajectory").items()))
    key = path.stem
    payload = path.with_suffix(".bin").read_bytes()
    good = record["meta"]["snapshots"]
    assert cache.get(key, require=TRAJECTORY.require) is not None
    for bad in (good[:1], [{**good[0], "peak": None}, good[1]], [{**good[0], "step": -8}, good[1]]):
        cache._write_record(key, payload, {"snapshots": bad}, record["about"])
        assert cache.get(key, require=TRAJECTORY.require) is None
        cache.put(key, payload, record["meta"], record["about"])
    capsys.readouterr()


def test_the_option_is_checked_at_the_edge(tmp_path, classifier_file, capsys, monkeypatch):
    from gallery import cli

    base = ["--model", str(classifier_file), "--preprocess", "none", "--size", "16", "--steps", "16",
            "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]
    for value in ("1", "two"):
        with pytest.raises(SystemExit) as exited:
            cli.main([*base, "--trajectory", value])
        assert exited.value.code == 2
        assert f"--trajectory: expected a number of snapshots, 2 or more, got '{value}'" in capsys.readouterr().err
    assert cli.main([*base, "--trajectory", "4"]) == 2
    err = capsys.readouterr().err
    assert ("--trajectory 4: expected 2 to 3 snapshots, the start and one per 8 steps at most (16 steps give 3 "
            "places") in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()  # refused before anything was written
    with pytest.raises(GalleryError, match="trajectory must be a number of snapshots"):
        BuildConfig(trajectory=-1)
    monkeypatch.setattr(imaging, "animated_webp", lambda: False)
    assert cli.main([*base, "--trajectory", "2"]) == 2
    assert "cannot write animated WebP" in capsys.readouterr().err


def test_animations_loop_and_hold_their_last_frame():
    frames = np.stack([np.full((16, 16, 3), v, "uint8") for v in (0, 128, 255)])
    with Image.open(io.BytesIO(imaging.encode_animation(frames))) as image:
        assert image.n_frames == 3 and image.info["loop"] == 0
        durations = []
        for n in range(3):
            image.seek(n)
            image.load()  # a WebP frame's duration is known once it is decoded
            durations.append(image.info["duration"])
    assert durations == [400, 400, 1600]
    np.testing.assert_allclose(imaging.decode_frames(imaging.encode_animation(frames)).mean(axis=(1, 2, 3)),
                               [0, 128, 255], atol=2)
