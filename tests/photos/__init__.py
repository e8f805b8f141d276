"""Tests of gallery/photos: class activation maps, saliency, faithfulness and its curves, the randomization check, peaks, folders of photos."""
