"""The faithfulness figure of a class activation map, against numpy, and on the built pages."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

from gallery.errors import GalleryError
from gallery.photos import faithfulness as fm
from gallery.photos.activations import ROWS
from gallery.photos.faithfulness import BOTTOM, FILL, FULL, TOP, Faithfulness, keep_masks, kept_count
from gallery.site.pages import FAITHFUL_FLOOR

from ..conftest import _keras
from ..helpers.builds import build_config, check_site

SIDE, CLASSES = 4, 6


def _linear_classifier():
    """Flatten → Dense(softmax) on 4×4×3: its probabilities are one matrix product in numpy."""
    keras = _keras()
    inputs = keras.Input((SIDE, SIDE, 3))
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([rng.normal(0, 0.5, kernel.shape).astype("float32"),
                                  rng.normal(0, 0.5, bias.shape).astype("float32")])
    return model


def _softmax_by_hand(model, pixels):
    """``tf`` preprocessing, then the dense layer, in float64."""
    kernel, bias = (w.astype("float64") for w in model.layers[-1].get_weights())
    z = (pixels.astype("float64") / 127.5 - 1.0).reshape(-1) @ kernel + bias
    e = np.exp(z - z.max())
    return e / e.sum()


def test_probabilities_match_the_masked_photos_done_by_hand():
    model = _linear_classifier()
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(3)]
    classes = [[0, 1, 2, 3, 4, 5], [5, 3, 1, 0, 2, 4], [2, 2, 0, 1, 3, 5]]
    maps = [rng.random((6, SIDE, SIDE)).astype("float32") for _ in photos]  # distinct values: no ties
    # 3 photos × (1 + 2 × 6) = 39 forward passes: two batches, the second padded.
    assert 3 * 13 > fm.BATCH and (3 * 13 - fm.BATCH) % ROWS
    got = Faithfulness(model, "tf", fraction=fm.KEEP)(photos, classes, maps)
    n = round(0.3 * SIDE * SIDE)  # 4.8 → 5 of the 16 pixels
    for photo, wanted, heats, figures in zip(photos, classes, maps, got):
        assert figures.shape == (len(wanted), 3)
        for c, heat, row in zip(wanted, heats, figures):
            ranked = np.sort(heat.ravel())
            top, bottom = heat >= ranked[-n], heat <= ranked[n - 1]
            assert top.sum() == bottom.sum() == n
            fill = np.asarray(FILL)
            expected = [_softmax_by_hand(model, photo)[c],
                        _softmax_by_hand(model, np.where(top[..., None], photo, fill))[c],
                        _softmax_by_hand(model, np.where(bottom[..., None], photo, fill))[c]]
            np.testing.assert_allclose(row[[FULL, TOP, BOTTOM]], expected, rtol=1e-5, atol=1e-7)


def test_exactly_the_share_is_kept_and_ties_go_in_reading_order():
    assert kept_count(224 * 224) == 15053  # 15052.8, to the nearest pixel
    assert kept_count(16) == 5 and kept_count(10) == 3 and kept_count(2) == 1
    heat = np.zeros((10, 10), "float32")
    heat[5:7, :] = 1.0  # 20 pixels rank highest, 80 tie at zero
    top, bottom = keep_masks(heat)
    assert top.sum() == bottom.sum() == 30
    # The top 30: the 20 ones, then the first 10 zeros in reading order (row 0).
    expected_top = heat > 0
    expected_top[0, :] = True
    np.testing.assert_array_equal(top, expected_top)
    # The bottom 30: the first 30 zeros in reading order (rows 0 to 2).
    expected_bottom = np.zeros_like(top)
    expected_bottom[:3, :] = True
    np.testing.assert_array_equal(bottom, expected_bottom)
    # A flat map ranks nothing: both keep the same first pixels, and score alike.
    top, bottom = keep_masks(np.full((4, 4), 0.5))
    np.testing.assert_array_equal(top, bottom)
    assert top.ravel()[:5].all() and not top.ravel()[5:].any()
    model = _linear_classifier()
    photo = np.random.default_rng(1).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    (row,) = Faithfulness(model, "tf")([photo], [[2]], [np.full((1, SIDE, SIDE), 0.5, "float32")])
    assert row[0, TOP] == row[0, BOTTOM]


def test_maps_and_photos_of_other_sizes_are_ranked_at_the_input_size():
    from gallery.imaging import resize

    model = _linear_classifier()
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    heat = rng.random((1, 12, 16)).astype("float32")
    (row,) = Faithfulness(model, "tf")([photo], [[4]], [heat])
    small, ranked = resize(photo, SIDE, SIDE).astype("float64"), resize(heat[0], SIDE, SIDE)
    top, bottom = keep_masks(ranked)
    expected = [_softmax_by_hand(model, np.where(m[..., None], small, np.asarray(FILL)))[4] for m in (top, bottom)]
    np.testing.assert_allclose(row[0, [TOP, BOTTOM]], expected, rtol=1e-5)


def test_mismatched_inputs_are_refused_with_what_was_given():
    model = _linear_classifier()
    photo = np.zeros((SIDE, SIDE, 3), np.uint8)
    judge = Faithfulness(model, "tf")
    with pytest.raises(GalleryError, match="photo 0 has 2 classes but 1 maps"):
        judge([photo], [[0, 1]], [np.zeros((1, SIDE, SIDE))])
    with pytest.raises(GalleryError, match="class index 6 is outside 0..5"):
        judge([photo], [[6]], [np.zeros((1, SIDE, SIDE))])
    with pytest.raises(GalleryError, match="got 1 photos, 2 class lists"):
        judge([photo], [[0], [1]], [np.zeros((1, SIDE, SIDE))])
    with pytest.raises(GalleryError, match="between 0 and 1, got 1.5"):
        Faithfulness(model, "tf", fraction=1.5)


class _Maps(HTMLParser):
    """Each CAM figure's alt text, and the text and title of its faithfulness line."""

    def __init__(self):
        super().__init__()
        self.maps: list[dict] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and " map for " in (attrs.get("alt") or ""):
            self.maps.append({"alt": attrs["alt"], "src": attrs["src"], "text": ""})
        elif tag == "span" and attrs.get("class") == "faith":
            self.maps[-1]["title"] = attrs["title"]
            self._in = True

    def handle_endtag(self, tag):
        if tag == "span":
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.maps[-1]["text"] += data


