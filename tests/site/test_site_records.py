"""The site model (gallery.site.records): a manifest read into the types writes back the
same bytes; a malformed one is refused in one line naming the value and what was expected;
an older one (without the keys later versions added) still reads; the site renders from a
manifest alone, without Keras, and templates get plain data.

tests/data/tiny_manifest.json is a real build's: the tiny classifier, one photo, MACO
(transparency), --trajectory 2, --variants negative, --randomize 1, --curve-points 2, with a
first layer's kernel sheet and collages. Rebuild it when the file's format changes on purpose.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gallery.site import records
from gallery.site.folder import SiteFolder
from gallery.site.pages import SiteWriter
from gallery.site.records import Manifest, ManifestError, plain, read

from ..conftest import DATA

FIXTURE = DATA / "tiny_manifest.json"


def _text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


def _data() -> dict:
    return json.loads(_text())


def _dump(data) -> str:
    return json.dumps(data, indent=1)  # as SiteWriter writes manifest.json


def test_a_real_manifest_round_trips_through_the_types_byte_for_byte():
    manifest = read(_data())
    assert isinstance(manifest, Manifest)
    assert isinstance(manifest.layers[0].filters[0], records.Filter)
    assert isinstance(manifest.photos[0].cams[0].faithfulness.random, records.RandomCurves)
    assert manifest.photos[0].cams[0].class_ == _data()["photos"][0]["cams"][0]["class"]
    assert _dump(plain(manifest)) == _text()


def test_the_fixture_holds_every_kind_of_record():
    """So the round trip above covers them all: none is left empty or null throughout."""
    data = _data()
    layer, photo = data["layers"][0], data["photos"][0]
    f = layer["filters"][0]
    assert layer["kernels"] and layer["collage"] and f["inputs"] == [] and data["layers"][1]["filters"][0]["inputs"]
    assert f["top"] and f["variants"] and f["trajectory"]["snapshots"] and f["transparency"]
    assert photo["features"] and photo["cams"][0]["faithfulness"]["random"] and photo["predictions"]
    assert photo["contributions"][0]["channels"] and photo["sanity"] and data["sanity"] and data["pool"]
    assert data["table"][0]["then"] is not None and data["versions"] and data["settings"]


def test_keys_left_out_while_none_keep_their_place_when_present():
    """A filter's ``bands`` and the model's ``channels`` and ``tile_side`` are written only
    for models that are not plain RGB at the size asked for; then they come last, in order."""
    data = _data()
    data["model"]["channels"] = {"count": 1, "rgb": None, "about": "1 channel (grey)", "photo_note": "luminance",
                                 "fill_note": "mid-grey"}
    data["model"]["tile_side"] = 8
    data["layers"][0]["filters"][1]["bands"] = "tiny/layers/conv1/1.channels.png"
    manifest = read(data)
    assert manifest.model.tile_side == 8 and manifest.layers[0].filters[1].bands.endswith(".channels.png")
    assert _dump(plain(manifest)) == _dump(data)
    assert "bands" not in plain(manifest.layers[0].filters[0]) and "tile_side" not in plain(read(_data()).model)


def _set(data: dict, path: tuple, value):
    node = data
    for step in path[:-1]:
        node = node[step]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


_DROP = object()


@pytest.mark.parametrize("path,value,message", [
    (("layers", 0, "filters", 1, "peak"), "high",
     "manifest.layers[0].filters[1].peak: expected a number, got 'high'"),
    (("layers", 1, "channels"), True, "manifest.layers[1].channels: expected a whole number, got True"),
    (("layers", 0, "filters", 0, "index"), None,
     "manifest.layers[0].filters[0].index: expected a whole number, got None"),
    (("photos", 0, "cams", 0, "class"), "0", "manifest.photos[0].cams[0].class: expected a whole number, got '0'"),
    (("model", "name"), ["tiny"], "manifest.model.name: expected a string, got ['tiny']"),
    (("layers",), {"conv1": []}, "manifest.layers: expected a list, got {'conv1': []}"),
    (("pool", 0), "cat", "manifest.pool[0]: expected an object (PoolPhoto), got 'cat'"),
    (("layers", 0, "filters", 0, "pending"), 0, "manifest.layers[0].filters[0].pending: expected true or false, got 0"),
    (("versions", "keras"), 3, "manifest.versions.keras: expected a string, got 3"),
    (("page",), _DROP, "manifest: expected a key 'page', got an object with keys 'schema', 'model', 'layers',"),
])
def test_a_malformed_manifest_is_refused_in_one_line_naming_the_value(path, value, message):
    with pytest.raises(ManifestError) as caught:
        read(_set(_data(), path, value))
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text


def test_a_long_value_is_cut_short_in_the_message():
    with pytest.raises(ManifestError) as caught:
        read(_set(_data(), ("command",), list(range(100))))
    assert len(str(caught.value)) < 120 and str(caught.value).endswith("...")


def test_an_older_manifest_without_the_keys_added_since_still_reads():
    """The keys later versions added, dropped: they read as what a manifest without them meant."""
    data = _data()
    for key in ("sanity", "status"):
        del data[key]
    del data["model"]["identity"]
    layer = data["layers"][0]
    for key in ("collage", "kernels", "activation", "linear", "sparse"):
        del layer[key]
    for key in ("sparse", "fires_on", "variants", "trajectory", "transparency"):
        del layer["filters"][0][key]
    photo = data["photos"][0]
    del photo["sanity"], photo["pending"], photo["features"][0]["caricature"]
    for key in ("x", "deletion", "insertion", "random"):  # schema 5: faithfulness without curves
        del photo["cams"][0]["faithfulness"][key]
    del photo["cams"][1]["faithfulness"]  # schema 4: none
    manifest = read(data)
    f = manifest.layers[0].filters[0]
    assert (manifest.sanity, manifest.status, manifest.model.identity) == ((), None, None)
    assert manifest.layers[0].kernels is None and manifest.layers[0].linear is False
    assert (f.sparse, f.fires_on, f.variants, f.trajectory, f.transparency) == (False, None, (), None, None)
    assert manifest.photos[0].cams[0].faithfulness.deletion is None and manifest.photos[0].cams[1].faithfulness is None
    assert plain(manifest)["layers"][0]["filters"][0]["variants"] == []


def _folder(tmp_path: Path, others: dict[str, str]) -> SiteFolder:
    folder = SiteFolder(tmp_path)
    for name, text in others.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(text, encoding="utf-8")
        folder.models[name] = {"identity": None, "files": {f"{name}/manifest.json"}}
    return folder


def _renamed(name: str) -> dict:
    data = _data()
    data["model"]["name"] = data["model"]["slug"] = name
    return data


def test_another_models_manifest_enters_the_index_as_records(tmp_path):
    current = read(_data())
    folder = _folder(tmp_path, {"another": _dump(_renamed("another"))})
    found = folder.manifests(current)
    assert [m.model.name for m in found] == ["another", "tiny"] and found[1] is current
    assert isinstance(found[0], Manifest) and _dump(plain(found[0])) == _dump(_renamed("another"))


def test_a_malformed_neighbour_is_left_out_of_the_index_and_said_once(tmp_path, capsys):
    broken = _set(_renamed("broken"), ("layers", 0, "filters", 0, "peak"), "high")
    folder = _folder(tmp_path, {"broken": _dump(broken), "garbled": "{not json", "other": _dump(_renamed("other"))})
    for _ in range(2):  # every refresh reads it again
        assert [m.model.name for m in folder.manifests(read(_data()))] == ["other", "tiny"]
    said = capsys.readouterr().err.splitlines()
    assert said == ["left 'broken' out of the index: broken/manifest.json.layers[0].filters[0].peak: "
                    "expected a number, got 'high'"]


def test_a_neighbour_is_parsed_once_per_version_of_its_file(tmp_path, monkeypatch):
    from gallery.site import folder as module

    parsed = []
    monkeypatch.setattr(module, "read", lambda data, where: parsed.append(where) or read(data, where))
    folder = _folder(tmp_path, {"other": _dump(_renamed("other"))})
    for _ in range(3):
        folder.manifests(read(_data()))
    changed = _renamed("other")
    changed["model"]["name"] = "Other, rebuilt"
    (tmp_path / "other" / "manifest.json").write_text(_dump(changed), encoding="utf-8")
    assert [m.model.name for m in folder.manifests(read(_data()))] == ["Other, rebuilt", "tiny"]
    assert parsed == ["other/manifest.json"] * 2


class _NoTiles:
    def get(self, key):
        raise AssertionError(f"no tile was asked for, yet {key} was")


def test_the_site_renders_from_a_manifest_alone_and_writes_it_back_unchanged(tmp_path):
    """Every page of the fixture renders from plain data (no tiles are published: ``files`` is
    empty), and the manifest.json written is the fixture's bytes."""
    folder = SiteFolder(tmp_path)
    folder.claim()
    written = SiteWriter(folder, _NoTiles()).write(read(_data()), {})
    assert written["pages"] == len(list(tmp_path.rglob("*.html"))) == 9  # index, model, 2 layers, 4 filters, 1 photo
    assert (tmp_path / "tiny" / "manifest.json").read_text(encoding="utf-8") == _text()
    page = (tmp_path / "tiny" / "layers" / "conv2" / "0.html").read_text(encoding="utf-8")
    assert "trajectory" in page and "negative" in page


def test_templates_get_plain_data_only(tmp_path, monkeypatch):
    """Each page's context is JSON as it stands: no record, no object a template could call."""
    from gallery.site import pages

    seen = []
    real = pages.pages
    monkeypatch.setattr(pages, "pages", lambda manifest, manifests: seen.extend(real(manifest, manifests)) or seen)
    folder = SiteFolder(tmp_path)
    folder.claim()
    pages.SiteWriter(folder, _NoTiles()).write(read(_data()), {})
    assert len(seen) == 9
    for _, _, context in seen:
        assert not _records_in(context), _records_in(context)
        json.dumps(context)


def _records_in(value) -> list:
    if isinstance(value, dict):
        return [r for v in value.values() for r in _records_in(v)]
    if isinstance(value, list):
        return [r for v in value for r in _records_in(v)]
    return [] if isinstance(value, (str, int, float, bool, type(None))) else [type(value).__name__]


def test_plain_leaves_the_records_it_is_given_alone():
    manifest = read(_data())
    before = copy.deepcopy(manifest)
    plain(manifest)["layers"][0]["filters"].clear()
    assert manifest == before
