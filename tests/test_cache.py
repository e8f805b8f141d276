from gallery.cache import Cache, make_key, write_atomic


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
