"""A first run that respects the user's time: the plan and its time before the long work,
progress through the photo pass, and an ETA that is right or says it does not know yet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gallery import presets
from gallery.orchestrate import estimate, pipeline, units
from gallery.orchestrate.progress import Progress
from gallery.config import BuildConfig, RenderSettings
from gallery.render import cost

from ..conftest import ROOT, SHARED_MODELS, needs_shared, tiny_classifier


def _config(tmp_path, model, photos, **extra):
    return BuildConfig(model=str(model), preprocess="none", render=RenderSettings(size=16, steps=2),
                       images=(photos,), out=tmp_path / "site", cache=tmp_path / "cache", **extra)


@pytest.mark.slow
def test_the_plan_and_its_time_come_before_any_filter_is_rendered(setup, monkeypatch, capsys):
    tmp_path, model, photos = setup
    monkeypatch.setattr(estimate, "SMALL", 0.0)  # a tiny model is measured as a large one would be
    order = []
    real = Progress.start
    monkeypatch.setattr(Progress, "start", lambda self, uid, note="": (order.append(note), real(self, uid, note)))
    pipeline.build(_config(tmp_path, model, photos))
    err = capsys.readouterr().err
    plan = next(line for line in err.splitlines() if line.startswith("  plan: "))
    assert "11 filter images of 2 layers (16 px, 2 steps) and 1 photo (gradcam; caricatures at conv1, conv2)" in plan, plan
    assert "in this process (measured on conv2" in plan and ("under a minute" in plan or "about" in plan), plan
    assert err.index("  plan: ") < err.index("• run"), err  # before any unit started
    assert order and "warning: this build will take" not in err  # not a terminal, and short


def test_a_long_build_says_so_in_one_line_only_on_a_terminal():
    hours = estimate.Estimate(3 * 3600 + 600, 1e15, "block5_conv3", 1e-11)
    line = estimate.long_warning(hours, interactive=True)
    assert line == ("this build will take about 3 h 10 min; press Ctrl-C and add --filters 0:8 for a first "
                    "look in minutes")
    assert estimate.long_warning(hours, interactive=False) is None  # a script or CI is never held up
    assert estimate.long_warning(estimate.Estimate(1800, 1e14, "x", 1e-11), interactive=True) is None


def test_score_cam_is_weighed_by_the_forward_passes_it_runs(tmp_path, photo_dir):
    model = tiny_classifier()
    job = units.Job("f" * 32, RenderSettings(size=16, steps=2), "none", {"conv1": (0,)}, cam_layers=("conv2",),
                    methods=("gradcam", "scorecam"), ranks=2, input=(8, 8))
    from gallery.photos.sources import load_photos

    unit = units.photo_units(job, load_photos((photo_dir,)), None, True)[0]
    passes = dict(unit.passes(job, cost.Costs(model)))
    # conv2 has 5 channels: one padded batch of 32 masked photos, and the photo itself; then
    # each method's curves: the photo whole and blank, and 2 × 9 masked copies per class.
    assert passes["cam:conv2:scorecam"] / passes["cam:conv2:gradcam"] == (33 + 2 + 36) / (2 + 2 + 36)
    assert passes["baseline"] / passes["cam:conv2:gradcam"] == (2 + 18) / (2 + 2 + 36)  # one random order a photo


@pytest.mark.slow
def test_the_photo_pass_reports_progress_as_each_method_ends(setup, monkeypatch):
    tmp_path, model, photos = setup
    seen = []
    real = Progress.passed
    monkeypatch.setattr(Progress, "passed", lambda self, uid, part: (real(self, uid, part),
                                                                     seen.append((part, self.work_done(),
                                                                                  self.photos[0]))))
    pipeline.build(_config(tmp_path, model, photos, cam_methods=("gradcam", "scorecam")))
    parts = [part for part, _, _ in seen]
    assert parts == ["features", "predictions", "baseline", "cam:conv2:gradcam", "cam:conv2:scorecam",
                     "caricature:conv1", "caricature:conv2"], parts
    work = [w for _, w, photos_done in seen if photos_done == 0]
    assert len(work) == 7 and all(0 < a < b < 1 for a, b in zip(work, work[1:])), seen  # it moves while photos are 0/1


@needs_shared()
@pytest.mark.shared
@pytest.mark.slow
def test_a_new_users_first_command_shows_its_time_within_a_minute(tmp_path):
    """The full VGG16 gallery at the CPU default (the README's command, with the offline
    VGG16 of ../shared in place of the download): its plan and time within 60 s, before any
    filter image is rendered; stopped there."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    build = subprocess.Popen(
        [sys.executable, "build.py", "--model", str(SHARED_MODELS / "vgg16_hed_notop.keras"), "--preprocess", "caffe",
         "--out", str(tmp_path / "site"), "--cache", str(tmp_path / "cache")],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for line in build.stderr:
            lines.append(line.rstrip("\n"))
            if line.startswith("  plan: ") or time.monotonic() - start > 90:
                break
        seconds = time.monotonic() - start
    finally:
        build.send_signal(signal.SIGINT)
        build.wait(timeout=60)
    plan = lines[-1]
    steps = presets.preset("default", None)["steps"]  # 64, or 128 on a CPU with AMX
    assert plan.startswith(f"  plan: 4,224 filter images of 13 layers (128 px, {steps} steps)"), lines
    assert " h " in plan or "min" in plan, plan
    assert seconds < 60, (seconds, lines)
    assert not any("filter images" in line and "/4,224" in line for line in lines), lines  # nothing rendered yet
