"""The option table: the same command lines parse to the same configs as before it, and the
README's options table is the table's own."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

from ..conftest import DATA, ROOT

# Parse results of CASES as main's code at 7140cc3 (before the option table) gave them:
# `python -m tests.test_options` (now tests.cli.test_options) wrote this file there, from the repository root. Fields
# added to the configs since are not in it, and do not count as changes.
BEFORE = DATA / "cli_parses.json"

# Representative command lines: every flag, both spellings (--flag value, --flag=value), the
# presets and the overrides of a preset, and misuse caught by argparse and by the configs.
CASES = [
    [],
    ["--preset", "preview"],
    ["--preset", "high"],
    ["--preset=high", "--variants", "none"],
    ["--size", "64", "--steps", "10", "--scales", "0.25,0.5,1", "--batch", "4", "--precision", "float32"],
    ["--scales=1", "--precision=bfloat16", "--variants", "neuron,negative,neuron"],
    ["--model", "x.keras", "--weights", "w.h5", "--preprocess", "caffe", "--labels", "README.md",
     "--images", "README.md", "templates", "--out", "o", "--cache", "c"],
    ["--model=ResNet50", "--weights=none", "--preprocess=none"],
    ["--layers", "a, b,,c", "--filters", "0:64", "--cam-layers", "c", "--cam-method", "gradcam,scorecam,gradcam",
     "--top-k", "3", "--photo-pages", "all", "--examples", "4"],
    ["--filters", "5", "--photo-pages", "0", "--cam-method", "saliency,smoothgrad,guided-gradcam,cam,layercam"],
    ["--filters", "8:", "--photo-pages", "ALL", "--cam-method", "gradcam++"],
    ["--filters", "::2"],
    ["--seed", "7", "--param", "maco", "--transforms", "lucid", "--trajectory", "3"],
    ["--param", "pixel", "--transforms", "none"],
    ["--executor", "ray", "--ray-address", "auto", "--worker-cpus", "2", "--prune", "--unsafe", "--debug"],
    ["--backend", "jax", "--list-layers"],
    ["--cache-info", "--backend=tensorflow"],
    # misuse
    ["--size", "0"], ["--size", "8"], ["--steps", "x"], ["--scales", "0.5"], ["--scales", "1,0.5"], ["--scales", "a"],
    ["--variants", "foo"], ["--variants", ","], ["--cam-method", "lime"], ["--cam-method", ","], ["--preset", "best"],
    ["--layer", "x"], ["--seed", "-1"], ["--trajectory", "1"], ["--filters", "3:1"], ["--filters", "a"],
    ["--ray-address", "auto"], ["--labels", "missing.txt"], ["--images", "no/such"], ["--photo-pages", "-1"],
    ["--examples", "0"], ["--top-k", "0"], ["--layers", ","], ["--backend", "numpy"], ["--precision", "float16"],
    ["--executor", "dask"], ["--param", "rgb"], ["--transforms", "all"], ["--bogus"], ["--model"],
]
DEVICES = (None, "gpu")


def fields(config) -> dict[str, str]:
    """The config's fields by name (``render.X`` for its render settings), each as its repr."""
    import dataclasses

    found = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            found.update({f"{field.name}.{k}": v for k, v in fields(value).items()})
        else:
            found[field.name] = repr(value)
    return found


def parse(argv: list[str], device: str | None) -> dict[str, str] | str:
    """What ``argv`` becomes on ``device``: the config's fields, or the error it ends in."""
    from gallery import cli
    from gallery.errors import GalleryError
    from gallery.model import grad

    # The "before" was captured on a CPU without AMX; AMX's own defaults are tested in test_cli.
    saved, grad.accelerator = grad.accelerator, lambda: device
    saved_bf16, grad.cpu_bf16 = grad.cpu_bf16, lambda: False
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = cli.parser().parse_args(argv)
        return fields(cli.config_from(args, argv))
    except SystemExit as exc:
        # argparse words its list of choices differently across Python versions: left out
        return f"exit {exc.code}: {re.sub(r' [(]choose from .*?[)]', '', err.getvalue().strip())}"
    except GalleryError as exc:
        return f"GalleryError: {exc}"
    finally:
        grad.accelerator, grad.cpu_bf16 = saved, saved_bf16


def results() -> dict[str, dict[str, str] | str]:
    return {f"{device or 'cpu'} {json.dumps(argv)}": parse(argv, device) for argv in CASES for device in DEVICES}


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # README.md and templates/ are the existing paths the cases name
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")  # the default cache folder


