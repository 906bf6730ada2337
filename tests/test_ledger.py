"""The reasoning ledger follows AI edits through later document changes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from koma.engine.ledger import Pos, ReasoningLedger, end_of, utf16_len

URI = "file:///w/a.py"


class Doc:
    """A tiny editor buffer: applies (start, end, text) changes and reads ranges back."""

    def __init__(self, text: str) -> None:
        self.text = text

    def offset(self, pos: Pos) -> int:
        lines = self.text.split("\n")
        line = min(pos[0], len(lines) - 1)
        return sum(len(x) + 1 for x in lines[:line]) + min(pos[1], len(lines[line]))

    def read(self, start: Pos, end: Pos) -> str:
        return self.text[self.offset(start) : self.offset(end)]

    def change(self, ledger: ReasoningLedger, start: Pos, end: Pos, text: str) -> None:
        a, b = self.offset(start), self.offset(end)
        self.text = self.text[:a] + text + self.text[b:]
        ledger.change(URI, start, end, text, self.read)


def applied_ledger(doc: Doc, start: Pos, end: Pos, new: str) -> ReasoningLedger:
    ledger = ReasoningLedger()
    ledger.record(URI, start, end, new, action="Koma: Refactor", model="m", reasoning="why")
    doc.change(ledger, start, end, new)
    return ledger


def test_an_entry_is_visible_only_once_its_edit_is_applied() -> None:
    doc = Doc("a = 1\nb = 2\nc = 3\n")
    ledger = ReasoningLedger()
    ledger.record(URI, (1, 0), (1, 5), "b = 20", action="A", model="m", reasoning="r")
    assert ledger.at(URI, (1, 2)) is None
    doc.change(ledger, (1, 0), (1, 5), "b = 20")
    entry = ledger.at(URI, (1, 2))
    assert entry is not None and (entry.start, entry.end) == ((1, 0), (1, 6))
    assert ledger.at(URI, (0, 2)) is None and ledger.at(URI, (2, 2)) is None


def test_an_edit_applied_as_several_smaller_changes_is_recognised() -> None:
    doc = Doc("def f():\n    return 1\n")
    ledger = ReasoningLedger()
    new = '@cache\ndef f():\n    """One."""\n    return 1'
    ledger.record(URI, (0, 0), (1, 12), new, action="A", model="m", reasoning="r")
    doc.change(ledger, (0, 0), (0, 0), "@cache\n")  # a minimal diff: insert above...
    doc.change(ledger, (2, 0), (2, 0), '    """One."""\n')  # ...and inside
    entry = ledger.at(URI, (0, 1))
    assert entry is not None
    assert doc.read(entry.start, entry.end) == new


def test_lines_added_above_move_the_entry_down() -> None:
    doc = Doc("x = 1\ny = 2\n")
    ledger = applied_ledger(doc, (1, 0), (1, 5), "y = 22")
    doc.change(ledger, (0, 0), (0, 0), "import os\n\n")
    assert ledger.at(URI, (1, 0)) is None
    entry = ledger.at(URI, (3, 3))
    assert entry is not None and doc.read(entry.start, entry.end) == "y = 22"


def test_text_typed_before_it_on_the_same_line_shifts_columns() -> None:
    doc = Doc("v = f(x)\n")
    ledger = applied_ledger(doc, (0, 4), (0, 8), "g(x)")
    doc.change(ledger, (0, 0), (0, 0), "new_")
    entry = ledger.at(URI, (0, 9))
    assert entry is not None and (entry.start, entry.end) == ((0, 8), (0, 12))
    assert doc.read(entry.start, entry.end) == "g(x)"


def test_typing_inside_grows_it_but_typing_at_its_edges_does_not() -> None:
    doc = Doc("one\ntwo\nthree\n")
    ledger = applied_ledger(doc, (1, 0), (1, 3), "TWO")
    doc.change(ledger, (1, 1), (1, 1), "xx")
    entry = ledger.at(URI, (1, 0))
    assert entry is not None and doc.read(entry.start, entry.end) == "TxxWO"
    doc.change(ledger, (1, 5), (1, 5), "!")  # right after the end
    doc.change(ledger, (1, 0), (1, 0), "#")  # right before the start
    assert doc.read(entry.start, entry.end) == "TxxWO"


def test_deleting_everything_the_model_wrote_forgets_it() -> None:
    doc = Doc("keep\nai code\nkeep\n")
    ledger = applied_ledger(doc, (1, 0), (1, 7), "AI CODE")
    doc.change(ledger, (0, 4), (2, 0), "\n")
    assert ledger.entries(URI) == []


def test_a_whole_document_change_keeps_only_entries_still_present() -> None:
    doc = Doc("a\nb\n")
    ledger = applied_ledger(doc, (0, 0), (0, 1), "alpha")
    ledger.change(URI, None, None, "alpha\nb\n", lambda s, e: "alpha")
    assert len(ledger.entries(URI)) == 1
    ledger.change(URI, None, None, "zzz\n", lambda s, e: "zzz")
    assert ledger.entries(URI) == []


def test_newest_entry_wins_and_documents_are_independent() -> None:
    doc = Doc("line\n")
    ledger = applied_ledger(doc, (0, 0), (0, 4), "LINE")
    ledger.record(URI, (0, 0), (0, 4), "Line", action="B", model="m2", reasoning="second")
    doc.change(ledger, (0, 0), (0, 4), "Line")
    entry = ledger.at(URI, (0, 1))
    assert entry is not None and entry.action == "B"
    assert ledger.at("file:///other.py", (0, 1)) is None
    ledger.forget(URI)
    assert ledger.at(URI, (0, 1)) is None


def test_entries_per_document_are_bounded() -> None:
    ledger = ReasoningLedger(max_per_document=3)
    for i in range(5):
        ledger.record(URI, (i, 0), (i, 1), "x", action=str(i), model="m", reasoning="r")
    assert [e.action for e in ledger.entries(URI)] == ["2", "3", "4"]
    assert ledger.clear() == 3


def test_positions_count_utf16_units() -> None:
    assert utf16_len("a😀b") == 4
    assert end_of((2, 3), "é😀") == (2, 6)
    assert end_of((2, 3), "x\nyé") == (3, 2)
    assert end_of((0, 0), "a\r\nb") == (1, 1)


_LINE = st.text(alphabet="abc xyz=()", max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(_LINE, min_size=1, max_size=4),
    after=st.lists(_LINE, min_size=1, max_size=4),
    edits=st.lists(
        st.tuples(st.booleans(), st.integers(0, 6), st.integers(0, 10), _LINE, st.booleans()),
        max_size=8,
    ),
)
def test_edits_outside_the_entry_never_change_what_it_covers(
    before: list[str], after: list[str], edits: list[tuple[bool, int, int, str, bool]]
) -> None:
    """Whatever the user types above or below, the entry still covers exactly the AI text."""
    ai = "AI(1)\nAI(2)"
    doc = Doc("\n".join([*before, "OLD", *after]))
    row = len(before)
    ledger = applied_ledger(doc, (row, 0), (row, 3), ai)
    for above, line_hint, col, text, newline in edits:
        [entry] = ledger.entries(URI)
        insert = text + ("\n" if newline else "")
        lines = doc.text.split("\n")
        if above:
            line = min(line_hint, entry.start[0] - 1)
            if line < 0:
                continue
        else:
            line = entry.end[0] + 1 + line_hint
            if line >= len(lines):
                continue
        pos = (line, min(col, len(lines[line])))
        doc.change(ledger, pos, pos, insert)
        [entry] = ledger.entries(URI)
        assert doc.read(entry.start, entry.end) == ai
