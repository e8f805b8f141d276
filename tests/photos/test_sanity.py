"""The randomization check (Adebayo et al., 2018): closed forms on linear models, seeded
copies that leave the user's model alone, and the check on built pages."""

from __future__ import annotations

import numpy as np
import pytest

from gallery.errors import GalleryError
from gallery.photos import sanity
from gallery.photos.cams import unit_scaled
from gallery.photos.sanity import FAIL_AT, Randomization, random_weights, randomized_copy, spearman, top_layers

from ..conftest import _keras
from ..helpers.chromium import browser, shot  # noqa: F401  (browser: the same Chromium fixture)

SIDE, CLASSES = 8, 5


def _linear_logits(hidden: int | None = None):
    """Flatten → [Dense(hidden)] → Dense(logits) on 8×8×3, no activation anywhere: the score is
    linear in the pixels, so its gradient (the saliency map) is a closed form of the weights."""
    keras = _keras()
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Flatten(name="flat")(inputs)
    if hidden:
        x = keras.layers.Dense(hidden, name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="out")(x))


def _saliency_of(kernel: np.ndarray, c: int) -> np.ndarray:
    """``max_colour |∂y_c/∂x|`` of ``y = flatten(x) · W``, scaled to ``[0, 1]``: ``|W[:, c]|``."""
    return unit_scaled(np.abs(kernel[:, c]).reshape(1, SIDE, SIDE, 3).max(axis=-1))[0]


def _photo(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def test_a_gradient_map_changes_with_the_weights_as_its_closed_form_says():
    model = _linear_logits()
    kernel = model.get_layer("out").get_weights()[0]
    check = Randomization(model, None, "saliency", "none", levels=1)
    assert check.layers == ["out"]
    ((maps, figures),) = check([_photo()], [3], [_saliency_of(kernel, 3)])
    fresh = random_weights(kernel.shape, sanity.SEED, 0, 0)  # the head's kernel, re-initialized
    np.testing.assert_allclose(maps[0], _saliency_of(fresh, 3), atol=1e-6)
    expected = spearman(_saliency_of(kernel, 3), _saliency_of(fresh, 3))
    assert figures["spearman"] == [pytest.approx(expected, abs=1e-6)]
    assert abs(expected) < FAIL_AT and figures["ssim"][0] < FAIL_AT and not sanity.fails(figures)  # it passes


class _Brightness:
    """A "method" whose map is the photo's grey level: it reads no weight at all."""

    def __init__(self, model, layer, method, preprocess, fallback):
        pass

    def explain_batch(self, photos, classes):
        return [unit_scaled(np.repeat(p.mean(axis=-1)[None], len(c), 0)) for p, c in zip(photos, classes)], \
            [None] * len(photos)


def test_a_map_that_ignores_the_weights_fails():
    model = _linear_logits(hidden=6)
    photo = _photo(1)
    trained = _Brightness(None, None, None, None, None).explain_batch([photo], [[0]])[0][0][0]
    ((maps, figures),) = Randomization(model, None, "brightness", levels=2, explain=_Brightness)([photo], [0],
                                                                                               [trained])
    assert len(maps) == 2 and figures["spearman"] == [pytest.approx(1.0)] * 2 and figures["ssim"] == [pytest.approx(1.0)] * 2
    assert sanity.fails(figures)
    # Either figure alone under the line passes: the map's ranking or its shape changed.
    assert not sanity.fails({"spearman": [1.0, 0.49], "ssim": [1.0, 0.9]})
    assert not sanity.fails({"spearman": [1.0, 0.9], "ssim": [1.0, 0.49]})
    assert sanity.fails({"spearman": [0.1, 0.5], "ssim": [0.1, 0.5]})  # the deepest level decides


def test_copies_are_seeded_cascade_from_the_top_and_leave_the_model_alone():
    model = _linear_logits(hidden=6)
    before = [w.copy() for w in model.get_weights()]
    assert top_layers(model, 2) == ["out", "hidden"]
    one, two = randomized_copy(model, 1), randomized_copy(model, 2)
    for kept, got in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, got)  # the user's model is untouched
    assert one is not model and one.get_layer("out") is not model.get_layer("out")
    # Level 1 re-initializes the output layer only; level 2 adds the hidden one, the output's weights as in level 1.
    np.testing.assert_array_equal(one.get_layer("hidden").get_weights()[0], model.get_layer("hidden").get_weights()[0])
    assert not np.allclose(one.get_layer("out").get_weights()[0], model.get_layer("out").get_weights()[0])
    assert not np.allclose(two.get_layer("hidden").get_weights()[0], model.get_layer("hidden").get_weights()[0])
    np.testing.assert_array_equal(two.get_layer("out").get_weights()[0], one.get_layer("out").get_weights()[0])
    np.testing.assert_array_equal(one.get_layer("out").get_weights()[1], 0)  # a bias starts at zero
    # Seeded: the same seed gives the same copy, another seed another.
    np.testing.assert_array_equal(randomized_copy(model, 1).get_layer("out").get_weights()[0],
                                  one.get_layer("out").get_weights()[0])
    assert not np.allclose(randomized_copy(model, 1, seed=1).get_layer("out").get_weights()[0],
                           one.get_layer("out").get_weights()[0])


