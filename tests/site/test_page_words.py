"""Pages that never contradict themselves, seen in Chromium at a desktop's and a phone's
width: what "not rendered" means, what search says of a filter outside the selection, words
not cut in two on a phone, covers that show the model, one statistic under tiles, and a
command that can be pasted."""

from __future__ import annotations

import html
import json
import re
import shlex
from pathlib import Path

import pytest

from gallery.orchestrate import pipeline
from gallery.config import BuildConfig, RenderSettings, public_command

from ..conftest import _keras
from ..helpers.chromium import browser, needs_chromium, shot  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.slow  # every test builds a whole gallery, most drive a browser


def _named_model():
    """A tiny classifier whose layers are named as EfficientNet's are."""
    keras = _keras()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="stem_conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="block0_dwconv")(x)
    x = keras.layers.Conv2D(5, 1, activation="relu", name="block1_expand_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="named")


def at_both_widths(test):
    """A browser test, run on a desktop's width and a phone's."""
    return pytest.mark.browser(needs_chromium(pytest.mark.parametrize("width", [1280, 390])(test)))


def _noise_photo(tmp: Path) -> Path:
    """A folder with one photo of noise, "noise.png"."""
    import numpy as np
    from PIL import Image

    photos = tmp / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(photos / "noise.png")
    return photos


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("words")
    model = tmp / "named.keras"
    _named_model().save(model)
    photos = _noise_photo(tmp)
    pipeline.build(BuildConfig(model=str(model), preprocess="none", images=(photos,), filters=slice(0, 3),
                               render=RenderSettings(size=16, steps=4), out=tmp / "site", cache=tmp / "cache",
                               cam_layers=("block1_expand_conv",),
                               command=public_command(["--model", str(model), "--filters", "0:3"])))
    return tmp / "site"


# Where each line of an element's text starts, by character: a word cut in two shows here.
LINE_STARTS = """el => {
  const starts = [], text = [];
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  let top = null, n = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++, n++) {
      const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1);
      const box = r.getBoundingClientRect();
      if (!box.height || !node.data[i].trim()) continue;
      if (top !== null && box.top > top + box.height / 2) starts.push(n);
      top = top === null || box.top > top + box.height / 2 ? box.top : top;
    }
    text.push(node.data);
  }
  return [text.join(""), starts];
}"""


@at_both_widths
def test_the_model_page_cuts_no_word_in_two_on_a_phone(site, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto((site / "named" / "index.html").as_uri())
    for cell in page.locator("table.layers td:nth-child(2)").all():
        text, starts = cell.evaluate(LINE_STARTS)
        if len(text) <= 14:
            assert not starts, (text, starts)  # block0_dwconv stays whole
        assert all(text[s - 1] == "_" for s in starts), (text, starts)  # longer names wrap at their underscores
    for code in page.locator("p.muted code").all():
        assert not code.evaluate(LINE_STARTS)[1], code.inner_text()  # --layers is never cut
    text, starts = page.locator(".fingerprint").evaluate(LINE_STARTS)
    assert starts in ([], [16]), (text, starts)
    shot(page, f"model-{width}")
    page.close()


@at_both_widths
def test_not_rendered_means_outside_the_selection_when_the_layer_was_rendered(site, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto((site / "named" / "photos" / "noise.html").as_uri())
    page.locator("details.contributions summary").click()  # folded, a step behind the class activation maps
    note = page.locator("section p.muted", has_text="not rendered")
    assert note.count() == 1 and note.is_visible()
    assert note.inner_text() == ("Filters marked \u201cnot rendered\u201d are filters of block1_expand_conv outside "
                                 "this build's selection (it rendered filters 0\u20132 of that layer); widen "
                                 "--filters to see their images.")
    assert "a layer this build did not render" not in page.content()
    shot(page, f"photo-{width}")
    page.close()


@at_both_widths
def test_search_says_a_filter_exists_but_was_not_rendered(site, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto((site / "index.html").as_uri())
    page.fill("#search", "block0_dwconv 4")
    said = page.locator("#search-results li").first.inner_text()
    assert said == ("block0_dwconv #4: exists, but this build did not render it (it rendered 3 of the layer's 6 "
                    "filters); add it with --filters 4 (or a range that holds it)"), said
    assert "try" not in said
    page.fill("#search", "block0_dwconv 9")
    assert page.locator("#search-results li").first.inner_text() == \
        "block0_dwconv #9: no such filter: block0_dwconv has 6 (0\u20135)"
    page.fill("#search", "block0_dwconv 2")
    page.keyboard.press("Enter")
    page.wait_for_url("**/named/layers/block0_dwconv/2.html")
    page.close()


@at_both_widths
def test_covers_show_each_layers_strongest_filter_and_tiles_are_labelled_by_peak(site, browser, width):
    manifest = json.loads((site / "named" / "manifest.json").read_text())
    # Three layers, fewer than the card's four, so the first layer is in too.
    strongest = [max(layer["filters"], key=lambda f: (f["peak"], -f["index"]))["thumb"] for layer in manifest["layers"]]
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto((site / "index.html").as_uri())
    covers = page.eval_on_selector_all(".card .thumbs img", "is => is.map(i => i.getAttribute('src'))")
    assert covers == strongest, (covers, strongest)
    assert any(not thumb.endswith("/0.png") for thumb in covers)  # not filter 0 of each layer
    shot(page, f"index-{width}")
    layer = manifest["layers"][1]
    page.goto((site / layer["page"]).as_uri())
    labels = page.eval_on_selector_all("#tiles li > a > span", "ss => ss.map(s => s.textContent.trim())")
    from gallery.site.pages import sig

    assert labels == [f"#{f['index']} {sig(f['peak'])}" + (" dead" if f["dead"] else "") for f in layer["filters"]]
    assert "The number under each tile is its peak" in page.locator("main p.muted").first.inner_text()
    shot(page, f"layer-{width}")
    page.close()


def test_the_published_command_runs_as_shown_once_its_placeholder_is_set(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    models = tmp_path / "my models"
    (work / "photos").mkdir()
    argv = ["--model", str(models / "vgg 16.keras"), "--images", "photos", str(tmp_path / "x.png"),
            "--layers", "a,b", f"--out={work / 'site'}"]
    command = public_command(argv)
    assert command == ("python build.py --model \"$MODEL_DIR\"/'vgg 16.keras' --images photos \"$IMAGES_DIR\"/x.png "
                       "--layers a,b --out=site")
    assert str(tmp_path) not in command and "\u2026" not in command
    env = {"MODEL_DIR": str(models), "IMAGES_DIR": str(tmp_path)}
    pasted = shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], command))
    assert pasted[2:] == ["--model", str(models / "vgg 16.keras"), "--images", "photos", str(tmp_path / "x.png"),
                          "--layers", "a,b", "--out=site"]


def test_the_reproduce_box_explains_its_placeholder(site):
    text = html.unescape(re.sub(r"<[^>]+>", "", (site / "named" / "index.html").read_text(encoding="utf-8")))
    assert 'python build.py --model "$MODEL_DIR"/named.keras --filters 0:3' in text
    assert "$MODEL_DIR stands for the folder that held that file where this was built" in text


@pytest.fixture(scope="module")
def photo_site(tmp_path_factory):
    """Six classes, one of them sure (about 88%), the others under 5%; two CAMs and saliency."""
    from ..conftest import tiny_classifier

    tmp = tmp_path_factory.mktemp("photo")
    model = tiny_classifier(classes=6)
    head = model.get_layer("head")
    head.bias.assign([4.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    head.kernel.assign(head.kernel * 0.0)
    model.save(tmp / "sure.keras")
    photos = _noise_photo(tmp)
    pipeline.build(BuildConfig(model=str(tmp / "sure.keras"), preprocess="none", images=(photos,),
                               filters=slice(0, 2), render=RenderSettings(size=16, steps=2), out=tmp / "site",
                               cache=tmp / "cache", cam_methods=("gradcam", "layercam", "saliency")))
    return tmp / "site"


@at_both_widths
def test_the_photo_page_leads_with_classes_and_maps_and_folds_the_rest(photo_site, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto((photo_site / "sure" / "photos" / "noise.html").as_uri())
    headings = page.eval_on_selector_all("main h2", "hs => hs.map(h => h.textContent.trim())")
    assert headings == ["Predictions", "Grad-CAM at conv2", "LayerCAM at conv2", "Feature maps", "Pixel attributions",
                        "Saliency"], headings
    # The first class activation maps are open; the other methods fold, their summary line in view.
    opened = page.eval_on_selector_all("details.method", "ds => ds.map(d => d.open)")
    assert opened == [True, False, False], opened
    assert "keeps" in page.locator("details.method").nth(1).locator("summary").inner_text()
    # Five maps leave no one alone on a row.
    page.locator("details.method").nth(1).locator("summary").click()
    for grid in page.locator("details[open] ul.cams").all():
        boxes = grid.evaluate("g => Array.from(g.children).map(li => [Math.round(li.getBoundingClientRect().top), "
                              "li.getBoundingClientRect().width, g.getBoundingClientRect().width])")
        rows = {}
        for top, w, _ in boxes:
            rows.setdefault(top, []).append(w)
        counts = [len(v) for v in rows.values()]
        assert len(boxes) == 5 and (len(set(counts)) == 1 or (counts[0] == 1 and len(set(counts[1:])) == 1
                                                               and boxes[0][1] > 0.9 * boxes[0][2])), counts
    # Shares of a class under 5% are noise: not shown, and the page says why.
    text = page.locator("main").inner_text()
    assert "> 999%" not in text
    figures = page.eval_on_selector_all("details.method:first-of-type .faith", "fs => fs.map(f => f.textContent)")
    assert "keeps" in figures[0] and all("no figures" in f for f in figures[1:]), figures
    assert "get no figures: a share of so small a probability swings by hundreds of percent on noise" in text
    shot(page, f"photo-order-{width}")
    page.close()


def test_covers_spread_over_the_depth():
    from gallery.site.pages import covers

    def layer(name, peaks, pending=()):
        return {"name": name, "filters": [
            {"index": i, "peak": p, "activation": 0.0, "pending": i in pending, "thumb": f"{name}/{i}"}
            for i, p in enumerate(peaks)]}

    layers = [layer(f"l{i}", [0.0, i + 1.0, 1.0]) for i in range(7)]
    assert covers(layers) == ["l0/1", "l2/1", "l4/1", "l6/1"]  # first, last and two between; filter 1 the strongest
    assert covers(layers[:3]) == ["l0/1", "l1/1", "l2/1"]  # fewer layers than the card holds: all of them
    assert covers([layer("a", [5.0, 9.0], pending=(1,))]) == ["a/0"]  # a pending tile is not a cover yet
