"""What the build tells a person: defaults as they apply, every misspelt layer, options it
had to skip, a damaged cache mark; and a failed build that leaves no folder behind."""

from __future__ import annotations

import json
import re

import pytest

from gallery.orchestrate import pipeline
from gallery.orchestrate.cache import TAG, Cache
from gallery.cli import config_from, main, parser
from gallery.config import BuildConfig, RenderSettings
from gallery.errors import GalleryError

from ..conftest import SHARED_MODELS, needs_shared, tiny_backbone, tiny_classifier


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("flag,field,show", [
    ("--size", "size", str), ("--steps", "steps", str), ("--batch", "batch", str),
    ("--scales", "scales", lambda v: ",".join(f"{s:g}" for s in v)), ("--precision", "precision", str)])
def test_help_states_the_defaults_that_apply_on_a_cpu_and_on_a_gpu(flag, field, show, monkeypatch):
    from gallery.model import grad

    action = next(a for a in parser()._actions if flag in a.option_strings)
    found = re.search(r"\(default: (\S+) on a CPU(?: \((\S+) with AMX\))?, (\S+) on a GPU\)", action.help)
    assert found, action.help
    cpu, amx, gpu = found.groups()
    for device, bf16, stated in ((None, False, cpu), (None, True, amx or cpu), ("gpu", False, gpu)):
        monkeypatch.setattr(grad, "accelerator", lambda device=device: device)
        monkeypatch.setattr(grad, "cpu_bf16", lambda bf16=bf16: bf16)
        applied = getattr(config_from(parser().parse_args([]), []).render, field)
        assert stated == show(applied), (flag, device, stated, applied)


@pytest.mark.slow
def test_every_misspelt_layer_is_named_with_close_guesses_and_the_model_as_pages_name_it(tmp_path, capsys):
    model = tmp_path / "shown_name.keras"
    tiny_classifier(name="inner_name").save(model)
    code, err = _run(["--model", model, "--layers", "conv_1,gap,cnv2,zebra", "--out", tmp_path / "o",
                      "--cache", tmp_path / "c"], capsys)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line == (
        "error: --layers names what shown_name has no conv layer for: 'conv_1' (did you mean 'conv1'?), "
        "'gap' (a GlobalAveragePooling2D, not a 2-D conv layer, so it has no filters), 'cnv2' (did you mean "
        "'conv2'?), 'zebra'; its conv layers are: conv1, conv2"), err


@needs_shared()
@pytest.mark.shared
def test_vgg16_typos_get_only_their_close_names(tmp_path):
    from gallery.orchestrate.pipeline import select_targets
    from gallery.model import loading

    spec = str(SHARED_MODELS / "vgg16_hed_notop.keras")
    model = loading.load_model(spec, "imagenet")
    with pytest.raises(GalleryError) as caught:
        select_targets(model, BuildConfig(model=spec, layers=("block1_conv", "blok3_conv1")))
    text = str(caught.value)
    assert ("--layers names what vgg16_hed_notop has no conv layer for: 'block1_conv' (did you mean 'block1_conv1' "
            "or 'block1_conv2'?), 'blok3_conv1' (did you mean 'block3_conv1'?); its conv layers are: block1_conv1, "
            ) in text, text
    assert text.endswith("block5_conv2, block5_conv3") and "in all" not in text, text  # all 13, not 12


@pytest.mark.slow
def test_a_build_that_fails_before_writing_anything_leaves_no_folder_it_made(tmp_path, capsys):
    model = tmp_path / "tiny.keras"
    tiny_classifier().save(model)
    out, cache = tmp_path / "new" / "site", tmp_path / "fresh-cache"
    code, err = _run(["--model", model, "--layers", "nope", "--out", out, "--cache", cache], capsys)
    assert code == 2 and "'nope'" in err
    assert not (tmp_path / "new").exists() and not cache.exists(), sorted(p.name for p in tmp_path.iterdir())
    # Folders that were there before stay, and so does what a person put in them.
    out.mkdir(parents=True)
    code, _ = _run(["--model", model, "--layers", "nope", "--out", out, "--cache", cache], capsys)
    assert code == 2 and out.is_dir() and not any(out.iterdir())


@pytest.mark.slow
def test_options_that_cannot_apply_are_said_to_be_skipped_once(tmp_path, capsys, photo_dir):
    first = tmp_path / "backbone.keras"
    tiny_backbone().save(first)
    code, err = _run(["--model", first, "--preprocess", "none", "--size", "16", "--steps", "16", "--filters", "0:1",
                      "--trajectory", "2", "--cam-method", "scorecam,saliency", "--images", photo_dir,
                      "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    # c1 is linear in the pixels but optimized (only its neuron images are solved), so its
    # trajectory is recorded and only the CAM methods are skipped.
    assert notes == [
        "note: --cam-method scorecam,saliency skipped: backbone has no classifier head, so there are no classes "
        "to explain"], err


def _sealed_cache(tmp_path, photos) -> Cache:
    model = tmp_path / "tiny.keras"
    tiny_classifier().save(model)
    config = BuildConfig(model=str(model), preprocess="none", render=RenderSettings(size=16, steps=2),
                         filters=slice(0, 1), images=(photos,), out=tmp_path / "site", cache=tmp_path / "cache")
    pipeline.build(config)
    return Cache(config.cache)


@pytest.mark.slow
def test_a_damaged_cache_mark_is_explained_and_mended_by_removing_it(tmp_path, photo_dir, capsys):
    cache = _sealed_cache(tmp_path, photo_dir)
    tag = cache.root / TAG
    tag.write_bytes(tag.read_bytes()[:10])  # truncated
    with pytest.raises(GalleryError) as caught:
        Cache(cache.root).claim()
    text = str(caught.value)
    assert "its mark CACHEDIR.TAG is damaged (10 bytes" in text and "sealed entries" in text, text
    assert "rm " in text and "to start afresh, give --cache a new folder" in text, text
    tag.unlink()  # as the message says
    Cache(cache.root).claim()
    assert "cnn-gallery" in tag.read_text() and "had lost its mark" in capsys.readouterr().err


def test_a_foreign_folder_with_a_broken_mark_is_still_refused_untouched(tmp_path):
    folder = tmp_path / "foreign"
    (folder / "objects" / "ab").mkdir(parents=True)
    (folder / TAG).write_text("Signature: 8a477f597d28d172789f06886806bc55\n")  # another program's cache tag
    record = folder / "objects" / "ab" / ("ab" + "0" * 38 + ".json")
    record.write_text(json.dumps({"format": 2, "digest": "not a seal"}))
    record.with_suffix(".bin").write_bytes(b"data")
    before = sorted((p.relative_to(folder).as_posix(), p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*"))
    with pytest.raises(GalleryError, match="not made by cnn-gallery"):
        Cache(folder).claim()
    assert sorted((p.relative_to(folder).as_posix(), p.read_bytes() if p.is_file() else b"")
                  for p in folder.rglob("*")) == before