def test_command_lines_parse_as_before(at_root):
    before = json.loads(BEFORE.read_text(encoding="utf-8"))
    now = results()
    assert list(now) == list(before)

    def same(was, is_):  # a field added since is no change; every field there was must be as it was
        if isinstance(was, str) or isinstance(is_, str):
            return was == is_
        return all(is_.get(name) == value for name, value in was.items())

    changed = {k: (before[k], now[k]) for k in now if not same(before[k], now[k])}
    assert not changed


def readme_options() -> str:
    """The README's options table: the lines from the one after ``## Options`` to the first blank."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Options\n\n", 1)[1].split("\n\n", 1)[0]


def test_the_readmes_options_table_is_the_option_tables_own():
    from gallery.options import markdown

    assert readme_options() == markdown(), "README's options table drifted: paste `python -m gallery.options` over it"


def test_help_states_each_presets_defaults_on_a_cpu_and_a_gpu():
    import dataclasses

    from gallery.cli import parser
    from gallery.config import BuildConfig, RenderSettings
    from gallery.options import OPTIONS
    from gallery.presets import preset

    shown = " ".join(parser().format_help().split())
    for option in OPTIONS:
        if option.preset:
            # A preset without the key leaves the field's own default (gallery.cli._fields).
            owner = RenderSettings if option.part == "render" else BuildConfig
            unset = {f.name: f.default for f in dataclasses.fields(owner)}[option.key]
            cpu, amx, gpu = (option.show(preset("default", device, bf16).get(option.key, unset))
                             for device, bf16 in ((None, False), (None, True), ("gpu", None)))
            said = (f"(default: {cpu})" if cpu == gpu == amx else
                    f"(default: {cpu} on a CPU{'' if amx == cpu else f' ({amx} with AMX)'}, {gpu} on a GPU)")
            assert said in shown, option.flag
    assert "(default: 1 on a CPU, 0.5,1 on a GPU)" in shown  # --scales, once stated as 0.5,1 everywhere


def test_every_option_fills_a_field_of_its_settings_and_presets_set_only_options():
    import dataclasses

    from gallery.config import BuildConfig, RenderSettings
    from gallery.options import OPTIONS
    from gallery.presets import PRESETS

    for option in OPTIONS:
        if option.part is not None:
            owner = RenderSettings if option.part == "render" else BuildConfig
            assert option.key in {f.name for f in dataclasses.fields(owner)}, option.flag
    preset_keys = {key for devices in PRESETS.values() for values in devices.values() for key in values}
    assert preset_keys == {option.key for option in OPTIONS if option.preset}


def test_the_build_keys_of_presets_are_the_option_tables_build_fields_and_leave_the_image_settings():
    """Which preset keys are the build's is declared once, by the dataclasses: the presets'
    split and the option table's agree, and a key the build gains never reaches RenderSettings."""
    from gallery import presets
    from gallery.config import RenderSettings
    from gallery.options import OPTIONS

    assert set(presets.BUILD_KEYS) == {o.key for o in OPTIONS if o.preset and o.part == "build"} != set()
    assert {o.key for o in OPTIONS if o.preset and o.part == "render"}.isdisjoint(presets.BUILD_KEYS)
    for name in presets.PRESETS:
        chosen = {**presets.preset(name, "gpu"), "examples": 4, "top_k": 3}  # build fields no preset sets yet
        assert RenderSettings(**presets.render_part(chosen)).size == chosen["size"]
        assert not set(presets.render_part(chosen)) & {"variants", "caricatures", "examples", "top_k"}


def test_every_table_of_methods_preprocessing_and_backends_names_the_same():
    from gallery import names
    from gallery.model import grad, preprocess
    from gallery.photos import cams, explain, saliency
    from gallery.site.pages import CAM_TITLES

    assert set(cams.METHODS) == set(names.CAM_METHODS)
    assert set(explain.METHODS) == set(CAM_TITLES) == set(names.METHODS)
    assert saliency.PIXEL_METHODS == names.PIXEL_METHODS
    assert tuple(preprocess.NAMES) == names.PREPROCESSING
    assert grad.BACKEND in names.BACKENDS


def test_the_option_table_is_keras_free():
    code = "import sys, gallery.options, gallery.names; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('keras', 'tensorflow', 'jax', 'torch')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


if __name__ == "__main__":
    os.chdir(ROOT)
    os.environ["XDG_CACHE_HOME"] = "/xdg"
    BEFORE.parent.mkdir(exist_ok=True)
    BEFORE.write_text(json.dumps(results(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(CASES) * len(DEVICES)} parse results written to {BEFORE}", file=sys.stderr)
