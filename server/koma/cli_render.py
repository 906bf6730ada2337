"""How `koma` output looks: streamed chat, model tables, doctor reports, one-line errors.

Results go to stdout and everything else (reasoning, progress, stats, errors) to stderr, so
`koma chat "…" > answer.txt` captures only the answer while the terminal still shows the
thinking, dimmed.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from koma.types import (
    REASONING_CHANNELS,
    ChannelEnd,
    ChannelStart,
    Done,
    GenerationResult,
    ModelInfo,
    StreamEvent,
    TextDelta,
    ToolCallEvent,
)

STATUS_STYLE = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "error": ("✗", "red")}


def make_console(stderr: bool = False) -> Console:
    """A console that never re-wraps or re-colours model text: it is printed as it came."""
    return Console(stderr=stderr, soft_wrap=True, highlight=False, markup=False, emoji=False)


def print_error(console: Console, message: str) -> None:
    console.print(Text(f"koma: error: {message}", style="bold red"))


def print_json(console: Console, data: Any) -> None:
    """Exactly one JSON document on one line, so scripts can `json.loads` the whole stdout."""
    console.file.write(json.dumps(data, ensure_ascii=False) + "\n")
    console.file.flush()


class ChatPrinter:
    """Streams events: reasoning dimmed on stderr, the answer plain on stdout."""

    def __init__(self, out: Console, err: Console, *, show_thinking: bool = True) -> None:
        self.out = out
        self.err = err
        self.show_thinking = show_thinking
        self.result: GenerationResult | None = None
        self._answer_ends_with_newline = True
        self._side_ends_with_newline = True
        self._wrote_answer = False

    def feed(self, event: StreamEvent) -> None:
        if isinstance(event, ChannelStart):
            if event.channel != "final" and self._shows(event.channel):
                self._side(f"[{event.channel}]\n", "dim bold")
        elif isinstance(event, TextDelta):
            if event.channel == "final":
                self._answer(event.text)
            elif self._shows(event.channel):
                self._side(event.text, "dim" if event.channel in REASONING_CHANNELS else "italic")
        elif isinstance(event, ChannelEnd):
            if event.channel != "final" and self._shows(event.channel):
                self._end_side_line()
        elif isinstance(event, ToolCallEvent):
            self._end_side_line()
            call = event.call
            self._side(f"→ tool call {call.name}({call.arguments_json()})\n", "cyan")
        elif isinstance(event, Done):
            self.result = event.result

    def finish(self) -> None:
        """End the answer with a newline and say why an answer is missing, if it is."""
        if self._wrote_answer and not self._answer_ends_with_newline:
            self.out.file.write("\n")
            self.out.file.flush()
        self._end_side_line()
        result = self.result
        if result is None:
            return
        # The engine's warnings say why an answer is empty, stopped or cut short.
        self.warn(result.warnings)
        stats = format_stats(result)
        if stats:
            self.err.print(Text(stats, style="dim"))

    def warn(self, warnings: list[str]) -> None:
        """One `warning:` line per warning on stderr (also next to `--json` output)."""
        for warning in warnings:
            self.err.print(Text(f"warning: {warning}", style="yellow"))

    def _shows(self, channel: str) -> bool:
        return self.show_thinking or channel not in REASONING_CHANNELS

    def _answer(self, text: str) -> None:
        if not text:
            return
        self._end_side_line()
        self.out.file.write(text)
        self.out.file.flush()
        self._wrote_answer = True
        self._answer_ends_with_newline = text.endswith("\n")

    def _side(self, text: str, style: str) -> None:
        if not text:
            return
        self.err.print(Text(text, style=style), end="")
        self._side_ends_with_newline = text.endswith("\n")

    def _end_side_line(self) -> None:
        if not self._side_ends_with_newline:
            self.err.print()
            self._side_ends_with_newline = True


def format_stats(result: GenerationResult) -> str:
    """`model · 41.2 tok/s · first token 230 ms · 1.94 s` from whatever metrics exist."""
    metrics = result.metrics
    parts = [p for p in (result.provider and f"{result.provider}", result.model) if p]
    tokens = result.usage.completion_tokens
    # A rate of zero or one token is no rate (servers report 1,000,000,000 tok/s for it).
    if metrics.tokens_per_second is not None and (tokens is None or tokens > 1):
        parts.append(f"{metrics.tokens_per_second:.1f} tok/s")
    if metrics.ttft_ms is not None:
        parts.append(f"first token {metrics.ttft_ms:.0f} ms")
    if metrics.total_ms is not None:
        parts.append(f"{metrics.total_ms / 1000:.2f} s")
    if result.usage.completion_tokens is not None:
        parts.append(f"{result.usage.completion_tokens} tokens")
    return " · ".join(parts)


def human_size(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def models_table(
    models: list[ModelInfo], title: str, maxima: dict[str, int | None] | None = None
) -> Table:
    """One row per model; `context` is the one it runs with, the model's maximum beside it."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in ("name", "loaded", "size", "quantization", "context", "capabilities"):
        table.add_column(column, no_wrap=column == "name")
    for model in models:
        loaded = "—" if model.loaded is None else ("yes" if model.loaded else "no")
        context = f"{model.context_length:,}" if model.context_length else "—"
        maximum = (maxima or {}).get(model.name)
        if maximum and maximum != model.context_length:
            context += f" (max {maximum:,})"
        table.add_row(
            model.name,
            loaded,
            human_size(model.size_bytes),
            model.quantization or "—",
            context,
            ", ".join(model.capabilities) or "—",
        )
    return table


def doctor_table(report: dict[str, Any]) -> Table:
    """The report of `koma.engine.doctor`: one row per check with its fix command."""
    target = report.get("provider") or "?"
    if report.get("base_url"):
        target += f" at {report['base_url']}"
    table = Table(title=f"koma doctor — {target}", title_justify="left", show_edge=False)
    for column in ("", "check", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in report.get("checks", []):
        symbol, style = STATUS_STYLE.get(check["status"], ("?", "white"))
        table.add_row(
            Text(symbol, style=style),
            check["name"],
            check.get("detail") or "",
            Text(check.get("fix") or "", style="bold"),
        )
    return table
