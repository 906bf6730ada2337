"""Replay a typing trace against the real `koma lsp` process and measure inline completion.

    python benchmarks/typing_replay.py --out docs/performance.md
    python benchmarks/typing_replay.py --profile fast --keystrokes 500
    python benchmarks/typing_replay.py --base-url http://localhost:11434 --model qwen2.5-coder:1.5b

The client behaves like VS Code: every keystroke sends `didChange`, cancels the previous
inline-completion request if it is still pending (`$/cancelRequest`) and sends a new one. When a
correct suggestion is on screen the simulated user sometimes accepts it with Tab (one keystroke)
and otherwise types through it. The model behind the loopback simulator "predicts" the real
continuation of the file with a fixed accuracy, at the speed of the chosen profile; each profile
runs its own server, and all profiles run at the same time.

Measured: server overhead (client-observed latency − debounce − the simulator's time from
request to last byte), cancel-to-disconnect (client's `$/cancelRequest` → simulator sees the
connection close), upstream requests per keystroke, the share of shown suggestions served from
the cache, and tokens generated for requests that were then cancelled.

`--speed S` divides every delay (typing gaps, time to first token, token gaps) by S so a full
run fits in a few minutes; the absolute costs (overhead, cancel latency) are not scaled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

sys.path.insert(0, str(Path(__file__).parent))
from replay_model import PROFILES, PredictingSimulator, Profile
from replay_report import ProfileReport, machine_line, write_section
from traces.typing_trace import Trace, generate

ACCEPT_RATE = 0.6  # how often a user accepts a correct suggestion (else types through it)


@dataclass
class Sent:
    id: str
    key_index: int
    sent_at: float
    recv_at: float | None = None
    items: list[str] | None = None
    cancelled_at: float | None = None
    error: str | None = None


class Replay:
    """Drives one `koma lsp` process through the trace like an editor would."""

    def __init__(self, trace: Trace, keystrokes: int, speed: float, seed: int) -> None:
        self.trace = trace
        self.keystrokes = keystrokes
        self.speed = speed
        self.rng = random.Random(seed)
        self.sent: list[Sent] = []
        self.traces: dict[str, dict[str, Any]] = {}
        self.accepted = 0
        self.accepted_chars = 0
        self.keys_sent = 0
        self.uri = ""
        self._futures: list[asyncio.Future[Any]] = []
        self.arrivals: dict[str, float] = {}

    async def start(self, settings: dict[str, Any], workdir: Path) -> LanguageClient:
        client = LanguageClient("koma-typing-replay", "1")

        @client.feature("$/logTrace")
        def on_trace(params: Any) -> None:
            detail = json.loads(params.verbose)
            self.traces[str(detail.get("id"))] = detail

        @client.feature("koma/status")
        def on_status(params: Any) -> None:
            return None

        # Timestamp answers as they arrive, before the client converts them to typed objects.
        handle = client.protocol.handle_message

        def arrived(message: Any) -> None:
            msg_id = getattr(message, "id", None)
            if msg_id is not None and getattr(message, "method", None) is None:
                self.arrivals[str(msg_id)] = time.perf_counter()
            handle(message)

        client.protocol.handle_message = arrived  # type: ignore[method-assign]

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def on_log(params: Any) -> None:
            return None

        env = {k: v for k, v in os.environ.items() if not k.startswith("KOMA_")}
        env.update({"HOME": str(workdir), "KOMA_CONFIG": str(workdir / "none.toml")})
        await client.start_io(sys.executable, "-m", "koma", "lsp", env=env)
        capabilities = types.ClientCapabilities(
            text_document=types.TextDocumentClientCapabilities(
                inline_completion=types.InlineCompletionClientCapabilities()
            )
        )
        await client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities,
                root_uri=workdir.as_uri(),
                initialization_options={"koma": settings},
                trace=types.TraceValue.Verbose,
            )
        )
        client.initialized(types.InitializedParams())
        return client

    async def run(self, client: LanguageClient, workdir: Path) -> None:
        trace = self.trace
        self.uri = (workdir / "textwrap_copy.py").as_uri()
        text = trace.header + trace.tail
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=self.uri, language_id="python", version=1, text=text
                )
            )
        )
        typed = ""  # the document is header + typed + tail
        version = 1
        clock = time.perf_counter()
        index = 0
        while self.keys_sent < self.keystrokes and index < len(trace.keys):
            key = trace.keys[index]
            clock += key.gap_ms / 1000.0 / self.speed
            await asyncio.sleep(max(0.0, clock - time.perf_counter()))
            shown = self._shown()
            goal = trace.target[len(typed) :] if typed == trace.target[: len(typed)] else ""
            if (
                shown
                and key.kind in ("type", "enter")
                and goal.startswith(shown)
                and self.rng.random() < ACCEPT_RATE
            ):
                insert, delete = shown, 0
                self.accepted += 1
                self.accepted_chars += len(shown)
                target_pos = len(typed) + len(shown)
                while index < len(trace.keys) and not (
                    trace.keys[index].kind in ("type", "enter")
                    and trace.keys[index].target_pos > target_pos
                ):
                    index += 1
            else:
                insert, delete = key.text, int(key.kind == "backspace")
                index += 1
            version += 1
            self._edit(client, typed, insert, delete, version)
            typed = typed[: len(typed) - delete] + insert
            self._request(client, typed, index)
            self.keys_sent += 1
        await self._drain(client)

    def _shown(self) -> str | None:
        """The suggestion on screen: the answer to the latest request, if it has arrived."""
        if not self.sent:
            return None
        last = self.sent[-1]
        if last.recv_at is None or not last.items:
            return None
        return last.items[0]

    def _position(self, typed: str) -> types.Position:
        before = self.trace.header + typed
        line = before.count("\n")
        return types.Position(line=line, character=len(before) - before.rfind("\n") - 1)

    def _edit(
        self, client: LanguageClient, typed: str, insert: str, delete: int, version: int
    ) -> None:
        end = self._position(typed)
        start = self._position(typed[: len(typed) - delete]) if delete else end
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=start, end=end), text=insert
                    )
                ],
            )
        )

    def _request(self, client: LanguageClient, typed: str, index: int) -> None:
        if self.sent and self.sent[-1].recv_at is None:
            previous = self.sent[-1]
            previous.cancelled_at = time.perf_counter()
            client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=previous.id))
        entry = Sent(f"r{len(self.sent)}", index, time.perf_counter())
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri),
            position=self._position(typed),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        future = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=entry.id
        )

        def done(fut: Any) -> None:
            entry.recv_at = self.arrivals.pop(entry.id, None) or time.perf_counter()
            if fut.cancelled() or fut.exception() is not None:
                # e.g. RequestCancelled: the cancel arrived before the handler had started.
                entry.items = []
                entry.error = "cancelled" if fut.cancelled() else type(fut.exception()).__name__
                return
            result = fut.result()
            items = getattr(result, "items", result) or []
            entry.items = [i.insert_text for i in items if isinstance(i.insert_text, str)]

        future.add_done_callback(done)
        self._futures.append(asyncio.wrap_future(future))
        self.sent.append(entry)

    async def _drain(self, client: LanguageClient) -> None:
        """Close the session like an editor: cancel what is pending, wait for every answer."""
        if self.sent and self.sent[-1].recv_at is None:
            last = self.sent[-1]
            last.cancelled_at = time.perf_counter()
            client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=last.id))
        pending = [f for f in self._futures if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=30)
        for future in self._futures:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: an error answer is still an answer


async def run_profile(
    profile: Profile, trace: Trace, keystrokes: int, speed: float, seed: int
) -> ProfileReport:
    sim = PredictingSimulator(trace, profile, speed, seed)
    sim.start()
    replay = Replay(trace, keystrokes, speed, seed)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            settings = {
                "provider": "ollama",
                "baseUrl": sim.url,
                "model": "gpt-oss:120b",
                "completionModel": profile.completion_model,
            }
            if profile.thinking:
                # gpt-oss on Ollama would take the raw route; this profile measures the chat one.
                settings["completion"] = {"route": "chat"}
            client = await replay.start(settings, workdir)
            try:
                await replay.run(client, workdir)
            finally:
                await client.shutdown_async(None)
                client.exit(None)
                await client.stop()
    finally:
        sim.stop()
    return ProfileReport.build(profile.name, profile.description, replay, sim.requests)


async def run_real(
    base_url: str,
    model: str,
    provider: str,
    trace: Trace,
    keystrokes: int,
    seed: int,
    completion: dict[str, Any] | None = None,
) -> ProfileReport:
    replay = Replay(trace, keystrokes, 1.0, seed)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        settings: dict[str, Any] = {
            "provider": provider,
            "baseUrl": base_url,
            "completionModel": model,
        }
        if completion:
            settings["completion"] = completion
        client = await replay.start(settings, workdir)
        try:
            await replay.run(client, workdir)
        finally:
            await client.shutdown_async(None)
            client.exit(None)
            await client.stop()
    return ProfileReport.build(f"real: {model}", f"{provider} at {base_url}", replay, None)


def profile_worker(name: str, keystrokes: int, speed: float, seed: int) -> ProfileReport:
    """One profile in its own process, so profiles do not share a GIL or an event loop."""
    return asyncio.run(run_profile(PROFILES[name], generate(seed), keystrokes, speed, seed))


def run_all(args: argparse.Namespace) -> list[ProfileReport]:
    if args.base_url:
        trace = generate(args.seed)
        completion = {k: json.loads(v) for k, v in (c.split("=", 1) for c in args.completion)}
        real = run_real(
            args.base_url, args.model, args.provider, trace, args.keystrokes, args.seed, completion
        )
        return [asyncio.run(real)]
    names = list(PROFILES) if args.profile == "all" else [args.profile]
    if len(names) == 1:
        return [profile_worker(names[0], args.keystrokes, args.speed, args.seed)]
    with ProcessPoolExecutor(max_workers=len(names)) as pool:
        jobs = [
            pool.submit(profile_worker, n, args.keystrokes, args.speed, args.seed) for n in names
        ]
        return [job.result() for job in jobs]


def main() -> None:
    parser = argparse.ArgumentParser(description="Inline-completion typing replay benchmark.")
    parser.add_argument("--profile", choices=["all", *PROFILES], default="all")
    parser.add_argument("--keystrokes", type=int, default=2000)
    parser.add_argument("--speed", type=float, default=2.0, help="time compression (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base-url", help="replay against a real server instead")
    parser.add_argument("--model", default="qwen2.5-coder:1.5b", help="with --base-url")
    parser.add_argument("--provider", default="ollama", help="with --base-url")
    parser.add_argument(
        "--completion",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="with --base-url: a completion setting, e.g. suffixTokens=32 (repeatable)",
    )
    parser.add_argument("--out", help="write the results into this Markdown file's section")
    args = parser.parse_args()
    if args.speed <= 0 or args.keystrokes <= 0:
        parser.error("--speed and --keystrokes must be positive")
    args.load_at_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    reports = run_all(args)
    elapsed = time.perf_counter() - started
    command = "python benchmarks/typing_replay.py " + " ".join(sys.argv[1:])
    for report in reports:
        print(report.text())
    print(f"\n{machine_line()}; ran in {elapsed:.0f} s")
    if args.out:
        write_section(
            Path(args.out), reports, command.strip(), args, elapsed, datetime.now(UTC).date()
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
