"""Tests of the top-level basics: channels (grey and multispectral models) end to end."""
