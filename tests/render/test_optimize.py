import numpy as np
import pytest

from gallery.model import grad
from gallery import visualize_filters
from gallery.config import RenderSettings
from gallery.render.optimize import FilterRenderer

from ..conftest import tiny_backbone, tiny_classifier


@pytest.mark.parametrize("param,transforms", [("fourier", "standard"), ("pixel", "none")])
def test_objective_rises_over_steps(param, transforms):
    model = tiny_classifier()
    reached = [
        FilterRenderer(model, "conv2", RenderSettings(size=16, steps=steps, parameterization=param,
                                                       transforms=transforms)).render([0, 1, 2, 3, 4])[1]
        for steps in (1, 30)
    ]
    assert np.all(reached[1] > reached[0] + 0.05), reached


def test_adams_momentum_is_the_loops_beta1_and_rises_at_every_value():
    """RenderSettings.momentum is Adam's beta1 in the compiled loop: a shorter memory takes
    another path (the depthwise models' default, 0.5), and the objective still rises."""
    model = tiny_classifier()
    images, reached = {}, {}
    for momentum in (0.0, 0.5, 0.9):
        renderer = FilterRenderer(model, "conv2", RenderSettings(size=16, steps=12, momentum=momentum))
        images[momentum], reached[momentum] = renderer.render([0, 1, 2])
    start = FilterRenderer(model, "conv2", RenderSettings(size=16, steps=1)).render([0, 1, 2])[1]
    assert all(np.all(r > start) for r in reached.values()), (start, reached)
    assert not np.array_equal(images[0.5], images[0.9]) and not np.array_equal(images[0.0], images[0.5])


