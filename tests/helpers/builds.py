"""Tiny builds for tests in any room, and the check every built site must pass."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image

from gallery.config import BuildConfig, RenderSettings
from gallery.site.records import plain, read

class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append(value)
            if name == "style" and value:
                self.refs += re.findall(r"url\('([^']+)'\)", value)


def check_site(out: Path) -> dict:
    """Every link and image resolves inside the site; every image decodes; nothing external;
    every manifest.json round-trips through gallery.site.records byte for byte."""
    pages = sorted(out.rglob("*.html"))
    assert pages, "no pages written"
    images = set()
    for page in pages:
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for ref in parser.refs:
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"{page}: external reference {ref}"
            assert not ref.startswith("/"), f"{page}: absolute path {ref}"
            if not parts.path:
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_relative_to(out.resolve()), f"{page}: {ref} leaves the site"
            assert target.is_file(), f"{page}: broken link {ref}"
            if target.suffix in (".png", ".jpg"):
                images.add(target)
    for image in images:
        with Image.open(image) as img:
            img.load()
    for manifest in out.glob("*/manifest.json"):  # every build's manifest reads into the site's types, and back
        text = manifest.read_text(encoding="utf-8")
        assert json.dumps(plain(read(json.loads(text))), indent=1) == text, manifest
    return {"pages": len(pages), "images": len(images)}


def build_config(tmp_path, model_path, **overrides) -> BuildConfig:
    """A tiny build (16 px, 3 steps) of ``model_path`` into ``tmp_path``; ``overrides`` replace fields."""
    base = dict(model=str(model_path), preprocess="none", render=RenderSettings(size=16, steps=3, batch=4),
                out=tmp_path / "site", cache=tmp_path / "cache", command="python build.py --test")
    base.update(overrides)
    return BuildConfig(**base)


def cli_argv(tmp, model, photos, steps=60):
    """The command line of a tiny build (16 px) of ``model`` over ``photos`` into ``tmp``."""
    return ["--model", str(model), "--preprocess", "none", "--size", "16", "--steps", str(steps), "--batch", "2",
            "--images", str(photos), "--out", str(tmp / "site"), "--cache", str(tmp / "cache")]
