"""Misuse gets one line naming the value, exit status 2, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gallery.cli import main
from gallery.config import RenderSettings

from .conftest import online, tiny_classifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_classifier().save(path)
    return path


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("argv,message", [
    (["--model", "nope.keras"], "model file 'nope.keras' does not exist"),
    (["--model", "NotANet"], "'NotANet' is neither a model file"),
    (["--steps", "0"], "--steps: expected a positive integer, got '0'"),
    (["--size", "-4"], "--size: expected a positive integer, got '-4'"),
    (["--size", "8"], "size must be at least 16 pixels, got 8"),
    (["--scales", "0.5"], "--scales: expected fractions in (0, 1] ending with 1, such as 0.5,1, got '0.5'"),
    (["--scales", "0,1"], "--scales: expected fractions in (0, 1] ending with 1"),
    (["--variants", "negative,blurry"], "--variants: expected 'none' or names from negative, diversity, neuron"),
    (["--preset", "best"], "--preset: invalid choice: 'best'"),
    (["--precision", "float16"], "--precision: invalid choice: 'float16'"),
    (["--filters", "9:3"], "--filters range '9:3' is empty"),
    (["--filters", "a:b"], "--filters expects START:STOP"),
    (["--preprocess", "bgr"], "invalid choice: 'bgr'"),
    (["--labels", "missing.txt"], "--labels: 'missing.txt' is not a file"),
    (["--images", "no/such/dir"], "'no/such/dir' is neither a file nor a folder"),
    (["--seed", "-1"], "--seed: expected a non-negative integer, got '-1'"),
    (["--layers", ","], "--layers: expected comma-separated layer names"),
    (["--model", "x.keras", "--bogus"], "unrecognized arguments: --bogus"),
    (["--weights", "missing.h5"], "weights file 'missing.h5' does not exist"),
    (["--cam-method", "lime"], "--cam-method: expected methods from gradcam, gradcam++, scorecam, got 'lime'"),
    (["--photo-pages", "some"], "--photo-pages: expected a number of photos (0 or more) or 'all', got 'some'"),
    (["--photo-pages", "-2"], "--photo-pages: expected a number of photos (0 or more) or 'all', got '-2'"),
    (["--examples", "0"], "--examples: expected a positive integer, got '0'"),
])
def test_bad_invocations(argv, message, capsys, tmp_path):
    code, err = _run([*argv, "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("extra,message", [
    (["--layers", "conv9"], "layer 'conv9' is not in model 'tiny'; its conv layers are: conv1, conv2"),
    (["--cam-layers", "zzz"], "layer 'zzz' is not in model"),
    (["--filters", "50:60"], "--filters selects no filter"),
])
def test_bad_invocations_on_a_model(extra, message, capsys, tmp_path, model_file):
    code, err = _run(["--model", model_file, "--steps", "1", "--size", "16", *extra,
                      "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def _build_with_labels(labels, model_file, tmp_path, capsys):
    return _run(["--model", model_file, "--steps", "1", "--size", "16", "--filters", "0:1",
                 "--labels", labels, "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)


def test_label_count_mismatch(capsys, tmp_path, model_file):
    labels = tmp_path / "l.txt"
    labels.write_text("a\nb\n")
    code, err = _build_with_labels(labels, model_file, tmp_path, capsys)
    assert code == 2 and "has 2 names but the model has 4 classes" in err


def test_bad_labels_file(capsys, tmp_path, model_file):
    labels = tmp_path / "l.json"
    labels.write_text("[1, 2, 3, 4]")
    code, err = _build_with_labels(labels, model_file, tmp_path, capsys)
    assert code == 2 and "must hold a JSON list of strings" in err
    labels.write_text("{broken")
    code, err = _build_with_labels(labels, model_file, tmp_path, capsys)
    assert code == 2 and "is not valid JSON" in err


def test_a_folder_is_not_a_model(capsys, tmp_path):
    code, err = _run(["--model", tmp_path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "is neither a model file" in err


def test_not_a_model_file(capsys, tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"this is not a zip")
    code, err = _run(["--model", fake, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "could not load" in err and "fake.keras" in err


def test_offline_imagenet_weights_fail_with_instructions(capsys, tmp_path, monkeypatch):
    """The real VGG16(weights="imagenet") path, with Keras's download failing as it does offline."""
    from keras.src.utils import file_utils

    def refuse(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", refuse)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    code, err = _run(["--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in err
    assert "--weights PATH" in err and str(tmp_path / "keras-home" / "models") in err


@pytest.mark.skipif(online(), reason="the machine is online, so Keras would download the real weights")
def test_default_build_fails_cleanly_offline(tmp_path):
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras-home")}
    proc = subprocess.run([sys.executable, "build.py", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in proc.stderr and "--weights PATH" in proc.stderr


def test_debug_shows_the_traceback(capsys, tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        main(["--model", "nope.keras", "--debug"])


def test_help_is_instant_and_lists_the_contract():
    proc = subprocess.run([sys.executable, "build.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    for flag in ("--model", "--weights", "--preprocess", "--labels", "--layers", "--filters", "--size",
                 "--steps", "--seed", "--images", "--out", "--cache"):
        assert flag in proc.stdout


@pytest.mark.parametrize("value,expected", [("all", None), ("ALL", None), ("0", 0), ("12", 12)])
def test_photo_pages_accepts_counts_and_all(value, expected):
    from gallery.cli import config_from, parser

    argv = ["--photo-pages", value]
    assert config_from(parser().parse_args(argv), argv).photo_pages == expected


def _config(argv):
    from gallery.cli import config_from, parser

    return config_from(parser().parse_args(argv), argv)


def test_presets_fill_what_the_flags_leave_and_differ_on_a_gpu(monkeypatch):
    from gallery import grad
    from gallery.presets import PRESETS

    monkeypatch.setattr(grad, "accelerator", lambda: None)
    default = _config([])
    assert default.render == RenderSettings() and default.variants == ()
    preview = _config(["--preset", "preview", "--steps", "7"])
    assert (preview.render.size, preview.render.steps) == (PRESETS["preview"]["cpu"]["size"], 7)
    high = _config(["--preset", "high", "--variants", "none", "--scales", "0.25,0.5,1"])
    assert high.variants == () and high.render.scales == (0.25, 0.5, 1.0) and high.render.size == 224
    assert _config(["--preset", "high"]).variants == ("negative", "diversity")
    monkeypatch.setattr(grad, "accelerator", lambda: "gpu")
    gpu = _config([])
    assert (gpu.render.size, gpu.render.steps, gpu.render.batch) == (224, 512, 128)
    assert gpu.render.precision == "bfloat16" and default.render.precision == "float32"
    assert _config(["--precision", "float32"]).render.precision == "float32"
