"""The same bytes whoever computes them, on the instruction sets users have.

A photo's figures (feature maps, predictions, class maps and their faithfulness) must not
depend on the photos that share its pass: oneDNN picks its kernel by the batch's shape, so
every pass runs on batches of exactly ``activations.ROWS`` rows. The last test re-runs this
module and the suite's byte-for-byte checks with oneDNN and XLA limited to AVX2, the
instruction set of CPUs without AVX-512, where that choice of kernel shows (a batch of one
or two photos takes a GEMM path of its own).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from gallery.photos.activations import ROWS, Activations
from gallery.photos.explain import explainer
from gallery.photos.faithfulness import Faithfulness

from ..conftest import ROOT, SHARED_MODELS, needs_shared, tiny_classifier

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}


def _photos(count: int, side: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (side + n, side + 2 * n, 3), dtype=np.uint8) for n in range(count)]


METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "cam", "saliency")


def _figures(model, layer: str, photos, classes):
    """Every figure a photo unit publishes for ``photos``, per photo, as float arrays: its
    feature maps, predictions, and each method's maps, channel shares and faithfulness."""
    acts = Activations(model, [layer], "none", 8)
    found = [acts.feature_maps_batch(photos)[layer], acts.predictions_batch(photos)]
    for method in METHODS:
        heats, shares = explainer(model, layer, method, "none", 8).explain_batch(photos, classes)
        found += [heats, [np.zeros(0) if s is None else s for s in shares],
                  Faithfulness(model, "none", 8)(photos, classes, heats)]
    return [[np.asarray(figure[i]) for figure in found] for i in range(len(photos))]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.slow
def test_a_photos_figures_do_not_depend_on_the_photos_beside_it():
    model = tiny_classifier()
    photos = _photos(2 * ROWS + 3, 9)
    classes = [[n % 4, (n + 1) % 4] for n in range(len(photos))]
    together = _figures(model, "conv2", photos, classes)
    # Alone (a batch of one), with one neighbour, and at the far end of a later pass.
    for i in (0, ROWS + 1):
        assert _same(_figures(model, "conv2", [photos[i]], [classes[i]])[0], together[i]), i
    assert _same(_figures(model, "conv2", photos[3:5], classes[3:5])[1], together[4])
    assert _same(_figures(model, "conv2", photos[::-1], classes[::-1])[0], together[-1])


@needs_shared()
@pytest.mark.slow
def test_an_efficientnet_photos_figures_do_not_depend_on_the_photos_beside_it():
    """Where this shows even with AVX-512: EfficientNet-lite0 gave a photo alone other last
    digits than the same photo among seven others."""
    import keras

    model = keras.saving.load_model(SHARED_MODELS / "efficientnet_lite0_imagenet.keras")
    photos = _photos(3, 40)
    acts = Activations(model, ["top_conv"], "none")
    probs, maps = acts.predictions_batch(photos), acts.feature_maps_batch(photos)["top_conv"]
    assert np.array_equal(acts.predictions_batch(photos[2:])[0], probs[2])
    assert np.array_equal(acts.feature_maps_batch(photos[1:2])["top_conv"][0], maps[1])
    heats, _ = explainer(model, None, "gradcam", "none").explain_batch(photos, [[1, 2]] * 3)
    alone, _ = explainer(model, None, "gradcam", "none").explain_batch(photos[:1], [[1, 2]])
    assert np.array_equal(alone[0], heats[0])


@pytest.mark.parametrize("argv,threads", [(["--worker-cpus", "1"], 1), (["--worker-cpus", "3"], 3),
                                          (["--worker-cpus", "1", "--executor", "ray"], 1)])