@pytest.mark.slow
def test_images_are_uint8_of_the_requested_size_and_seeded():
    model = tiny_backbone()
    a = visualize_filters(model, "sep", [0, 2], size=20, steps=3, seed=4)
    b = visualize_filters(model, "sep", [0, 2], size=20, steps=3, seed=4)
    c = visualize_filters(model, "sep", [0, 2], size=20, steps=3, seed=5)
    assert a.dtype == np.uint8 and a.shape == (2, 20, 20, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_filter_image_does_not_depend_on_its_batch():
    model = tiny_classifier()
    together = visualize_filters(model, "conv1", [1, 3, 5], size=16, steps=4, batch=3)
    alone = visualize_filters(model, "conv1", [3], size=16, steps=4, batch=1)
    assert np.abs(together[1].astype(int) - alone[0].astype(int)).max() <= 1


@pytest.mark.slow
def test_dead_filters_still_get_a_picture():
    """A filter whose ReLU output is zero everywhere still rises through its pre-activation."""
    model = tiny_classifier()
    conv = model.get_layer("conv2")
    bias = conv.bias.numpy()
    bias[0] = -50.0  # dead on every input in [0, 255]
    conv.bias.assign(bias)
    renderer = FilterRenderer(model, "conv2", RenderSettings(size=16, steps=25, transforms="none"))
    _, start = FilterRenderer(model, "conv2", RenderSettings(size=16, steps=1, transforms="none")).render([0])
    images, end = renderer.render([0])
    assert end[0] > start[0] + 0.05
    assert images[0].std() > 1.0  # not a blank tile


def test_nested_layers_and_depthwise_render():
    from ..conftest import tiny_transfer

    model = tiny_transfer()
    out = visualize_filters(model, "inner/dw", [0, 7], size=16, steps=2)
    assert out.shape == (2, 16, 16, 3)


def test_out_of_range_filter_is_refused():
    renderer = FilterRenderer(tiny_classifier(), "conv1", RenderSettings(size=16, steps=1))
    with pytest.raises(IndexError, match="out of range"):
        renderer.render([6])


def test_stages_split_the_steps_coarse_to_fine():
    from gallery.render.schedule import stages

    assert stages(10, 128, (0.5, 1.0)) == [(64, 5), (128, 5)]
    assert stages(7, 100, (0.25, 0.5, 1.0)) == [(25, 2), (50, 2), (100, 3)]
    assert stages(1, 64, (0.5, 1.0)) == [(64, 1)]  # too few steps for a coarse stage
    assert stages(4, 20, (0.5, 1.0)) == [(16, 2), (20, 2)]  # never below 16 pixels


@pytest.mark.slow
def test_objective_rises_with_the_coarse_to_fine_schedule():
    model = tiny_backbone()
    settings = dict(size=32, scales=(0.5, 1.0))
    reached = [FilterRenderer(model, "sep", RenderSettings(steps=steps, **settings)).render([0, 1, 2])[1]
               for steps in (2, 40)]
    assert np.all(reached[1] > reached[0] + 0.05), reached


def _style_similarity(renderer, images, copies):
    """The mean Gram similarity of the saved images, in the features the filter reads."""
    from keras import ops

    from gallery.render.objectives import gram_similarity

    x = ops.convert_to_tensor(images.astype("float32") / 255.0)
    _, features = renderer._preactivation(x, ops.convert_to_tensor(np.zeros(len(images), "int32")))
    return float(np.mean(ops.convert_to_numpy(gram_similarity(features, copies))))


@pytest.mark.slow
def test_variants_negative_and_diversity():
    from gallery.render.objectives import VARIANTS, Variant

    model = tiny_classifier()
    settings = RenderSettings(size=16, steps=30, transforms="none")
    _, positive = FilterRenderer(model, "conv2", settings).render([0, 1])
    _, negative = FilterRenderer(model, "conv2", settings, variant="negative").render([0, 1])
    assert np.all(negative < positive - 0.1), (negative, positive)

    copies = VARIANTS["diversity"].copies
    renderer = FilterRenderer(model, "conv2", settings, variant="diversity")
    diverse, acts = renderer.render([0, 3])
    assert diverse.shape == (2 * copies, 16, 16, 3) and acts.shape == (2 * copies,)
    VARIANTS["same"] = Variant("same", VARIANTS["diversity"].objective, copies=copies)  # no penalty
    try:
        alike, _ = FilterRenderer(model, "conv2", settings, variant="same").render([0, 3])
    finally:
        del VARIANTS["same"]
    apart, together = (_style_similarity(renderer, images, copies) for images in (diverse, alike))
    assert apart < together - 0.05, (apart, together)


@pytest.mark.parametrize("trajectory,param", [(0, "fourier"), (2, "fourier"), (2, "maco")])
@pytest.mark.slow
def test_batches_halve_when_device_memory_runs_out(monkeypatch, trajectory, param):
    from gallery.orchestrate import units
    from gallery.orchestrate.work import Worker

    sizes, maps = [], []
    real = FilterRenderer.images_and_transparency  # what the worker calls: images it then scores itself

    def limited(self, indices, on_step=None, **snapshots):
        sizes.append(len(indices))
        if len(indices) > 2:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.5GiB")
        found = real(self, indices, on_step, **snapshots)
        maps.extend([] if found[1] is None else found[1])
        return found

    monkeypatch.setattr(FilterRenderer, "images_and_transparency", limited)
    job = units.Job("fp", RenderSettings(size=16, steps=16, batch=8, parameterization=param), "none",
                    {"conv2": (0, 1, 2, 3, 4)}, trajectory=trajectory)
    (unit,) = units.filter_units(job)
    result = Worker(tiny_classifier(), job).run(units.Task(0, unit, frozenset(e.key for e in unit.entries)))
    assert sorted(result.produced) == sorted(e.key for e in unit.entries)
    assert sizes == [5, 3, 2, 1, 2]  # the span halves until each part fits: 5 → 3 + 2, 3 → 2 + 1
    tiles = [result.produced[e.key][1] for e in unit.entries if e.about["kind"] == "filter"]
    trajectories = [result.produced[e.key][1] for e in unit.entries if e.about["kind"] == "trajectory"]
    assert len(trajectories) == (5 if trajectory else 0)
    for tile, found in zip(tiles, trajectories):  # the parts' snapshots joined filter by filter
        assert [s["step"] for s in found["snapshots"]] == [0, 16]
        assert found["snapshots"][-1]["activation"] == tile["activation"]
    # The parts' transparency maps joined filter by filter: each filter's scale is its own map's.
    scales = [result.produced[e.key][1]["scale"] for e in unit.entries if e.about["kind"] == "transparency"]
    assert scales == ([pytest.approx(float(np.percentile(m, 80))) for m in maps] if param == "maco" else [])
    assert len(scales) == (5 if param == "maco" else 0)


needs_ahead = pytest.mark.skipif(not grad.compiles_ahead(), reason="only JAX compiles ahead of the first call")


@needs_ahead
@pytest.mark.parametrize("param", ["fourier", "maco"])  # maco's loop also carries its transparency map
def test_prepared_programs_serve_every_render_call(param):
    settings = RenderSettings(size=16, steps=20, batch=3, parameterization=param)  # chunks of 8, 8 and 4
    lazy = FilterRenderer(tiny_classifier(), "conv2", settings)
    lazy_maps = lazy.images_and_transparency([0, 1, 4])[1]
    lazy = lazy.render([0, 1, 4])
    renderer = FilterRenderer(tiny_classifier(), "conv2", settings)
    renderer.prepare([3])

    def not_prepared(*args):
        raise AssertionError("a program was compiled on first call, not ahead")

    for program in [*renderer._loops.values(), renderer._score]:
        program._jit = not_prepared
    ahead = renderer.render([0, 1, 4])
    np.testing.assert_array_equal(ahead[0], lazy[0])
    np.testing.assert_array_equal(ahead[1], lazy[1])
    maps = renderer.images_and_transparency([0, 1, 4])[1]
    assert (maps is None) == (lazy_maps is None) == (param != "maco")
    if maps is not None:
        np.testing.assert_allclose(maps, lazy_maps, rtol=1e-5)


@needs_ahead
@pytest.mark.slow
def test_compiling_ahead_in_threads_gives_the_same_tiles(tmp_path, monkeypatch):
    from gallery.orchestrate import units
    from gallery.orchestrate.work import Worker

    selection = {"conv1": (0, 1, 2, 3, 4), "conv2": (1, 2)}
    settings = RenderSettings(size=16, steps=4, batch=4, scales=(1.0,))  # conv1: batches of 4 and 1
    job = units.Job("fp", settings, "none", selection, variants=("diversity",))

    def build(folder):
        worker = Worker(tiny_classifier(), job)
        try:
            return [worker.run(units.Task(i, u, frozenset(e.key for e in u.entries))).produced
                    for i, u in enumerate(units.filter_units(job))]
        finally:
            worker.close()

    lazy = build("lazy")
    prepared, real = [], FilterRenderer.prepare

    def recorded(self, sizes):
        prepared.append((self.variant.name, self.layer_name, sorted(sizes)))
        return real(self, sizes)

    monkeypatch.setattr(FilterRenderer, "prepare", recorded)
    monkeypatch.setattr(grad, "accelerator", lambda: "gpu")
    assert build("ahead") == lazy
    # Per (variant, layer), its batch sizes in filters: diversity's 4 copies make 1 filter a batch.
    assert sorted(prepared) == [("channel", "conv1", [1, 4]), ("channel", "conv2", [2]),
                                ("diversity", "conv1", [1]), ("diversity", "conv2", [1])]


@pytest.mark.slow
def test_visualize_filters_with_no_settings_gives_the_default_builds_tiles(monkeypatch):
    from gallery.presets import PRESETS, render_part

    monkeypatch.setattr(grad, "accelerator", lambda: None)  # the CPU default, on any machine
    monkeypatch.setattr(grad, "cpu_bf16", lambda: False)
    model = tiny_classifier()
    defaults = render_part(PRESETS["default"]["cpu"])
    expected = FilterRenderer(model, "conv2", RenderSettings(**defaults)).render([0, 3])[0]
    np.testing.assert_array_equal(visualize_filters(model, "conv2", [0, 3]), expected)
