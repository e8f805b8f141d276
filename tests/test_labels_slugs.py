import json

import pytest
from hypothesis import given, settings, strategies as st

from gallery import GalleryError
from gallery.config import parse_filter_slice
from gallery.labels import class_names, read_labels
from gallery.slugs import MAX_STEM, slug


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


def test_clean_names_are_kept():
    assert slug("block5_conv3") == "block5_conv3"
    assert slug("Block5") != "block5" and slug("Block5").startswith("block5-")
    assert slug("..") != ".." and slug("index") != "index"
