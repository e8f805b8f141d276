"""Misuse gets one line naming the value, exit status 2, and no traceback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

from gallery.cli import main
from gallery.config import RenderSettings

from ..conftest import ROOT, online, tiny_classifier


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
    (["--decay", "-1"], "--decay: expected a positive number such as 1.5, got '-1'"),
    (["--decay", "nan"], "--decay: expected a positive number such as 1.5, got 'nan'"),
    (["--scales", "0.5"], "--scales: expected fractions in (0, 1] ending with 1, such as 0.5,1, got '0.5'"),
    (["--scales", "0,1"], "--scales: expected fractions in (0, 1] ending with 1"),
    (["--variants", "negative,blurry"], "--variants: expected 'none' or names from negative, diversity, neuron"),
    (["--preset", "best"], "--preset: invalid choice: 'best'"),
    (["--precision", "float16"], "--precision: invalid choice: 'float16'"),
    (["--filters", "9:3"], "--filters range '9:3' is empty"),
    (["--filters", "a:b"], "--filters expects START:STOP"),
    (["--preprocess", "bgr"], "--preprocess: expected caffe, tf, torch, none, or mean=M1,…,std=S1,… (one of each per "
     "channel, on pixels scaled to 0–1), got 'bgr'"),
    (["--preprocess", "mean=0.5,std=0"], "--preprocess: expected finite means and positive stds, got 'mean=0.5,std=0'"),
    (["--preprocess", "mean=0.5,0.4,std=0.2"], "--preprocess: expected as many stds as means, one of each per channel, "
     "got 'mean=0.5,0.4,std=0.2' (2 means and 1 stds)"),
    (["--rgb-channels", "0,1"], "--rgb-channels: expected three different channel indices such as 0,1,2, got '0,1'"),
    (["--labels", "missing.txt"], "--labels: 'missing.txt' is not a file"),
    (["--images", "no/such/dir"], "'no/such/dir' is neither a file nor a folder"),
    (["--seed", "-1"], "--seed: expected a non-negative integer, got '-1'"),
    (["--layers", ","], "--layers: expected comma-separated layer names"),
    (["--model", "x.keras", "--bogus"], "unrecognized arguments: --bogus"),
    (["--weights", "missing.h5"], "weights file 'missing.h5' does not exist"),
    (["--cam-method", "lime"], "--cam-method: expected methods from gradcam, gradcam++, scorecam, layercam, cam, "
     "saliency, smoothgrad, guided-gradcam, got 'lime'"),
    (["--photo-pages", "some"], "--photo-pages: expected a number of photos (0 or more) or 'all', got 'some'"),
    (["--photo-pages", "-2"], "--photo-pages: expected a number of photos (0 or more) or 'all', got '-2'"),
    (["--examples", "0"], "--examples: expected a positive integer, got '0'"),
    (["--curve-points", "1"], "--curve-points: expected a number of curve steps, 2 or more, got '1'"),
    (["--randomize", "-1"], "--randomize: expected a non-negative integer, got '-1'"),
])
def test_bad_invocations(argv, message, capsys, tmp_path):
    code, err = _run([*argv, "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("extra,message", [
    (["--layers", "conv9"], "--layers names what tiny has no conv layer for: 'conv9' (did you mean 'conv1' or "
                            "'conv2'?); its conv layers are: conv1, conv2"),
    (["--layers", "zebra"], "--layers names what tiny has no conv layer for: 'zebra'; its conv layers are: conv1, conv2"),
    (["--layers", "gap"], "'gap' (a GlobalAveragePooling2D, not a 2-D conv layer, so it has no filters)"),
    (["--layers", "head"], "'head' (a Dense, not a 2-D conv layer"),
    (["--size", "100000"], "--size 100000: one image needs about"),
    (["--cam-layers", "zzz"], "layer 'zzz' is not in model"),
    (["--filters", "50:60"], "--filters selects no filter"),
    (["--randomize", "4"], "--randomize: randomization levels must be at most the model's 3 conv and dense layers, "
                           "got 4"),
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
    code, err = _run(["--model", tmp_path, "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 2 and "is neither a model file" in err
    (tmp_path / "x.keras").mkdir()
    code, err = _run(["--model", tmp_path / "x.keras", "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 2 and "x.keras' is a folder, not a model file" in err and "does not exist" not in err


def test_damaged_model_files_say_so(capsys, tmp_path, model_file):
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"this is not a zip")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(model_file.read_bytes()[:-100])
    flipped = tmp_path / "flipped.keras"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights member: its CRC no longer matches
    flipped.write_bytes(bytes(data))
    for path in (fake, truncated, flipped):
        code, err = _run(["--model", path, "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
        assert code == 2 and f"model file {str(path)!r} is damaged" in err, err
        assert "File not found" not in err and "Traceback" not in err


@pytest.mark.slow
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
@pytest.mark.slow
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
    from gallery.model import grad
    from gallery.presets import PRESETS

    monkeypatch.setattr(grad, "accelerator", lambda: None)
    monkeypatch.setattr(grad, "cpu_bf16", lambda: False)
    default = _config([])
    assert default.render == RenderSettings() and default.variants == ()
    assert all(getattr(_config(["--preset", p]).render, name) is None for p in ("preview", "high")
               for name in RenderSettings.KINDS)
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
    # Long runs take a steeper spectrum (presets.LONG_RUN_DECAY); --decay overrides it.
    assert (gpu.render.decay, _config(["--decay", "1.25"]).render.decay) == (1.75, 1.25)
    assert _config(["--preset", "high"]).render.decay == 2.0 and _config(["--preset", "preview"]).render.decay == 1.5
    # Only the CPU default gives the coarse layers and depthwise models settings of their own.
    assert all(getattr(gpu.render, name) is None for name in RenderSettings.KINDS)
    flagged = _config(["--coarse-decay", "1.1", "--depthwise-decay", "1.0", "--coarse-contrast", "2.5",
                       "--lr", "0.3", "--depthwise-lr", "0.07"]).render
    assert (flagged.coarse_decay, flagged.depthwise_decay, flagged.coarse_contrast) == (1.1, 1.0, 2.5)
    assert (flagged.learning_rate, flagged.depthwise_lr) == (0.3, 0.07)
    # A CPU with AMX: bf16, unless the flags say otherwise.
    monkeypatch.setattr(grad, "accelerator", lambda: None)
    monkeypatch.setattr(grad, "cpu_bf16", lambda: True)
    amx = _config([])
    assert (amx.render.size, amx.render.steps, amx.render.precision) == (128, 64, "bfloat16")
    assert amx.render_if_depthwise == RenderSettings()  # bf16 is slower there: the float32 default
    assert _config(["--steps", "32"]).render_if_depthwise == RenderSettings(steps=32)  # the flags still hold
    assert _config(["--preset", "high"]).render.precision == "bfloat16"
    assert _config(["--preset", "high"]).render.decay == 1.75 and amx.render.decay == 1.5
    pinned = _config(["--precision", "float32", "--steps", "64"])
    assert pinned.render == RenderSettings() and pinned.render_if_depthwise is None
    assert _config(["--preset", "preview"]).render.steps == PRESETS["preview"]["cpu"]["steps"]


def test_amx_is_read_from_the_cpus_flags_and_only_tensorflow_uses_it(tmp_path, monkeypatch):
    from gallery.model import grad

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    assert grad.has_amx(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")  # bf16 vectors, no tiles
    assert not grad.has_amx(str(info))
    assert not grad.has_amx(str(tmp_path / "absent"))  # not Linux
    monkeypatch.setattr(grad, "CPUINFO", str(tmp_path / "amx"))
    (tmp_path / "amx").write_text("flags\t\t: amx_bf16 amx_tile\n")
    monkeypatch.setattr(grad, "BACKEND", "tensorflow")
    assert grad.cpu_bf16.__wrapped__()
    monkeypatch.setattr(grad, "BACKEND", "jax")  # XLA's CPU convolutions do not use AMX
    assert not grad.cpu_bf16.__wrapped__()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\u202e\x9b31m"


@pytest.mark.slow
def test_control_characters_in_names_never_reach_the_terminal(tmp_path, capsys):
    from gallery.orchestrate.progress import Progress

    screen = _Terminal()
    bar = Progress({0: ([(("conv1", 16), 1.0, 1)], 2, 0)}, cached_images=0, total_images=2, cached_photos=0,
                   total_photos=0, stream=screen)
    time.sleep(0.3)  # a terminal redraws at most five times a second
    bar.start(0, HOSTILE)
    bar.close()
    raw = screen.getvalue().replace("\r\x1b[K", "")  # the bar's own redraw sequence
    assert not any(ch in raw for ch in "\x1b\x07\x9b\u202e"), repr(raw)
    assert "\\x1b]0;pwned\\x07" in raw
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.new("RGB", (12, 12)).save(photos / f"{HOSTILE}.png")
    (photos / f"{HOSTILE}.txt").write_text("not a photo")
    model = tmp_path / f"{HOSTILE}.keras"
    tiny_classifier().save(model)
    code, err = _run(["--model", model, "--preprocess", "none", "--size", "16", "--steps", "1", "--filters", "0:1",
                      "--images", photos, "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 0, err
    assert not any(ch in err for ch in "\x1b\x07\x9b\u202e"), repr(err)


@pytest.mark.slow
def test_relative_paths_do_not_leak_the_machines_layout(tmp_path, capsys, monkeypatch, model_file):
    work = tmp_path / "home" / "alice" / "work"
    work.mkdir(parents=True)
    labels = tmp_path / "tmp" / "labels.txt"
    labels.parent.mkdir()
    labels.write_text("a\nb\nc\nd\n")
    monkeypatch.chdir(work)
    climbing = "../../../tmp/../tmp/labels.txt"
    assert (work / climbing).resolve() == labels.resolve()
    code, err = _run(["--model", model_file, "--preprocess", "none", "--size", "16", "--steps", "1",
                      "--filters", "0:1", "--labels", climbing, "--out", "site", "--cache", tmp_path / "c"], capsys)
    assert code == 0, err
    for page in (work / "site").rglob("*"):
        if page.suffix in (".html", ".json", ".js"):
            text = page.read_text(encoding="utf-8")
            assert "../../../tmp" not in text and "alice" not in text and str(tmp_path) not in text, page
    assert "\u2026/labels.txt" in (work / "site" / "tiny" / "index.html").read_text(encoding="utf-8")


@pytest.mark.skipif(__import__("keras").backend.backend() != "tensorflow", reason="only TensorFlow traces scopes")
def test_layer_names_tensorflow_cannot_trace_are_refused_in_one_line(tmp_path, capsys):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="my conv", activation="relu")(inputs)
    x = keras.layers.Conv2D(2, 3, name="conv:2", activation="relu")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "names.keras"
    keras.Model(inputs, outputs).save(path)
    code, err = _run(["--model", path, "--size", "16", "--steps", "1", "--variants", "diversity",
                      "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "layer 'my conv' (and 1 more) has a name TensorFlow cannot trace" in err and "--backend jax" in err


def test_cache_info_refuses_a_folder_that_is_not_a_cache(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, err = _run(["--cache-info", "--cache", tmp_path], capsys)
    assert code == 2 and f"--cache {str(tmp_path)!r} is not a cnn-gallery cache" in err


@pytest.mark.slow
def test_a_model_file_without_preprocessing_is_warned_about_once_chosen_never(tmp_path, capsys, model_file):
    from ..conftest import tiny_transfer

    base = ["--size", "16", "--steps", "1", "--filters", "0:1", "--out", tmp_path / "o", "--cache", tmp_path / "c"]
    code, err = _run(["--model", model_file, *base], capsys)
    assert code == 0 and "tiny.keras gets no input preprocessing" in err and "--preprocess caffe" in err, err
    code, err = _run(["--model", model_file, "--preprocess", "none", *base], capsys)  # chosen: no warning
    assert code == 0 and "gets no input" not in err, err
    tiny_transfer().save(tmp_path / "scaled.keras")  # rescales its own pixels
    code, err = _run(["--model", tmp_path / "scaled.keras", *base[:-4], "--out", tmp_path / "o2",
                      "--cache", tmp_path / "c2"], capsys)
    assert code == 0 and "gets no input" not in err, err


@pytest.mark.slow
def test_a_build_prints_its_own_lines_not_the_frameworks(tmp_path, model_file):
    """No TensorFlow/XLA start-up log (CUDA drivers, cuInit, CPU features) on a machine without a GPU."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    run = subprocess.run([sys.executable, str(ROOT / "build.py"), "--model", str(model_file), "--preprocess", "none",
                          "--size", "16", "--steps", "1", "--filters", "0:1", "--out", str(tmp_path / "o"),
                          "--cache", str(tmp_path / "c")], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    noise = [line for line in (run.stdout + run.stderr).splitlines()
             if line[:5] in ("I0000", "W0000", "E0000") or "cuInit" in line or "cuda" in line.lower()]
    assert not noise, noise


def test_list_layers_prints_every_conv_layer_and_exits(tmp_path, capsys):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = inputs
    for i in range(14):
        x = keras.layers.Conv2D(i + 1, 1, name=f"conv_{i:02d}")(x)
    keras.Model(inputs, x, name="deep").save(tmp_path / "deep.keras")
    code = main(["--model", str(tmp_path / "deep.keras"), "--list-layers", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].startswith("deep: 14 conv layers, 105 filters"), out
    assert out[1].split() == ["layer", "type", "output", "filters"]
    assert [line.split() for line in out[2:]] == [[f"conv_{i:02d}", "Conv2D", f"8×8×{i + 1}", str(i + 1)]
                                                  for i in range(14)]
    assert not (tmp_path / "o").exists()  # nothing built
    code, err = _run(["--model", tmp_path / "deep.keras", "--layers", "conv_13x", "--out", tmp_path / "o",
                      "--cache", tmp_path / "c"], capsys)
    assert code == 2 and "(did you mean 'conv_13'?)" in err and "are: conv_00, conv_01," in err, err
    assert "conv_13\n" in err and "in all" not in err, err  # 14 names are shown whole, not 12 of them
