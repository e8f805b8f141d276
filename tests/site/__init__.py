"""Tests of gallery/site: the site model, slugs and labels, the room's imports, and the built pages in Chromium."""
