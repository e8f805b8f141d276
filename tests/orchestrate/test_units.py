"""Work units, their order, exact merging of top photos, and a cost-weighted ETA."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from gallery.orchestrate import units
from gallery.orchestrate.progress import Progress, about
from gallery.config import RenderSettings
from gallery.photos.examples import TopExamples, peaks


def _job(batch=4, variants=()):
    return units.Job("f" * 32, RenderSettings(size=16, steps=4, batch=batch), "none",
                     {"a": tuple(range(10)), "b": tuple(range(3)), "c": tuple(range(6))}, variants=variants)


def test_spans_come_from_the_settings_and_a_first_look_comes_first():
    plan = units.filter_units(_job(batch=4, variants=("diversity",)))
    names = [(u.variant, u.layer, u.indices) for u in plan]
    assert names[:3] == [("channel", "a", (0, 1, 2, 3)), ("channel", "b", (0, 1, 2)), ("channel", "c", (0, 1, 2, 3))]
    assert [u.first_look for u in plan[:4]] == [True, True, True, False]
    assert names[3:6] == [("channel", "a", (4, 5, 6, 7)), ("channel", "a", (8, 9)), ("channel", "c", (4, 5))]
    diverse = [u for u in plan if u.variant == "diversity"]
    assert all(len(u.indices) == 1 and u.images == 4 for u in diverse)  # batch 4 holds one filter's 4 copies
    assert plan.index(diverse[0]) > max(plan.index(u) for u in plan if u.variant == "channel")
    keys = [e.key for u in plan for e in u.entries]
    assert len(keys) == len(set(keys)) == (10 + 3 + 6) * 5
    # The same settings always cut the same units: nothing depends on who runs them.
    assert [u.entries for u in units.filter_units(_job(batch=4, variants=("diversity",)))] == [u.entries for u in plan]


class _Cache:
    def __init__(self, entries):
        self.entries, self.put_keys = dict(entries), []

    def get(self, key, require=None):
        return self.entries.get(key)

    def put(self, key, data, meta=None, about=None):
        self.put_keys.append(key)
        self.entries[key] = (data, meta or {})


def test_a_unit_that_lost_one_entry_runs_and_writes_only_that_one():
    unit = units.filter_units(_job())[0]
    kept = {e.key: (b"old", {"activation": 1.0}) for e in unit.entries[1:]}
    cache = _Cache(kept)
    found = units.lookup(unit, cache)
    assert set(found) == set(kept)
    task = units.Task(0, unit, frozenset(e.key for e in unit.entries) - set(found))
    assert task.parts == {"render"}
    produced = {e.key: (b"new", {"activation": 2.0}) for e in unit.entries}
    settled = units.store(task, produced, found, cache)
    assert cache.put_keys == [unit.entries[0].key]
    assert settled[unit.entries[1].key] == (b"old", {"activation": 1.0})


def test_every_entry_has_a_slot_of_its_own_named_for_its_kind(photo_dir):
    """Slots address a unit's results between its run, the cache and the build's state: two
    entries of one unit at one slot would overwrite each other (a photo's peaks and its feature
    sheet at a layer have the same fields), and a slot's kind is the one its record states."""
    from gallery.channels import Channels
    from gallery.photos.sources import load_photos

    render = RenderSettings(size=16, steps=4, batch=4, parameterization="maco")
    job = units.Job("f" * 32, render, "none", {"conv1": (0, 1), "conv2": (0,)}, variants=("diversity",),
                    cam_layers=("conv2",), methods=("gradcam", "saliency"), ranks=2, input=(8, 8), trajectory=2,
                    channels=Channels.of(4), caricatures=("conv2",), randomize=1)
    plan = [*units.photo_units(job, load_photos([photo_dir]), None, classify=True), *units.filter_units(job)]
    for unit in plan:
        assert len({e.slot for e in unit.entries}) == len(unit.entries), unit.name
    assert all(e.slot.kind == e.about["kind"] for unit in plan for e in unit.entries)
    assert {e.slot.kind for unit in plan for e in unit.entries} == {  # every kind of entry there is
        "filter", "transparency", "bands", "trajectory", "photo", "peaks", "features", "caricature", "predictions",
        "baseline", "cam", "contributions", "sanity"}

@settings(max_examples=60, deadline=None)
@given(st.permutations(range(12)), st.integers(1, 5))
def test_top_photos_merge_exactly_in_any_order(order, k):
    rng = np.random.default_rng(7)
    maps = np.round(rng.normal(size=(12, 3, 3, 4)), 1)  # rounded, so ties happen
    maps[5] = maps[2]  # and an exact tie between two photos
    reference, shuffled = TopExamples(k), TopExamples(k)
    for photo in range(12):
        reference.add("conv", photo, peaks(maps[photo]))
    for photo in order:
        shuffled.add("conv", photo, peaks(maps[photo]))
    for channel in range(4):
        assert shuffled.top("conv", channel) == reference.top("conv", channel)
        best = maps.reshape(12, 9, 4).max(axis=1)[:, channel]
        expected = sorted(range(12), key=lambda p: (-best[p], p))[:k]
        assert [t["photo"] for t in reference.top("conv", channel)] == expected


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _two_layers(clock, prior=None):
    # Two layers with a coarse and a fine stage each, 2 steps a stage. A shallow step costs 10
    # FLOPs at the fine canvas, a deep one 100; coarse steps cost a quarter.
    def spec(layer, fine):
        return [((layer, 8), fine / 4, 2), ((layer, 16), fine, 2)], 4, 0

    return Progress({0: spec("shallow", 10.0), 1: spec("deep", 100.0), 2: spec("deep", 100.0)},
                    cached_images=0, total_images=12, cached_photos=0, total_photos=0, stream=_Null(),
                    clock_fn=clock, prior=prior)


