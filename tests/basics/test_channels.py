"""Models that do not take RGB: grey (1 channel), more than three channels, small fixed inputs."""

from __future__ import annotations

import html as markup
import json

import numpy as np
import pytest
from PIL import Image

from gallery import channels as ch, imaging
from gallery.orchestrate import pipeline, units
from gallery.channels import Channels
from gallery.config import BuildConfig, RenderSettings, parse_preprocess
from gallery.errors import GalleryError
from gallery.model import loading, preprocess as prep
from gallery.photos import sources
from gallery.render import params

from ..conftest import tiny_channel_classifier
from ..helpers.builds import check_site

ALL_METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "cam", "saliency", "smoothgrad", "guided-gradcam")


# the channels themselves ---------------------------------------------------------------------


def test_a_colour_photo_becomes_its_bt601_luminance_and_a_grey_one_keeps_its_values():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 40]]], np.uint8)
    grey = Channels.of(1).photo(rgb)
    assert grey.shape == (1, 4, 1)
    assert grey[0, :, 0].tolist() == [76, 150, 29, round(0.299 * 10 + 0.587 * 200 + 0.114 * 40)]
    # Pillow's "L" conversion uses the same weights (its rounding may differ by one).
    assert np.abs(grey[..., 0].astype(int) - np.asarray(Image.fromarray(rgb).convert("L"))).max() <= 1
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(Channels.of(1).photo(np.repeat(values[..., None], 3, -1))[..., 0], values)


def test_rgb_is_untouched_and_names_nothing_in_keys():
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    rgb = Channels.of(3)
    assert rgb.plain and rgb.key() == {} and rgb.view(image) is image and rgb.photo(image) is image
    assert rgb.fill() == (123.68, 116.779, 103.939)


def test_more_channels_show_the_named_three_and_keep_every_channel_in_the_strip():
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    bands = Channels.of(4, (3, 1, 0))
    assert np.array_equal(bands.view(image), image[..., [3, 1, 0]])
    assert bands.key() == {"channels": 4, "rgb": [3, 1, 0]}
    strip = ch.strip(image)
    assert strip.shape == (5, 24) and np.array_equal(strip[:, 6:12], image[..., 1])
    assert np.array_equal(ch.unstrip(strip, 4), image)
    assert Channels.of(4).rgb == (0, 1, 2)
    assert Channels.of(2).view(image[..., :2]).tolist() == np.repeat(image[..., :1], 3, -1).tolist()
    assert bands.fill() == (103.939, 116.779, 127.5, 123.68)


