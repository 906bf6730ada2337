"""`koma pull`, `koma preload`, `koma unload`, `koma model create` and `koma bench`.

The model-lifecycle commands on top of `koma.engine.lifecycle`. Progress, warnings and stats go
to stderr, results (and `--json`) to stdout, as for every `koma` command. Ctrl-C during a pull
closes the download stream; Ollama keeps what it has and resumes next time.

Importing this module registers the commands (it is listed in `cli.EXTRA_COMMAND_MODULES`) and
the lifecycle rows of `koma doctor`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from koma.cli import (
    EXIT_OK,
    command,
    make_console,
    open_provider,
    open_session,
    print_json,
    settings_from_args,
)
from koma.cli_render import human_size
from koma.engine.lifecycle import checks  # noqa: F401  (adds the doctor rows)
from koma.engine.lifecycle.bench import DEFAULT_PROMPTS, BenchReport, LocalModelMetrics, bench
from koma.engine.lifecycle.modelfile import (
    Modelfile,
    parse_modelfile,
    to_create_request,
    variant_modelfile,
)
from koma.engine.lifecycle.pull import PullSnapshot, format_eta, pull_model
from koma.engine.lifecycle.variants import create_variant, harmony_warnings
from koma.errors import ConfigError, KomaError
from koma.settings import KomaSettings


def _model_argument(args: argparse.Namespace, settings: KomaSettings) -> str:
    model = getattr(args, "target", None) or settings.model
    if not model:
        raise ConfigError("no model given", f"koma {args.command} MODEL (e.g. gpt-oss:20b)")
    return str(model)


def _target(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "target",
        metavar="MODEL",
        nargs=None if required else "?",
        help="model name, e.g. gpt-oss:20b" + ("" if required else " (default: --model)"),
    )


# ---------------------------------------------------------------- pull


def _configure_pull(parser: argparse.ArgumentParser) -> None:
    _target(parser)
    parser.add_argument("--json", action="store_true", help="print the final status as JSON")


@command("pull", "download a model with a progress bar (Ctrl-C stops; it resumes)", _configure_pull)
async def run_pull(args: argparse.Namespace) -> int:
    settings, _ = settings_from_args(args)
    model = _model_argument(args, settings)
    err = make_console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[speed]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=err,
        transient=False,
    )
    task: TaskID = progress.add_task(f"pulling {model}", total=None, speed="", eta="—")
    started = time.perf_counter()

    def show(snapshot: PullSnapshot) -> None:
        speed = (
            f"{human_size(int(snapshot.bytes_per_second))}/s" if snapshot.bytes_per_second else ""
        )
        progress.update(
            task,
            description=snapshot.status or f"pulling {model}",
            total=snapshot.total,
            completed=snapshot.completed or 0,
            speed=speed,
            eta=format_eta(snapshot.eta_seconds),
        )

    try:
        async with open_provider(settings) as provider:
            with progress:
                final = await pull_model(provider, model, show)
    except asyncio.CancelledError:
        err.print(Text(f"pull of {model} stopped; `koma pull {model}` resumes it", style="yellow"))
        raise
    took = time.perf_counter() - started
    if args.json:
        print_json(make_console(), {"model": model, "seconds": round(took, 3), **final.to_dict()})
    else:
        err.print(f"pulled {model} ({human_size(final.total)}) in {took:.1f} s")
    return EXIT_OK


# ---------------------------------------------------------------- preload / unload


def _configure_preload(parser: argparse.ArgumentParser) -> None:
    _target(parser, required=False)
    parser.add_argument(
        "--keep-alive",
        metavar="DURATION",
        help='how long Ollama keeps it loaded: "10m", "1h", -1 = forever (default: keepAlive)',
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _keep_alive(text: str | None) -> str | int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text


@command("preload", "load a model into memory before the first request", _configure_preload)
async def run_preload(args: argparse.Namespace) -> int:
    settings, _ = settings_from_args(args)
    model = _model_argument(args, settings)
    keep = _keep_alive(args.keep_alive)
    async with open_provider(settings) as provider:
        message = await provider.load(model, keep_alive=keep)
    _report(args, {"ok": True, "model": model, "message": message})
    return EXIT_OK


def _configure_unload(parser: argparse.ArgumentParser) -> None:
    _target(parser, required=False)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


@command("unload", "free the memory a loaded model holds", _configure_unload)
async def run_unload(args: argparse.Namespace) -> int:
    settings, _ = settings_from_args(args)
    model = _model_argument(args, settings)
    async with open_provider(settings) as provider:
        message = await provider.unload(model)
    _report(args, {"ok": True, "model": model, "message": message})
    return EXIT_OK


def _report(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        print_json(make_console(), data)
    else:
        make_console().print(data["message"])


# ---------------------------------------------------------------- model create


def _configure_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create"], help="what to do")
    parser.add_argument("name", metavar="NAME", help="the new model's name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="base", metavar="BASE", help="base model, e.g. gpt-oss:20b")
    source.add_argument("--modelfile", metavar="FILE", help="an Ollama Modelfile")
    parser.add_argument("--temperature", type=float, metavar="T")
    parser.add_argument("--top-p", type=float, metavar="P")
    parser.add_argument("--top-k", type=int, metavar="K")
    parser.add_argument("--repeat-penalty", type=float, metavar="R")
    parser.add_argument("--num-ctx", type=int, metavar="N", help="context window of the variant")
    parser.add_argument("--system", metavar="TEXT", help="system prompt")
    parser.add_argument("--adapter", metavar="PATH", help="a (Q)LoRA adapter file")
    parser.add_argument("--quantize", metavar="Q", help="quantize an F16/F32 base, e.g. q4_K_M")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the /api/create request instead of sending"
    )


def _variant(args: argparse.Namespace) -> tuple[Modelfile, Path | None]:
    tweaks = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "repeat_penalty": args.repeat_penalty,
        "num_ctx": args.num_ctx,
        "system": args.system,
        "adapter": args.adapter,
    }
    if args.modelfile:
        path = Path(args.modelfile).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        model = parse_modelfile(text)
        # Flags given with --modelfile override or extend it.
        extra = variant_modelfile(model.from_, **tweaks)
        overridden = {key for key, _ in extra.parameters}
        model.parameters = [p for p in model.parameters if p[0] not in overridden]
        model.parameters += extra.parameters
        model.system = extra.system if extra.system is not None else model.system
        model.adapters += extra.adapters
        return model, path.parent
    return variant_modelfile(args.base, **tweaks), Path.cwd()


@command("model", "manage model variants: koma model create NAME --from BASE", _configure_model)
async def run_model(args: argparse.Namespace) -> int:
    settings, _ = settings_from_args(args)
    modelfile, base_dir = _variant(args)
    request = to_create_request(modelfile, args.name, base_dir, args.quantize)
    err = make_console(stderr=True)
    if args.dry_run:
        for warning in request.warnings + harmony_warnings(request, None):
            err.print(Text(f"warning: {warning}", style="yellow"))
        body = {**request.body}
        body.update({k: {n: str(p) for n, p in v.items()} for k, v in _uploads(request).items()})
        print_json(make_console(), body)
        return EXIT_OK
    async with open_provider(settings) as provider:
        architecture = None
        if "from" in request.body:
            try:
                architecture = (await provider.show(str(request.body["from"]))).architecture
            except KomaError:
                architecture = None  # the server says what is wrong when it creates
        for warning in request.warnings + harmony_warnings(request, architecture):
            err.print(Text(f"warning: {warning}", style="yellow"))
        await create_variant(provider, request, lambda status: err.print(status, style="dim"))
    make_console().print(f"created {args.name}")
    return EXIT_OK


def _uploads(request: Any) -> dict[str, dict[str, Path]]:
    return {k: v for k, v in (("files", request.files), ("adapters", request.adapters)) if v}


# ---------------------------------------------------------------- bench


def _configure_bench(parser: argparse.ArgumentParser) -> None:
    _target(parser, required=False)
    parser.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help=f"a prompt to time (repeatable; default: {len(DEFAULT_PROMPTS)} short coding prompts)",
    )
    parser.add_argument("--max-tokens", type=int, default=128, metavar="N")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


@command("bench", "measure time to first token, tokens/s and memory of a model", _configure_bench)
async def run_bench(args: argparse.Namespace) -> int:
    settings, _ = settings_from_args(args)
    model = _model_argument(args, settings)
    if args.max_tokens <= 0:
        raise ConfigError("--max-tokens must be positive")
    prompts = args.prompt or list(DEFAULT_PROMPTS)
    session = open_session(settings)
    # A chat request as `koma chat` would send it (placement too), at low effort unless
    # --effort says otherwise, greedy so runs compare.
    generation = session.request_settings(
        "chat", effort=args.effort or "low", max_tokens=args.max_tokens, temperature=0
    )
    err = make_console(stderr=True)

    def progress(index: int, run: LocalModelMetrics) -> None:
        if not args.json:
            err.print(f"prompt {index + 1}/{len(prompts)} done", style="dim")

    try:
        report = await bench(await session.provider(), model, prompts, generation, progress)
    finally:
        await session.aclose()
    if args.json:
        print_json(make_console(), report.to_dict())
    else:
        make_console().print(bench_table(report))
    return EXIT_OK


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def bench_table(report: BenchReport) -> Table:
    table = Table(title=f"koma bench — {report.model} ({report.provider})", title_justify="left")
    for column in ("prompt", "first token", "tokens/s", "total", "tokens", "memory"):
        table.add_column(column, overflow="fold")
    for prompt, run in zip(report.prompts, report.runs, strict=True):
        tps = "—" if run.tokens_per_second is None else f"{run.tokens_per_second:.1f}"
        table.add_row(
            prompt[:40] + ("…" if len(prompt) > 40 else ""),
            _ms(run.time_to_first_token_ms),
            tps,
            _ms(run.total_ms),
            str(run.completion_tokens or "—"),
            human_size(run.memory_used_bytes),
        )
    summary = report.summary()
    tps = summary["tokens_per_second"]
    table.add_section()
    table.add_row(
        Text("median (warm)", style="bold"),
        _ms(summary["ttft_ms"]),
        "—" if tps is None else f"{tps:.1f}",
        _ms(summary["total_ms"]),
        "",
        human_size(summary["memory_used_bytes"]),
    )
    if summary["load_ms"]:
        table.caption = f"first prompt loaded the model in {summary['load_ms']:,.0f} ms"
    return table