def test_the_eta_weighs_work_by_cost_and_waits_for_each_stages_own_rate():
    clock = _Clock()
    progress = _two_layers(clock)
    assert progress.remaining() is None
    progress.start(0)
    clock.t = 1.0
    progress.steps(0, 1)  # the first report of a stage carries its compiling: set apart
    clock.t = 1.5
    progress.steps(0, 2)  # shallow coarse: 0.5 s per 2.5 FLOPs
    clock.t = 3.5
    progress.steps(0, 4)  # shallow fine: 2 s per 20 FLOPs, its first report
    progress.finish(0)
    assert abs(progress.work_done() - 25 / 525) < 1e-12
    # The deep layer's work could only borrow a shallow rate, off by a large factor: no figure yet.
    assert progress.remaining() is None
    assert progress.status()["text"] == "rendering: 4 of 12 filter images, estimating the time left\u2026"
    assert "ETA estimating\u2026" in progress.line()
    progress.start(1)
    clock.t = 5.5
    progress.steps(1, 1)  # deep coarse, first report: 2 s for 25 FLOPs (compiling)
    clock.t = 6.5
    progress.steps(1, 2)  # 1 s for 25 FLOPs
    assert progress.remaining() is None  # the deep fine stage, most of what is left, is still unknown
    clock.t = 8.5
    progress.steps(1, 3)  # deep fine, first report: 2 s for 100 FLOPs (compiling)
    clock.t = 9.5
    progress.steps(1, 4)  # 1 s for 100 FLOPs
    # What is left (unit 2) at the deep stages' own rates, one worker busy all along.
    assert abs(progress.remaining() - (50 / 25 + 200 / 100)) < 1e-9
    assert progress.status()["text"] == "rendering: 4 of 12 filter images, under a minute left"


def test_a_calibration_times_the_stages_not_run_yet_and_only_its_own_layers_count_as_known():
    clock = _Clock()
    progress = _two_layers(clock, prior=(0.5, 0.01, 3.0, ("deep",)))
    # Every FLOP at the calibrated rate, half a second per image-step (3 units × 4 steps × 4
    # images), and a compile for each of the four stages.
    assert abs(progress.remaining() - (525 * 0.01 + 48 * 0.5 + 4 * 3.0)) < 1e-9
    # Calibrated on the shallow layer alone, the deep one (most of the work) is a guess.
    assert _two_layers(_Clock(), prior=(0.5, 0.01, 3.0, ("shallow",))).remaining() is None


def test_one_hundred_percent_means_done_and_the_rate_counts_like_with_like():
    clock = _Clock()
    exact = ([(("first", 16), 1.0, 1)], 4, 0, False)  # solved in closed form: almost free
    optimized = ([(("deep", 16), 100.0, 4)], 4, 0, True)
    progress = Progress({0: exact, 1: optimized}, cached_images=0, total_images=8, cached_photos=0,
                        total_photos=0, stream=_Null(), clock_fn=clock)
    progress.start(0)
    clock.t = 0.1
    progress.finish(0)
    assert progress.rate() is None  # four free images are not a rate of rendering
    progress.start(1)
    for step in range(1, 5):
        clock.t = 0.1 + 15 * step
        progress.steps(1, step)
    # Every step has run, but the unit has not finished (its images are being scored).
    assert progress.work_done() < 1 and "100.0%" not in progress.line() and " 99.9%" in progress.line()
    assert "ETA 00:00" not in progress.line()
    progress.finish(1)
    assert progress.work_done() == 1 and "100.0% of the work" in progress.line() and "ETA done" in progress.line()
    assert abs(progress.rate() - 4.0) < 1e-9  # four optimized images in one minute; the free ones left out


def test_parallel_workers_divide_the_time_left():
    clock = _Clock()
    spec = {i: ([(("layer", 16), 10.0, 1)], 1, 0) for i in range(6)}
    progress = Progress(spec, cached_images=0, total_images=6, cached_photos=0, total_photos=0, stream=_Null(),
                        clock_fn=clock)
    clock.t = 10.0
    progress.finish(0, seconds=10.0)  # two workers, each 10 s on a unit, side by side
    progress.finish(1, seconds=10.0)
    assert abs(progress.remaining() - 4 * 10.0 / 2) < 1e-9


def test_time_left_in_words():
    assert about(None) == "time left not known yet"
    assert about(30) == "under a minute left"
    assert about(7800) == "about 2 h 10 min left"
    assert about(660) == "about 11 min left"


class _Null:
    def write(self, text):
        pass

    def flush(self):
        pass


def test_photo_units_travel_with_their_bytes_not_their_paths(tmp_path, photo_dir):
    from gallery.orchestrate.cluster import portable
    from gallery.orchestrate.work import Worker
    from gallery.photos.sources import load_photos

    from ..conftest import tiny_classifier

    photos = load_photos([photo_dir])
    job = units.Job("f" * 32, RenderSettings(size=16, steps=2), "none", {"conv1": (0,)}, cam_layers=("conv2",),
                    methods=("gradcam",), ranks=2, input=(8, 8))
    (unit,) = units.photo_units(job, photos, None, classify=True)
    task = portable(units.Task(0, unit, frozenset(e.key for e in unit.entries)))
    for path in photo_dir.iterdir():
        path.unlink()  # a worker on another machine has no such files
    result = Worker(tiny_classifier(), job).run(task)
    assert not result.skipped
    assert set(result.produced) == {e.key for e in unit.entries}
