"""The suggestion cache: revisits and typing through a shown suggestion are served from memory."""

from __future__ import annotations

from koma.engine.completion.cache import FORWARD_CHARS, CompletionCache

URI = "file:///w/a.py"


def test_exact_revisit_is_a_hit() -> None:
    cache = CompletionCache()
    cache.put(URI, "x = ", "\n", "compute()")
    hit = cache.get(URI, "x = ", "\n")
    assert hit is not None and hit.text == "compute()" and hit.typed == 0


def test_typing_the_suggestion_serves_the_rest() -> None:
    cache = CompletionCache()
    cache.put(URI, "x = ", "\n", "compute(a, b)")
    hit = cache.get(URI, "x = comp", "\n")
    assert hit is not None and hit.text == "ute(a, b)" and hit.typed == 4


def test_typing_something_else_is_a_miss() -> None:
    cache = CompletionCache()
    cache.put(URI, "x = ", "\n", "compute(a, b)")
    assert cache.get(URI, "x = cop", "\n") is None
    assert cache.get("file:///w/other.py", "x = comp", "\n") is None
    assert cache.get(URI, "x = comp", "\nprint(x)\n") is None


def test_auto_closed_bracket_does_not_break_typing_through() -> None:
    cache = CompletionCache()
    cache.put(URI, "x = ", "\n", "compute(a, b)")
    # The user typed "compute(" and the editor inserted ")" after the cursor.
    hit = cache.get(URI, "x = compute(", ")\n")
    assert hit is not None and hit.text == "a, b)"


def test_forwarding_is_bounded_and_never_serves_an_empty_rest() -> None:
    long = "y" * (FORWARD_CHARS + 20)
    cache = CompletionCache()
    cache.put(URI, "", "", long)
    assert cache.get(URI, long[:FORWARD_CHARS], "") is not None
    assert cache.get(URI, long[: FORWARD_CHARS + 1], "") is None
    cache.put(URI, "a", "", "bc")
    assert cache.get(URI, "abc", "") is None


def test_long_prefixes_slide_and_still_match() -> None:
    cache = CompletionCache()
    prefix = "z" * 10_000
    cache.put(URI, prefix, "", "hello")
    hit = cache.get(URI, prefix + "he", "")
    assert hit is not None and hit.text == "llo"


def test_lru_eviction_drops_old_suggestions_and_their_forwarding_keys() -> None:
    cache = CompletionCache(max_entries=2)
    cache.put(URI, "a", "", "one1")
    cache.put(URI, "b", "", "two2")
    cache.put(URI, "c", "", "three")
    assert len(cache) == 2
    assert cache.get(URI, "a", "") is None
    assert cache.get(URI, "ao", "") is None
    assert cache.get(URI, "ct", "") is not None


def test_entries_expire() -> None:
    now = [0.0]
    cache = CompletionCache(ttl_seconds=10, clock=lambda: now[0])
    cache.put(URI, "a", "", "bcd")
    now[0] = 11.0
    assert cache.get(URI, "a", "") is None


def test_no_suggestion_is_cached_too_but_not_forwarded() -> None:
    cache = CompletionCache()
    cache.put(URI, "a", "", None)
    hit = cache.get(URI, "a", "")
    assert hit is not None and hit.text is None
    assert cache.clear() == 1
    assert cache.get(URI, "a", "") is None


def test_zero_size_cache_stores_nothing() -> None:
    cache = CompletionCache(max_entries=0)
    cache.put(URI, "a", "", "bcd")
    assert cache.get(URI, "a", "") is None