@pytest.mark.parametrize("count,rgb,message", [
    (1, (0, 1, 2), "--rgb-channels 0,1,2: 'digits' takes 1-channel images, fewer than three"),
    (4, (0, 1, 4), "--rgb-channels 0,1,4: expected three different channel indices from 0 to 3 ('digits' takes"),
    (4, (0, 1, 1), "--rgb-channels 0,1,1: expected three different channel indices"),
])
def test_rgb_channels_are_checked_against_the_count(count, rgb, message):
    with pytest.raises(GalleryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Channels.of(count, rgb, "digits")


def test_a_photo_without_the_models_channels_is_refused_naming_the_shape():
    with pytest.raises(GalleryError, match=r"'a' has 3 channels; the model takes 4: give .npy arrays of shape H×W×4"):
        Channels.of(4).photo(np.zeros((4, 4, 3), np.uint8), "'a'")


def test_resizing_four_channels_keeps_the_fourth_a_band_not_an_alpha():
    """Pillow resizes RGBA premultiplied: with the fourth band 0, the other three would all be 0."""
    image = np.zeros((8, 8, 4), np.uint8)
    image[..., :3] = 200
    out = imaging.resize(image, 4, 4)
    assert out.shape == (4, 4, 4) and (out[..., :3] == 200).all() and (out[..., 3] == 0).all()
    assert imaging.resize(image[..., :1], 4, 4).shape == (4, 4, 1)


# arrays as photos ----------------------------------------------------------------------------


def test_npy_and_tiff_photos_carry_their_channels(tmp_path):
    import tifffile  # scikit-image, a dependency, installs it
    array = np.random.default_rng(0).integers(0, 256, (6, 7, 5), dtype=np.uint8)
    np.save(tmp_path / "a.npy", array)
    np.save(tmp_path / "f.npy", array.astype("float32"))
    tifffile.imwrite(tmp_path / "t.tif", array)
    photos = {p.name: p for p in sources.load_photos([tmp_path])}
    assert np.array_equal(photos["a"].pixels, array) and np.array_equal(photos["f"].pixels, array)
    assert np.array_equal(photos["t"].read(bands=True), array)
    portable = photos["a"].portable()  # a remote worker decodes the bytes it was sent
    assert np.array_equal(portable.pixels, array)
    np.save(tmp_path / "large.npy", np.zeros((sources.MAX_SIDE * 2, 600, 5), np.uint8))
    assert sources.load_photos([tmp_path / "large.npy"])[0].pixels.shape == (sources.MAX_SIDE, 300, 5)


@pytest.mark.parametrize("array,message", [
    (np.full((4, 4, 2), 300.0), "holds values from 300 to 300; expected values from 0 to 255"),
    (np.zeros((2, 4, 4, 2), np.uint8), r"holds a uint8 array of shape \(2, 4, 4, 2\); expected numbers of shape H×W×C"),
    (np.array([["a"]]), "holds a <U1 array"),
])
def test_an_array_that_is_no_photo_is_refused_in_one_line(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    (photo,) = sources.load_photos([tmp_path / "bad.npy"])
    with pytest.raises(GalleryError, match=message) as found:
        photo.pixels
    assert "\n" not in str(found.value)


# preprocessing -------------------------------------------------------------------------------


def test_per_channel_standardisation_is_torchvisions_normalize_and_affine():
    spec = parse_preprocess(" mean=0.5,0.25,std=0.5,2 ")
    assert spec == "mean=0.5,0.25,std=0.5,2.0"
    x = np.array([[[[255.0, 0.0]]]], "float32")
    out = np.asarray(prep.resolve(spec)(x))
    assert np.allclose(out, [[[[(1 - 0.5) / 0.5, (0 - 0.25) / 2]]]])
    assert prep.affine(spec) and not prep.affine(lambda v: v * v)


@pytest.mark.parametrize("spec,count,message", [
    ("caffe", 1, "--preprocess caffe: ImageNet's RGB convention needs 3 channels, and 'digits' takes 1-channel images"),
    ("torch", 4, "--preprocess torch: ImageNet's RGB convention needs 3 channels, and 'digits' takes 4-channel"),
    ("mean=0.1,0.2,std=0.3,0.4", 1, "--preprocess mean=0.1,0.2,std=0.3,0.4: expected 1 mean and 1 std, one per "
                                    "channel of 'digits' \\(1-channel images\\), got 2"),
])
def test_preprocessing_is_checked_against_the_channel_count(spec, count, message):
    with pytest.raises(GalleryError, match=message):
        prep.check(spec, count, "digits")
    prep.check("tf", count, "digits")  # scaling alone fits any count
    prep.check("none", count, "digits")


# the parameterization ------------------------------------------------------------------------


def test_grey_fourier_images_have_one_channel_held_in_the_contrast_ball():
    init, image_fn = params.fourier(16, contrast=2.0, channels=Channels.of(1))
    rng = np.random.default_rng(0)
    p = np.stack([init(rng) * 400 for _ in range(3)])  # far outside the ball
    images = np.asarray(image_fn(p), "float64")
    assert images.shape == (3, 16, 16, 1)
    before = np.log(images / (1 - images))  # the sigmoid's input
    rms = np.sqrt((before ** 2).mean(axis=(1, 2, 3)))
    assert np.allclose(rms, 2.0 * params.GREY_GAIN, rtol=1e-3)


def test_the_grey_ball_is_the_rgb_radius_on_luminance_in_grey_units():
    """A unit of the RGB basis' luminance coordinate moves each RGB channel by GREY_GAIN: the
    grey ball's radius, contrast luminance units, is GREY_GAIN · contrast grey units."""
    l = np.random.default_rng(0).normal(0, 2, (1, 16, 16, 1)).astype("float32")
    x = np.concatenate([l, np.zeros_like(l), np.zeros_like(l)], axis=-1)
    rgb = np.asarray(params.decorrelate(x))
    assert np.allclose(rgb.mean(axis=-1), params.GREY_GAIN * l[..., 0], rtol=1e-5)
    assert 0.55 < params.GREY_GAIN < 0.59


def test_decorrelation_applies_only_to_the_channels_named_rgb():
    m = params.mixing(Channels.of(5, (4, 0, 2)))
    assert np.allclose(m[np.ix_((4, 0, 2), (4, 0, 2))], params.COLOR_CORRELATION)
    assert m[1, 1] == 1 and m[3, 3] == 1 and m[1].sum() == 1 and m[:, 3].sum() == 1
    init, image_fn = params.pixel(8, channels=Channels.of(5))
    assert np.asarray(image_fn(init(np.random.default_rng(0))[None])).shape == (1, 8, 8, 5)


def test_maco_is_refused_for_a_model_that_is_not_rgb():
    with pytest.raises(GalleryError, match="--param maco: its amplitude spectrum is measured on RGB photos, and "
                                           "'model' takes 1 channel \\(grey\\); use --param fourier or pixel"):
        params.parameterize("maco", 16, channels=Channels.of(1))


# names ---------------------------------------------------------------------------------------


def test_messages_name_a_model_file_by_its_stem_not_kerases_functional(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    assert model.name.startswith("functional")
    model.save(tmp_path / "digit_reader.keras")
    with pytest.raises(GalleryError, match="model 'digit_reader' has no Conv2D"):
        pipeline.build(BuildConfig(model=str(tmp_path / "digit_reader.keras"), preprocess="none",
                                   out=tmp_path / "site", cache=tmp_path / "cache"))
    loaded = loading.load_model(str(tmp_path / "digit_reader.keras"))
    with pytest.raises(GalleryError, match="layer 'nope' is not in model 'digit_reader'"):
        from gallery.model import graph

        graph.locate(loaded, "nope")


# whole builds --------------------------------------------------------------------------------


def _build(tmp_path, model_path, **overrides):
    config = dict(model=str(model_path), preprocess="none", render=RenderSettings(size=16, steps=3, batch=4),
                  out=tmp_path / "site", cache=tmp_path / "cache", cam_methods=ALL_METHODS)
    config.update(overrides)
    config = BuildConfig(**config)
    return config, pipeline.build(config)


def _model_and_folder(factory, name: str, side: int, count: int):
    """``(folder, photo folder, generator)``: the folder holding ``name.keras``, a tiny model
    of ``side``² inputs of ``count`` channels, and an empty folder for its photos."""
    tmp = factory.mktemp(name)
    tiny_channel_classifier(side, count).save(tmp / f"{name}.keras")
    (tmp / "photos").mkdir()
    return tmp, tmp / "photos", np.random.default_rng(count)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A 28×28 grey model built from the sample photos (as colour PNGs): tiles, every CAM method."""
    tmp, photos, rng = _model_and_folder(tmp_path_factory, "digits", 28, 1)
    for name, shape in (("colour", (30, 40, 3)), ("grey", (20, 20))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(photos / f"{name}.png")
    config, manifest = _build(tmp, tmp / "digits.keras", images=(photos,),
                              preprocess="mean=0.1307,std=0.3081", render=RenderSettings(size=128, steps=3, batch=8))
    return config, manifest


@pytest.mark.slow
def test_a_grey_28px_model_builds_end_to_end(digits):
    config, manifest = digits
    out = config.out / "digits"
    check_site(config.out)
    info = manifest["model"]
    assert info["name"] == "digits" and info["tile_side"] == 28 and info["channels"]["count"] == 1
    assert info["preprocess"] == "mean=0.1307,std=0.3081"
    for layer, count in (("conv1", 4), ("conv2", 3)):
        for i in range(count):
            with Image.open(out / "layers" / layer / f"{i}.png") as tile:
                assert tile.mode == "L" and tile.size == (28, 28)  # at the model's own size, in grey
    photo = next(p for p in manifest["photos"] if p["name"] == "colour")
    with Image.open(config.out / photo["image"]) as shown:
        assert shown.mode == "L"  # the photo as the model sees it: its luminance
    assert {c["method"] for c in photo["cams"]} == set(ALL_METHODS)
    with Image.open(config.out / next(c["image"] for c in photo["cams"] if c["method"] == "gradcam")) as overlay:
        rgb = np.asarray(overlay.convert("RGB")).astype(int)
    assert rgb.std(axis=-1).mean() > 5  # the colour map over the grey photo
    assert all(0 <= c["faithfulness"]["top"] <= 1 for c in photo["cams"])
    assert photo["features"] and all(f["channels"] in (4, 3) for f in photo["features"])
    html = markup.unescape((config.out / photo["page"]).read_text(encoding="utf-8"))
    assert "its luminance, Y = 0.299 R + 0.587 G + 0.114 B" in html
    assert "the luminance of ImageNet's mean colour" in html
    layer_page = (out / "layers" / "conv1" / "index.html").read_text(encoding="utf-8")
    assert 'src="../../../digits/layers/conv1/0.png"' in layer_page and 'class="crisp"' in layer_page
    filter_page = markup.unescape((out / "layers" / "conv1" / "0.html").read_text(encoding="utf-8"))
    assert "The tile is 28×28 px, the model's own input size, shown 16× enlarged" in filter_page
    assert manifest["layers"][0]["filters"][0]["top"]  # top photos ranked by grey peaks
    assert (out / "layers" / "conv1" / "kernels.png").is_file()  # a grey first layer's kernels, in grey


@pytest.mark.slow
def test_keys_name_the_channels_and_preprocessing_that_change_the_pixels(tmp_path):
    job = units.Job("f" * 32, RenderSettings(size=16, steps=3), "mean=0.5,std=0.2", {"conv1": (0,)},
                    channels=Channels.of(1))
    keys = {units.filter_key(job, "conv1", 0, "channel", 0), units.filter_key(
        units.Job(job.fingerprint, job.render, "mean=0.4,std=0.2", job.selection, channels=job.channels),
        "conv1", 0, "channel", 0)}
    bands = [units.Job(job.fingerprint, job.render, "none", job.selection, channels=Channels.of(4, rgb))
             for rgb in ((0, 1, 2), (3, 2, 1))]
    keys |= {units.filter_key(j, "conv1", 0, "channel", 0) for j in bands}
    keys |= {j.photo_key("cam", "d" * 32, layer="conv2") for j in bands}
    assert len(keys) == 6


@pytest.fixture(scope="module")
def bands(tmp_path_factory):
    """A 4-channel 16×16 model, photos from .npy arrays and a TIFF, RGB named as channels 3, 1, 0."""
    import tifffile  # scikit-image, a dependency, installs it
    tmp, photos, rng = _model_and_folder(tmp_path_factory, "bands", 16, 4)
    np.save(photos / "field.npy", rng.integers(0, 256, (20, 24, 4), dtype=np.uint8))
    tifffile.imwrite(photos / "river.tif", rng.integers(0, 256, (18, 18, 4), dtype=np.uint8))
    return _build(tmp, tmp / "bands.keras", images=(photos,), rgb_channels=(3, 1, 0),
                  preprocess="mean=0.5,0.5,0.5,0.5,std=0.25,0.25,0.25,0.25")


@pytest.mark.slow
def test_a_four_channel_model_builds_from_arrays_with_every_channel_downloadable(bands):
    config, manifest = bands
    out = config.out / "bands"
    check_site(config.out)
    assert manifest["model"]["channels"] == {
        "count": 4, "rgb": [3, 1, 0], "about": "4 channels, shown as RGB from channels 3, 1, 0",
        "photo_note": manifest["model"]["channels"]["photo_note"], "fill_note": manifest["model"]["channels"]["fill_note"]}
    assert {p["name"] for p in manifest["photos"]} == {"field", "river"}
    for i in range(4):
        with Image.open(out / "layers" / "conv1" / f"{i}.png") as view, \
                Image.open(out / "layers" / "conv1" / f"{i}.channels.png") as strip:
            assert view.mode == "RGB" and view.size == (16, 16) and strip.mode == "L" and strip.size == (64, 16)
            # The view is the strip's channels 3, 1, 0: one image, not two renderings.
            assert np.array_equal(np.asarray(view), ch.unstrip(np.asarray(strip), 4)[..., [3, 1, 0]])
    page = (out / "layers" / "conv1" / "0.html").read_text(encoding="utf-8")
    assert 'href="../../../bands/layers/conv1/0.channels.png" download>Download every channel</a>' in page
    photo = manifest["photos"][0]
    assert {c["method"] for c in photo["cams"]} == set(ALL_METHODS)
    html = markup.unescape((config.out / photo["page"]).read_text(encoding="utf-8"))
    assert "the photo shows channels 3, 1, 0 as red, green and blue, and every map below is drawn over that view" in html
    records = [json.loads(p.read_text()) for p in (config.cache / "objects").rglob("*.json")]
    assert sum(r["about"]["kind"] == "bands" for r in records) == 4 + 3


def test_a_four_channel_model_refuses_photos_that_cannot_carry_its_channels(tmp_path, photo_dir):
    tiny_channel_classifier(8, 4).save(tmp_path / "bands.keras")
    for images, shown in (((), "the bundled sample photos"), ((photo_dir,), "b<o>at.png")):
        with pytest.raises(GalleryError, match=f"'bands' takes 4-channel images, so --images must be .npy arrays of "
                                               f"shape H×W×4 \\(or TIFFs with 4 channels\\); got .*{shown}"):
            _build(tmp_path, tmp_path / "bands.keras", images=images)
        assert not (tmp_path / "site").exists()


@pytest.mark.slow
def test_the_cli_builds_a_grey_model_with_its_preprocessing(tmp_path, capsys):
    from gallery import cli

    tiny_channel_classifier(32, 1).save(tmp_path / "cifar_grey.keras")
    code = cli.main(["--model", str(tmp_path / "cifar_grey.keras"), "--preprocess", "mean=0.5,std=0.25",
                     "--steps", "2", "--layers", "conv1", "--photo-pages", "1", "--out", str(tmp_path / "site"),
                     "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "tiles of 32×32 px (not 128): the model takes 32×32 images" in err
    with Image.open(tmp_path / "site" / "cifar_grey" / "layers" / "conv1" / "0.png") as tile:
        assert tile.mode == "L" and tile.size == (32, 32)


def test_the_python_api_takes_rgb_photos_for_a_grey_model():
    from gallery import feature_maps, grad_cam, visualize_filters

    model = tiny_channel_classifier(8, 1)
    photo = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    grey = Channels.of(1).photo(photo)
    assert np.array_equal(feature_maps(model, photo, "conv1"), feature_maps(model, grey, "conv1"))
    assert grad_cam(model, photo, 1).shape == (12, 10)
    assert visualize_filters(model, "conv2", [0, 2], size=16, steps=2).shape == (2, 16, 16, 1)