@pytest.mark.slow
def test_a_local_build_computes_with_the_threads_of_a_ray_worker(classifier_file, argv, threads):
    """The command line limits a build to ``--worker-cpus`` threads (at most the machine's)
    before the backend starts, a Ray build's driver too: it scores old tiles' peaks."""
    code = ("import sys; from gallery.cli import main; main(sys.argv[1:]); import tensorflow as tf; "
            "print('threads', tf.config.threading.get_intra_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code, "--model", str(classifier_file), "--list-layers", *argv],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    wanted = min(threads, os.cpu_count())  # no more than the machine has
    assert f"threads {wanted}" in out.stdout.splitlines()[-1], out.stdout[-1000:] + out.stderr[-2000:]


@pytest.mark.parametrize("argv,eigen", [(["--worker-cpus", "1"], "false"), (["--worker-cpus", "2"], "true"),
                                        (["--worker-cpus", "1", "--executor", "ray"], "false")])
@pytest.mark.slow
def test_a_jax_build_computes_with_the_threads_of_a_ray_worker(classifier_file, argv, eigen):
    """Under JAX, whose CPU runtime computes on one thread or on all of them, a build's own
    process takes the setting a Ray worker of ``--worker-cpus`` gets (issue 20, item 20),
    keeping the flags it was given (the AVX2 limit)."""
    code = ("import os, sys; from gallery.cli import main; main(sys.argv[1:]); print('flags', os.environ['XLA_FLAGS'])")
    out = subprocess.run([sys.executable, "-c", code, "--model", str(classifier_file), "--list-layers", *argv],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"})
    last = out.stdout.splitlines()[-1] if out.stdout.strip() else ""
    wanted = "false" if os.cpu_count() == 1 else eigen
    assert last.split()[1:] == ["--xla_cpu_max_isa=AVX2", f"--xla_cpu_multi_thread_eigen={wanted}"], \
        out.stdout[-1000:] + out.stderr[-2000:]


@pytest.mark.slow
def test_onednn_honours_the_avx2_limit_the_suite_is_rerun_under():
    """The limit the last test relies on really takes: oneDNN's own log says the most it
    uses is AVX2, and no kernel it ran is an AVX-512 or AMX one (on an AVX2-only CPU this
    holds by itself). The kernels' names are not asserted to say "avx2": for this
    convolution an AMD EPYC runs oneDNN's ``gemm_api``, whose name names no ISA."""
    code = ("import tensorflow as tf; x = tf.ones((4, 16, 16, 3)); "
            "tf.nn.conv2d(x, tf.ones((3, 3, 3, 8)), 1, 'SAME').numpy()")
    env = {**os.environ, **AVX2, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if "onednn_verbose" in line]
    isa = [line.split("isa:", 1)[1] for line in lines if ",cpu,isa:" in line]
    assert isa and "AVX2" in isa[0] and "512" not in isa[0] and "AMX" not in isa[0], \
        out.stdout[-2000:] + out.stderr[-2000:]
    ran = [line for line in lines if ",exec," in line]
    assert ran, out.stdout[-2000:]  # the convolution ran through oneDNN, so the log speaks for it
    assert not any("avx512" in line or "amx" in line for line in ran), ran


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_the_byte_for_byte_checks_pass_limited_to_avx2():
    """This module, a disk that fills mid-build, and a Ray build against a local one under
    TensorFlow, and the tiny model's photo figures under JAX, each limited to AVX2 in a
    pytest of its own."""
    runs = [
        ({}, ["tests/orchestrate/test_determinism.py",
              "tests/orchestrate/test_ownership.py::test_a_disk_that_fills_mid_build_stops_in_one_line_and_the_rerun_is_byte_"
              "identical[0.5]",
              "tests/orchestrate/test_scale.py::test_a_ray_build_publishes_the_same_bytes_as_a_local_build"]),
        # The tiny model alone: EfficientNet's passes take two minutes to compile under JAX.
        ({"KERAS_BACKEND": "jax"}, ["tests/orchestrate/test_determinism.py::test_a_photos_figures_do_not_depend_on_the_photos_"
                                    "beside_it"]),
    ]
    for extra, tests in runs:
        env = {**os.environ, **AVX2, **extra, "TF_CPP_MIN_LOG_LEVEL": "2"}
        # EfficientNet is left to the default run, where it shows the same dependence.
        argv = ["-q", "-p", "no:cacheprovider", "-x", *tests, "-k",
                "not onednn_honours and not limited_to_avx2 and not efficientnet"]
        out = subprocess.run([sys.executable, "-m", "pytest", *argv], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=420)
        assert out.returncode == 0, f"{extra or 'tensorflow'}: {out.stdout[-4000:]}{out.stderr[-2000:]}"
        assert " passed" in out.stdout.splitlines()[-1], out.stdout[-1000:]
