"""Numbers and Markdown for the typing-replay benchmark (`typing_replay.py`).

Kept apart from the driver so the definitions of each measurement are easy to audit:

- server overhead: client-observed latency − the debounce the server applied − the backend's
  own time (simulator: request arrival → last byte or hang-up). Cancelled requests have no
  latency worth measuring and are left out.
- cancel → upstream stopped: the client's `$/cancelRequest` → the simulator seeing the model
  call that was running stop (hang-up, or its natural end when that came first). Calls the
  next keystroke's request took over (adopted) are counted apart as "kept".
- tokens cut off: tokens the simulator streamed for calls that a cancellation then closed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

HEADING = "## Inline completion — typing replay"
LIMITS = """What the numbers mean and what limits them:

- *Server overhead* is what the client saw minus the debounce the server chose and the
  simulator's own time for the model call (request arrival → last byte or hang-up). It also
  contains costs that are not Koma's: the simulator is Python's `http.server` running in the
  benchmark's process (the *Provider overhead* section above puts httpx + simulator alone at
  ~3 ms p50), and pygls reads stdin through a thread pool — three thread hand-offs per
  message, three messages per keystroke (`$/cancelRequest`, `didChange`, the request). The
  *inside the server* row is Koma's own share (its trace: handler time minus debounce, model
  call and waiting for an earlier call). Reading stdin on the event loop instead cut an
  isolated keystroke round trip from ~1.7 to ~1.1 ms p50 (measured separately); it is not
  enabled because document listeners then may run after the next request is handled.
- Answers that *took over a running call* were sent while a model call started for an
  earlier keystroke was already running (the user typed on, the call was kept instead of
  restarted); they have no backend interval of their own and are left out of the overhead
  rows. Cancels whose next keystroke took the call over are *kept*, not closed, by design;
  every other cancel closes the call (a 5 ms grace lets the next request take it over).
