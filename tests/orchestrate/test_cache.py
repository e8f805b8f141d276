import io
import json
import os
import shutil
import threading
import tomllib

import pytest

from gallery.orchestrate import legacy
from gallery.orchestrate.cache import MAX_RECORD, Cache, digest, make_key, number, seal, write_atomic

from ..conftest import ROOT


def test_roundtrip_and_keys(tmp_path):
    cache = Cache(tmp_path)
    key = make_key(kind="filter", layer="a", filter=1, size=8)
    assert key == make_key(size=8, filter=1, layer="a", kind="filter")
    assert key != make_key(kind="filter", layer="a", filter=2, size=8)
    assert cache.get(key) is None
    cache.put(key, b"png-bytes", {"activation": 1.5})
    assert cache.get(key) == (b"png-bytes", {"activation": 1.5})


def test_truncated_payload_is_detected_and_dropped(tmp_path, capsys):
    cache = Cache(tmp_path)
    key = make_key(x=1)
    cache.put(key, b"0123456789")
    payload = next(tmp_path.rglob("*.bin"))
    payload.write_bytes(b"01234")
    assert cache.get(key) is None
    assert cache.damaged == 1 and not payload.exists()
    assert "damaged" in capsys.readouterr().err


def test_garbage_record_is_damage_not_a_crash(tmp_path):
    cache = Cache(tmp_path)
    key = make_key(x=2)
    cache.put(key, b"data")
    next(tmp_path.rglob("*.json")).write_text("{not json")
    assert cache.get(key) is None and cache.damaged == 1


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    write_atomic(target, b"abc")
    write_atomic(target, b"abcd")
    assert target.read_bytes() == b"abcd"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def _files(root, key):
    folder = root / "objects" / key[:2]
    return folder / f"{key}.bin", folder / f"{key}.json"


def test_altered_metadata_is_damage(tmp_path, capsys):
    cache = Cache(tmp_path)
    key = make_key(x=3)
    cache.put(key, b"tile", {"activation": 18.31}, about={"kind": "filter"})
    record = _files(tmp_path, key)[1]
    record.write_text(record.read_text().replace("18.31", "98.31"))
    assert Cache(tmp_path).get(key, require={"activation": number}) is None
    assert "does not match its digest" in capsys.readouterr().err
    assert not record.exists()


def test_a_record_without_a_required_field_is_damage_not_a_key_error(tmp_path):
    cache = Cache(tmp_path)
    key = make_key(x=4)
    cache.put(key, b"tile", {"activation": 1.0})
    record = _files(tmp_path, key)[1]
    data = json.loads(record.read_text())
    data["meta"] = {"activaton": 1.0}
    data["digest"] = seal(key, b"tile", data["meta"], data["about"])  # resealed by hand: the seal alone cannot tell
    record.write_text(json.dumps(data))
    reader = Cache(tmp_path)
    assert reader.get(key, require={"activation": number}) is None and reader.damaged == 1