@pytest.mark.slow
def test_photo_pages_show_each_maps_figure_as_cached(tmp_path, photo_dir):
    from gallery.orchestrate.cache import Cache

    from ..conftest import tiny_classifier

    path = tmp_path / "tiny.keras"
    tiny_classifier().save(path)
    # tf scaling keeps the tiny model's probabilities away from 0 and 1, so each share means something.
    config = build_config(tmp_path, path, images=(photo_dir,), cam_methods=("gradcam", "scorecam"),
                     layers=("conv2",), filters=slice(0, 1), preprocess="tf")
    from gallery.orchestrate import pipeline

    manifest = pipeline.build(config)
    check_site(config.out)
    cache = Cache(config.cache)
    cams = {}  # (the published overlay's bytes, its class) -> its cache record's meta
    for key, record in cache.records():
        if record.get("about", {}).get("kind") == "cam":
            payload, meta = cache.get(key)
            cams[payload, meta["class"]] = meta  # a flat map's overlay is the same for every class
    seen = 0
    for photo in manifest["photos"]:
        html = (config.out / photo["page"]).read_text(encoding="utf-8")
        parser = _Maps()
        parser.feed(html)
        assert len(parser.maps) == 2 * 4  # two methods, four classes each
        for shown in parser.maps:
            image = (config.out / photo["page"]).parent.joinpath(shown["src"]).resolve()
            meta = cams[image.read_bytes(), int(re.fullmatch(r"cam-conv2-\w+-(\d+)\.jpg", image.name)[1])]
            assert 1e-4 < meta["p"] < 1 - 1e-4, meta
            numbers = [float(x) for x in re.findall(r"\d\.\d{4}", shown["title"])]
            if meta["p"] < FAITHFUL_FLOOR:  # a share of so small a probability is noise: not shown
                assert " ".join(shown["text"].split()).endswith("no figures (see above)"), shown
                assert numbers == [round(meta["p"], 4)], shown
                seen += 1
                continue
            top, bottom = (f"{100 * meta[side] / meta['p']:.0f}%" for side in ("top", "bottom"))
            assert " ".join(shown["text"].split()) == f"top 30% keeps {top} · bottom {bottom}", shown
            assert numbers == [round(meta[k], 4) for k in ("p", "top", "bottom")], shown
            seen += 1
        for method, title in (("gradcam", "Grad-CAM"), ("scorecam", "Score-CAM")):
            figures = [c["faithfulness"] for c in photo["cams"] if c["method"] == method]
            means = [sum(min(f[f"{s}_share"], 1) for f in figures) / len(figures) for s in ("top", "bottom")]
            assert (f"top 30% keeps <b>{100 * means[0]:.0f}%</b> · bottom 30% keeps <b>{100 * means[1]:.0f}%</b>"
                    ' <span class="muted">(mean over 4 maps)</span>') in html, title
        assert html.count("painted ImageNet's mean colour") == 1
    assert seen == 2 * 2 * 4
