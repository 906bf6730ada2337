"""Inline completion: prompt window, model routing, post-processing, cache and debounce."""