@pytest.mark.parametrize("legacy", [1, 2])
def test_records_of_older_formats_are_recomputed_not_resealed(tmp_path, legacy, capsys):
    """Format 1 sealed the payload alone, format 2 not the key: neither is trusted (issue 20, item 21)."""
    cache = Cache(tmp_path)
    key = make_key(x=5)
    cache.put(key, b"tile", {"activation": 2.5})
    record = _files(tmp_path, key)[1]
    data = json.loads(record.read_text())
    data["meta"] = {"activation": 99999.0}  # an edit the old seal cannot see
    if legacy == 1:
        data.pop("format")
        data["digest"] = digest(b"tile")
    else:
        data["format"] = 2
        data["digest"] = digest(digest(b"tile").encode("ascii") + json.dumps(
            {"meta": data["meta"], "about": data["about"]}, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    record.write_text(json.dumps(data))
    reader = Cache(tmp_path)
    assert reader.get(key) is None and reader.outdated == 1 and not record.exists()
    assert "damaged" not in capsys.readouterr().err  # summed up by the build in one line, not one per entry


def _swap(root, a, b):
    """Exchange two entries' files, payload and record together, as a person moving files might."""
    for x, y in zip(_files(root, a), _files(root, b)):
        tmp = x.with_suffix(".swap")
        x.rename(tmp)
        y.rename(x)
        tmp.rename(y)


def test_entries_swapped_payload_and_record_together_are_damage(tmp_path, capsys):
    cache = Cache(tmp_path)
    a, b = make_key(kind="filter", filter=0), make_key(kind="filter", filter=1)
    cache.put(a, b"tile-a", {"activation": 1.0, "peak": 2.0}, about={"kind": "filter"})
    cache.put(b, b"tile-b", {"activation": 3.0, "peak": 4.0}, about={"kind": "filter"})
    _swap(tmp_path, a, b)
    reader = Cache(tmp_path)
    assert reader.get(a) is None and reader.get(b) is None and reader.damaged == 2
    assert "key does not match its digest" in capsys.readouterr().err
    reader.put(a, b"tile-a", {"activation": 1.0, "peak": 2.0})
    assert Cache(tmp_path).get(a) == (b"tile-a", {"activation": 1.0, "peak": 2.0})


def test_an_oversized_payload_is_refused_unread(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    key = make_key(x=11)
    cache.put(key, b"tile", {"activation": 1.0})
    payload = _files(tmp_path, key)[0]
    os.truncate(payload, 64 << 30)  # sparse: 64 GiB on paper, nothing on disk
    reads = []
    real_fdopen = os.fdopen

    class Spy(io.BufferedReader):
        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Spy(real_fdopen(fd, "rb", buffering=0))
                        if mode == "rb" else real_fdopen(fd, mode, *a, **k))
    reader = Cache(tmp_path)
    assert reader.get(key) is None and reader.damaged == 1 and not payload.exists()
    assert all(0 <= n <= MAX_RECORD + 1 for n in reads), reads  # the record, never the payload whole


def test_a_fifo_in_the_cache_is_damage_and_never_blocks(tmp_path, capsys):
    cache = Cache(tmp_path)
    cache.claim()
    key, other = make_key(x=12), make_key(x=13)
    cache.put(key, b"tile", about={"kind": "filter"})
    cache.put(other, b"tile", about={"kind": "filter"})
    record = _files(tmp_path, key)[1]
    record.unlink()
    os.mkfifo(record)
    lone = _files(tmp_path, make_key(x=14))[1]
    lone.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(lone)
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        report=Cache(tmp_path).report(), got=Cache(tmp_path).get(key)), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "a FIFO in the cache blocked the reader"
    assert result["got"] is None
    assert " 1 entries" in result["report"]  # the intact entry alone; neither FIFO is an entry


def test_cache_info_does_not_count_a_linked_record(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.claim()
    key = make_key(x=15)
    cache.put(key, b"tile", about={"kind": "filter"})
    outside = tmp_path / "outside.json"
    record = _files(tmp_path / "cache", key)[1]
    outside.write_bytes(record.read_bytes())
    linked = _files(tmp_path / "cache", make_key(x=16))[1]
    linked.parent.mkdir(parents=True, exist_ok=True)
    linked.symlink_to(outside)
    assert cache.info()["kinds"] == {"filter": [1, len(b"tile") + record.stat().st_size]}
    assert Cache(tmp_path / "cache").get(make_key(x=16)) is None and outside.exists()


@pytest.mark.parametrize("damage", ["record is a folder", "payload is a folder", "shard is a file",
                                    "record is a link", "objects is a file"])
def test_structural_damage_heals(tmp_path, damage, capsys):
    cache = Cache(tmp_path)
    key = make_key(x=6)
    cache.put(key, b"tile", {"activation": 1.0})
    payload, record = _files(tmp_path, key)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.json"
    outside.write_text(record.read_text())
    if damage == "record is a folder":
        record.unlink()
        (record / "x").mkdir(parents=True)
    elif damage == "payload is a folder":
        payload.unlink()
        payload.mkdir()
    elif damage == "shard is a file":
        shutil.rmtree(record.parent)
        record.parent.write_text("oops")
    elif damage == "record is a link":
        record.unlink()
        record.symlink_to(outside)
    else:
        shutil.rmtree(tmp_path / "objects")
        (tmp_path / "objects").write_text("oops")
    again = Cache(tmp_path)
    assert again.get(key) is None  # damage or a miss, never an exception
    again.put(key, b"tile", {"activation": 1.0})
    assert Cache(tmp_path).get(key) == (b"tile", {"activation": 1.0})
    assert outside.read_text()  # the link's target was never touched
    assert again.info()["kinds"]


def test_cache_info_and_prune_survive_odd_records(tmp_path, capsys):
    cache = Cache(tmp_path)
    cache.claim()
    key = make_key(x=7)
    cache.put(key, b"tile", about={"kind": "filter"})
    record = _files(tmp_path, key)[1]
    data = json.loads(record.read_text())
    data["size"] = "abc"
    data["about"] = ["not", "a", "dict"]
    record.write_text(json.dumps(data))
    assert "filter" not in cache.report() and "unknown" in cache.report()
    size = len(b"tile") + record.stat().st_size
    assert Cache(tmp_path).prune(set()) == (1, size)


def test_prune_stays_inside_the_cache_and_counts_only_its_own(tmp_path):
    root = tmp_path / "cache"
    cache = Cache(root)
    kept, dropped, orphan = make_key(x=8), make_key(x=9), make_key(x=10)
    for key in (kept, dropped, orphan):
        cache.put(key, b"tile")
    _files(root, orphan)[1].unlink()  # a kill between payload and record left the payload alone
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / f"{'ab' + '0' * 38}.json"
    victim.write_text("{}")
    (root / "objects" / "ab").symlink_to(outside, target_is_directory=True)
    foreign = _files(root, kept)[0].parent / "notes.txt"
    foreign.write_text("not the cache's")
    removed, freed = Cache(root).prune({kept})
    assert removed == 2  # dropped and the orphaned payload; not the foreign file, not the link's target
    assert victim.exists() and foreign.exists()
    assert not _files(root, orphan)[0].exists() and not _files(root, dropped)[1].exists()
    assert Cache(root).get(kept) == (b"tile", {})


def test_an_entry_behind_a_linked_shard_is_never_read(tmp_path, capsys):
    root = tmp_path / "cache"
    cache = Cache(root)
    key = make_key(x=17)
    cache.put(key, b"tile", {"activation": 1.0})
    shard = _files(root, key)[0].parent
    outside = tmp_path / "outside"
    shutil.copytree(shard, outside)
    shutil.rmtree(shard)
    shard.symlink_to(outside, target_is_directory=True)
    reader = Cache(root)
    assert reader.get(key) is None and reader.damaged == 1, "read through a link"
    assert "is a link or a file, not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in outside.iterdir()) == sorted(p.name for p in _files(root, key))  # untouched
    reader.put(key, b"tile", {"activation": 1.0})
    assert not shard.is_symlink() and Cache(root).get(key) == (b"tile", {"activation": 1.0})


def test_the_code_for_older_caches_ends_with_its_release():
    """gallery/orchestrate/legacy.py has an end: the release it names drops it (issue 22, item 6)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = tuple(int(part) for part in project["version"].split(".")[:3])
    assert version < legacy.UNTIL, (f"cnn-gallery {project['version']} has reached the end of gallery/orchestrate/legacy.py: "
                                    "bump gallery.orchestrate.cache.FORMAT, delete the module and say so in the notes")
