"""Tests of gallery/model: the graph walk and the bf16 copy."""
