import json

import pytest
from hypothesis import given, settings, strategies as st

from gallery import GalleryError
from gallery.config import parse_filter_slice
from gallery.photos.labels import class_names, read_labels
from gallery.site.slugs import MAX_STEM, assign, slug


def test_labels_formats(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(["x", "y"]))
    (tmp_path / "b.json").write_text(json.dumps({"0": ["n01", "tench"], "1": ["n02", "goldfish"]}))
    (tmp_path / "c.txt").write_text("one\n\n two \n")
    assert read_labels(tmp_path / "a.json") == ["x", "y"]
    assert read_labels(tmp_path / "b.json") == ["tench", "goldfish"]
    assert read_labels(tmp_path / "c.txt") == ["one", "two"]


def test_label_count_must_match(tmp_path):
    (tmp_path / "a.txt").write_text("a\nb\n")
    with pytest.raises(GalleryError, match="has 2 names but the model has 3 classes"):
        class_names(3, tmp_path / "a.txt")


def test_fallback_names():
    names, source = class_names(3)
    assert names == ["class 0", "class 1", "class 2"] and "--labels" in source


@pytest.mark.parametrize("text,expected", [
    ("0:64", slice(0, 64)), (":8", slice(None, 8)), ("4:", slice(4, None)), ("5", slice(5, 6)),
    ("0:10:2", slice(0, 10, 2)), (":", slice(None, None)),
])
def test_filter_slices(text, expected):
    assert parse_filter_slice(text) == expected


@pytest.mark.parametrize("text", ["a:b", "-1:4", "8:2", "1:2:0", "1:2:3:4", "", "x"])
def test_bad_filter_slices_name_the_value(text):
    with pytest.raises(GalleryError, match="--filters"):
        parse_filter_slice(text)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=300))
@pytest.mark.slow
def test_slugs_are_safe(name):
    s = slug(name)
    assert s and len(s) <= MAX_STEM + 9
    assert set(s) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-")
    assert not s.startswith(".") and "/" not in s and "\x00" not in s


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_distinct_names_get_distinct_slugs(a, b):
    if a != b:
        assert slug(a) != slug(b)


NAMES = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[a-z0-9.-]{1,12}-[0-9a-f]{8,16}", fullmatch=True),  # names shaped like hashed slugs
    st.sampled_from(["A", "a", "a-af3c7293", "cat", "cat-2", "cat.png", "index", "static", "..", "search.js"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(NAMES, max_size=30))
@pytest.mark.slow
def test_assigned_slugs_are_distinct_safe_and_case_insensitive(names):
    slugs = assign(names)
    assert set(slugs) == set(names)
    values = list(slugs.values())
    assert len({v.lower() for v in values}) == len(values)  # distinct even where case is ignored
    for value in values:
        assert set(value) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-") and not value.startswith(".")
    assert assign(list(reversed(names))) == slugs  # independent of the order given


def test_a_name_shaped_like_a_hashed_slug_cannot_take_anothers_slug():
    assert slug("A") == "a-" + slug("A").split("-")[1]
    shaped = slug("A")  # a file could be named exactly what "A" hashes to
    assert slug(shaped) != shaped
    assert len(set(assign(["A", shaped]).values())) == 2


def test_a_digest_collision_gets_a_longer_digest(monkeypatch):
    from gallery.site import slugs as module

    monkeypatch.setattr(module, "_hashed", lambda text, stem, digits: f"{stem or 'x'}-{'0' * digits}")
    found = assign(["B", "b!"])  # both fold to "b", and the stub gives every name the same digest
    assert sorted(found.values()) == ["b-00000000", "b-0000000000000000"]


def test_clean_names_are_kept():
    assert slug("block5_conv3") == "block5_conv3"
    assert slug("Block5") != "block5" and slug("Block5").startswith("block5-")
    assert slug("..") != ".." and slug("index") != "index"