- With gpt-oss as the completion model every suggestion costs a hole-filler chat with
  reasoning (~2.4 s here), so few are shown while typing: set `completionModel` to a small
  FIM model (`qwen2.5-coder:1.5b`) and keep gpt-oss for chat and code actions."""
DISCARDED_REASONS = ("cancelled", "superseded")


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fmt_ms(values: Sequence[float]) -> str:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    if p50 is None or p95 is None:
        return "n/a"
    return f"{p50:.2f} / {p95:.2f} ms (n={len(values)})"


def _closed_at(record: Any) -> float | None:
    return record.disconnected_at if record.client_disconnected else record.ended_at


@dataclass
class ProfileReport:
    name: str
    description: str
    keystrokes: int = 0
    chars_per_second: float = 0.0
    overhead: list[float] = field(default_factory=list)
    overhead_cache: list[float] = field(default_factory=list)
    overhead_model: list[float] = field(default_factory=list)
    cancel_ms: list[float] = field(default_factory=list)
    not_closed: int = 0
    upstream: int = 0
    shown: int = 0
    shown_cache: int = 0
    accepted: int = 0
    accepted_chars: int = 0
    tokens: int = 0
    tokens_discarded: int = 0
    to_suggestion_model: list[float] = field(default_factory=list)
    to_suggestion_cache: list[float] = field(default_factory=list)
    # Where a model-served suggestion's time went (the server's trace of that answer).
    debounce_model: list[float] = field(default_factory=list)
    call_model: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    adopted: int = 0
    kept: int = 0
    server_own: list[float] = field(default_factory=list)
    transport: list[float] = field(default_factory=list)

    @classmethod
    def build(
        cls, name: str, description: str, replay: Any, records: list[Any] | None
    ) -> ProfileReport:
        report = cls(name, description, replay.keys_sent)
        report.accepted, report.accepted_chars = replay.accepted, replay.accepted_chars
        sent = [s for s in replay.sent if s.recv_at is not None]
        if sent:
            span = sent[-1].sent_at - sent[0].sent_at
            report.chars_per_second = len(sent) / span / replay.speed if span > 0 else 0.0
        upstream = [r for r in records or [] if r.endpoint in ("generate", "chat")]
        owner = {id(r): _owner(r, replay.sent) for r in upstream}
        for s in sent:
            detail = replay.traces.get(s.id, {})
            reason = str(detail.get("reason", "unknown"))
            if s.error and not detail:
                reason = f"error answer ({s.error})"
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            latency = (s.recv_at - s.sent_at) * 1000.0
            if s.items:
                report.shown += 1
                if detail.get("source") == "cache":
                    report.shown_cache += 1
                    report.to_suggestion_cache.append(latency)
                else:
                    report.to_suggestion_model.append(latency)
                    report.debounce_model.append(float(detail.get("debounceMs", 0.0)))
                    report.call_model.append(
                        float(detail.get("upstreamMs", 0.0)) + float(detail.get("waitedMs", 0.0))
                    )
            if reason in DISCARDED_REASONS or not detail:
                continue
            if detail.get("adopted"):
                report.adopted += 1
            server_ms = float(detail.get("serverMs", 0.0))
            own = server_ms - float(detail.get("debounceMs", 0.0))
            own -= float(detail.get("waitedMs", 0.0))
            own -= float(detail.get("upstreamMs", 0.0))
            if not detail.get("adopted"):
                report.server_own.append(own)
            report.transport.append(latency - server_ms)
            value = _overhead(s, detail, latency, upstream, owner, records is None)
            if value is None:
                continue
            report.overhead.append(value)
            if detail.get("source") == "cache":
                report.overhead_cache.append(value)
            elif detail.get("source") == "model":
                report.overhead_model.append(value)
        if records is None:
            report.upstream = sum(1 for s in sent if replay.traces.get(s.id, {}).get("startedCall"))
            return report
        report.upstream = len(upstream)
        report.tokens = sum(r.tokens_sent for r in upstream)
        cut: set[int] = set()
        for s in replay.sent:
            if s.cancelled_at is None:
                continue
            live = [
                r
                for r in upstream
                if r.started_at <= s.cancelled_at
                and (_closed_at(r) is None or _closed_at(r) >= s.cancelled_at)
            ]
            if not live:
                continue  # still debouncing: nothing upstream to close
            following = _next_sent(replay.sent, s)
            if following is not None and replay.traces.get(following.id, {}).get("tookOver"):
                report.kept += 1  # the next keystroke's request took the running call over
                continue
            record = live[-1]
            stopped = _closed_at(record)
            if stopped is None:
                report.not_closed += 1
                continue
            report.cancel_ms.append((stopped - s.cancelled_at) * 1000.0)
            if record.client_disconnected and id(record) not in cut:
                cut.add(id(record))
                report.tokens_discarded += record.tokens_sent
        return report

    def rows(self) -> list[tuple[str, str, str]]:
        per_key = self.upstream / self.keystrokes if self.keystrokes else 0.0
        share = self.shown_cache / self.shown if self.shown else 0.0
        discarded = self.tokens_discarded / self.tokens if self.tokens else 0.0
        closed = fmt_ms(self.cancel_ms)
        if self.not_closed:
            closed += f", {self.not_closed} not closed"
        if self.kept:
            closed += f"; {self.kept} kept for the next keystroke"
        return [
            ("keystrokes (typing speed)", f"{self.keystrokes} ({self.chars_per_second:.1f}/s)", ""),
            ("server overhead p50 / p95, all answers", fmt_ms(self.overhead), "≤ 3 ms p50"),
            ("— served from cache", fmt_ms(self.overhead_cache), ""),
            ("— served by the model", fmt_ms(self.overhead_model), ""),
            ("— inside the server (its own trace)", fmt_ms(self.server_own), ""),
            ("— stdio round trip (client − server time)", fmt_ms(self.transport), ""),
            ("cancel → upstream stopped p50 / p95", closed, "≤ 20 ms p95"),
            ("upstream requests per keystroke", f"{per_key:.3f} ({self.upstream})", "≤ 0.15"),
            ("suggestions shown / from cache", f"{self.shown} / {share:.0%}", ""),
            ("answers that took over a running call", str(self.adopted), ""),
            ("accepted with Tab (chars)", f"{self.accepted} ({self.accepted_chars})", ""),
            ("tokens generated / cut off by a cancel", f"{self.tokens} / {discarded:.0%}", ""),
            ("time to suggestion p50 / p95, all shown", fmt_ms(self.to_suggestion), ""),
            ("time to suggestion p50 / p95, model", fmt_ms(self.to_suggestion_model), ""),
            ("— of which the debounce", fmt_ms(self.debounce_model), ""),
            ("— of which the model call (request → answer)", fmt_ms(self.call_model), ""),
            ("time to suggestion p50 / p95, cache", fmt_ms(self.to_suggestion_cache), ""),
        ]

    @property
    def to_suggestion(self) -> list[float]:
        return self.to_suggestion_model + self.to_suggestion_cache

    def verdicts(self) -> list[str]:
        """Each target of issue 3, met or missed, with the number that decides it."""
        overhead = percentile(self.overhead, 0.5)
        cancel = percentile(self.cancel_ms, 0.95)
        per_key = self.upstream / self.keystrokes if self.keystrokes else 0.0
        checks = [
            ("server overhead ≤ 3 ms p50", overhead, 3.0, "ms"),
            ("cancel → upstream stopped ≤ 20 ms p95", cancel, 20.0, "ms"),
            ("≤ 0.15 upstream requests per keystroke", per_key, 0.15, ""),
        ]
        out = []
        for label, value, limit, unit in checks:
            if value is None:
                out.append(f"- {label}: not measured")
            else:
                verdict = "met" if value <= limit else "**missed**"
                out.append(f"- {label}: {verdict} ({value:.3g}{' ' + unit if unit else ''})")
        return out

    def markdown(self) -> str:
        lines = [
            f"**{self.name}** — {self.description}",
            "",
            "| measure | result | target |",
            "|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in self.rows()]
        answers = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        lines += ["", f"Answers by outcome: {answers}.", "", *self.verdicts()]
        return "\n".join(lines)

    def text(self) -> str:
        width = max(len(a) for a, _, _ in self.rows())
        out = [f"\n== {self.name}: {self.description}"]
        out += [f"  {a:<{width}}  {b}  {c}" for a, b, c in self.rows()]
        out.append("  answers: " + ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())))
        return "\n".join(out)


def _overhead(
    s: Any,
    detail: dict[str, Any],
    latency: float,
    upstream: list[Any],
    owner: dict[int, Any],
    real: bool,
) -> float | None:
    """Client-observed latency minus what the debounce and the backend account for."""
    # Waiting for an earlier keystroke's call that then did not fit is backend time too.
    debounce = float(detail.get("debounceMs", 0.0)) + float(detail.get("waitedMs", 0.0))
    if detail.get("source") != "model":
        return latency - debounce
    if real:
        return latency - debounce - float(detail.get("upstreamMs", 0.0))
    if detail.get("adopted"):
        # Sent while a call started for an earlier keystroke was already running: there is
        # no backend interval of its own to subtract, so it is counted apart.
        return None
    mine = [r for r in upstream if owner[id(r)] is s]
    if not mine or _closed_at(mine[-1]) is None:
        return None
    return latency - debounce - (_closed_at(mine[-1]) - mine[-1].started_at) * 1000.0


def _next_sent(sent: Sequence[Any], s: Any) -> Any:
    index = sent.index(s)
    return sent[index + 1] if index + 1 < len(sent) else None


def _owner(record: Any, sent: Sequence[Any]) -> Any:
    """The request whose debounce ended in this upstream call: the last one sent before it."""
    found = None
    for s in sent:
        if s.sent_at <= record.started_at:
            found = s
        else:
            break
    return found


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def write_section(
    path: Path,
    reports: Sequence[ProfileReport],
    command: str,
    args: argparse.Namespace,
    elapsed: float,
    day: date,
) -> None:
    """Replace (or add) this benchmark's section; the rest of the file is left alone."""
    body = [
        HEADING,
        "",
        f"Measured {day.isoformat()} on {machine_line()}; load average at the start "
        f"{args.load_at_start}; the run took {elapsed:.0f} s.",
        "",
        "```sh",
        command,
        "```",
        "",
        f"{args.keystrokes} keystrokes of a seeded trace (seed {args.seed}) typing the "
        "methods of the standard library's `textwrap.py` with pauses and typos, replayed by a "
        "VS Code-like client against the real `koma lsp` process and the loopback simulator, "
        f"time compressed ×{args.speed:g} (typing gaps and model delays divided, absolute "
        "costs not). The simulated model predicts the real continuation 55 % of the time; a "
        "correct suggestion is accepted with Tab 60 % of the time, else typed through.",
        "",
    ]
    for report in reports:
        body += [report.markdown(), ""]
    body += [LIMITS, ""]
    section = "\n".join(body).rstrip() + "\n"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