def test_levels_are_checked_at_the_edge():
    model = _linear_logits()
    with pytest.raises(GalleryError, match="at most the model's 1 conv and dense layers, got 2"):
        top_layers(model, 2)
    with pytest.raises(GalleryError, match="at least 1, got 0"):
        top_layers(model, 0)


def test_rank_correlation_of_flat_maps():
    ramp = np.arange(16.0).reshape(4, 4)
    assert spearman(ramp, ramp ** 3) == pytest.approx(1.0) and spearman(ramp, -ramp) == pytest.approx(-1.0)
    assert spearman(np.zeros((4, 4)), ramp) == 0.0 and spearman(np.zeros((4, 4)), np.ones((4, 4))) == 1.0


class _Page:
    """Text of a page, without its tags."""

    @staticmethod
    def text(html: str) -> str:
        import html as entities
        import re

        return " ".join(entities.unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """A tiny classifier's build with the check at 2 levels, Grad-CAM and saliency, 2 photos."""
    from PIL import Image

    from gallery.orchestrate import pipeline

    from ..conftest import tiny_classifier
    from ..helpers.builds import build_config

    tmp = tmp_path_factory.mktemp("sanity")
    (tmp / "photos").mkdir()
    rng = np.random.default_rng(1)
    for name, shape in (("red fox", (24, 32, 3)), ("boat", (16, 16, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp / "photos" / f"{name}.png")
    path = tmp / "tiny.keras"
    tiny_classifier().save(path)
    config = build_config(tmp, path, images=(tmp / "photos",), cam_methods=("gradcam", "saliency"), layers=("conv2",),
                     filters=slice(0, 1), preprocess="tf", randomize=2, top_k=2)
    return config, pipeline.build(config)


@pytest.mark.slow
def test_a_build_shows_and_caches_the_check(checked):
    import json

    from gallery.orchestrate import pipeline
    from gallery.orchestrate.cache import Cache

    from ..helpers.builds import check_site

    config, manifest = checked
    check_site(config.out)
    assert [(r["method"], r["photos"], r["layers"]) for r in manifest["sanity"]] == [
        ("saliency", 2, ["head", "conv2"]), ("gradcam", 2, ["head", "conv2"])]
    cache = Cache(config.cache)
    stored = {key: record for key, record in cache.records() if record["about"]["kind"] == "sanity"}
    assert len(stored) == 2 * 2  # two photos, two methods
    for photo in manifest["photos"]:
        assert len(photo["sanity"]) == 2
        html = (config.out / photo["page"]).read_text(encoding="utf-8")
        for check in photo["sanity"]:
            strip = config.out / check["image"]
            assert strip.is_file() and strip.read_bytes() == cache.get(
                next(k for k, r in stored.items() if r["meta"]["spearman"] == check["spearman"]))[0]
            verdict = ("fails: the map stays alike" if check["fails"] else "passes: the map changes") + \
                " when the model's top 2 layers are scrambled"
            assert verdict in _Page.text(html)
        assert html.count("<polyline") == 4 * len(photo["cams"])  # each map: its curves and the random order's
    model_page = _Page.text((config.out / manifest["page"]).read_text(encoding="utf-8"))
    for row in manifest["sanity"]:
        assert f"{'fails' if row['fails'] else 'passes'} {row['failed']} of 2" in model_page
    # Resumable: a second build computes nothing; a lost check is the only entry made again.
    records = lambda: {p.name: p.stat().st_mtime_ns for p in (config.cache / "objects").rglob("*.json")}  # noqa: E731
    before = records()
    again = pipeline.build(config)
    assert json.dumps(again["sanity"]) == json.dumps(manifest["sanity"]) and records() == before
    lost = next(iter(stored))
    original = Cache(config.cache).get(lost)
    (config.cache / "objects" / lost[:2] / f"{lost}.json").unlink()
    pipeline.build(config)
    after = records()
    assert {name for name in after if after[name] != before.get(name)} == {f"{lost}.json"}
    # Made again without its maps' pass, the check has the same figures and strip.
    assert Cache(config.cache).get(lost) == original


# An image's natural width once it has loaded (a lazy one loads when scrolled to).
LOADED_WIDTH = ("i => i.complete && i.naturalWidth ? i.naturalWidth : "
                "new Promise(done => i.addEventListener('load', () => done(i.naturalWidth), {once: true}))")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_the_check_and_curves_fit_the_photo_page(checked, browser, width):
    config, manifest = checked
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto((config.out / manifest["photos"][0]["page"]).as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # Folded by default: a line per method, the strip on demand.
    assert page.eval_on_selector_all("details.sanity", "ds => ds.map(d => d.open)") == [False, False]
    page.locator("details.method").nth(1).locator(":scope > summary").click()  # saliency, folded
    # Each map's curves lie inside its own cell.
    inside = page.eval_on_selector_all("ul.cams li", """lis => lis.map(li => {
        const box = li.getBoundingClientRect(), svg = li.querySelector('.curves svg').getBoundingClientRect();
        return svg.width > 50 && svg.left >= box.left - 1 && svg.right <= box.right + 1; })""")
    assert len(inside) == 4 and all(inside), inside
    for n in range(2):
        page.locator("details.sanity").nth(n).locator("summary").click()
        strip = page.locator("details.sanity img.sanity-strip").nth(n)
        strip.scroll_into_view_if_needed()  # lazy: a phone's first screen may end above it
        assert strip.evaluate(LOADED_WIDTH) > 0
        assert strip.evaluate("img => img.getBoundingClientRect().right") <= width
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"photo-sanity-{width}")
    page.close()


def test_the_check_adds_entries_of_its_own_and_the_curves_key_only_theirs(photo_dir):
    """Turning the check on reuses every entry a build without it made; changing the curves'
    steps recomputes the maps and random orders alone."""
    from dataclasses import replace

    from gallery.orchestrate import units
    from gallery.config import RenderSettings
    from gallery.photos.sources import load_photos

    photos = load_photos([photo_dir])
    job = units.Job("f" * 32, RenderSettings(size=16, steps=2), "none", {"conv1": (0,)}, cam_layers=("conv2",),
                    methods=("gradcam", "saliency"), ranks=2, input=(8, 8))

    def entries(j):
        return {e.key: e.about["kind"] for u in units.photo_units(j, photos, None, classify=True) for e in u.entries}

    plain, checked, finer = entries(job), entries(replace(job, randomize=2)), entries(replace(job, curve_points=20))
    assert set(plain) < set(checked)
    assert sorted(checked[k] for k in set(checked) - set(plain)) == ["sanity"] * 4  # 2 photos × 2 methods
    assert {plain[k] for k in set(plain) - set(finer)} == {"cam", "baseline"}
    assert entries(replace(job, randomize=3)).keys() != checked.keys()  # K is in the check's key
