"""The `koma` command line: chat, models, doctor and the language server, on top of the engine.

Each subcommand is one `Command` in a registry: a function that adds its arguments and a
function that runs it. Other modules add commands (`pull`, `preload`, …) with `@command(...)`
and are listed in `EXTRA_COMMAND_MODULES`, so growing the CLI never means editing the parser.

Exit codes (README.md, "Command line"): 0 ok, 1 error, 2 usage or configuration, 3 provider
unreachable, 4 model not found, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koma._lazy import lazy_attributes
from koma.choices import EFFORTS, PROVIDERS
from koma.errors import ConfigError, KomaError
from koma.lsp.args import add_lsp_arguments

# `koma lsp` must answer the editor's `initialize` fast (docs/performance.md), so rich, the
# configuration code and pydantic (settings, types) are imported by the commands that use them.
if TYPE_CHECKING:
    from rich.console import Console

    from koma.engine.session import Session
    from koma.providers.base import Provider
    from koma.settings import KomaSettings
    from koma.settings.layers import Resolved
    from koma.types import GenerationResult, GenerationSettings, ModelInfo

# What command modules (`koma.cli_lifecycle`) import from here, loaded on first use.
__getattr__ = lazy_attributes(
    __name__,
    {name: "koma.cli_render" for name in ("make_console", "print_json", "print_error")},
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Modules that register more subcommands when imported (model lifecycle, benchmarks, …).
EXTRA_COMMAND_MODULES: tuple[str, ...] = ("koma.cli_lifecycle",)

Runner = Callable[[argparse.Namespace], "int | Awaitable[int]"]


@dataclass
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Runner


COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, configure: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Runner], Runner]:
    """Register a subcommand; `run` may be sync or async and returns the exit code."""

    def register(run: Runner) -> Runner:
        COMMANDS[name] = Command(name, help, configure or (lambda parser: None), run)
        return run

    return register


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every subcommand takes; unset ones fall back to env and files (precedence:
    docs/providers.md)."""
    group = parser.add_argument_group("provider options")
    group.add_argument("--provider", choices=PROVIDERS, help="model server (default: auto)")
    group.add_argument("--base-url", metavar="URL", help="server URL, e.g. http://localhost:11434")
    group.add_argument("--model", metavar="NAME", help="model name, e.g. gpt-oss:120b")
    group.add_argument("--effort", choices=EFFORTS, help="reasoning effort")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` just that built-in command (`koma lsp`'s path)."""
    if only is None:
        for module in EXTRA_COMMAND_MODULES:
            importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="koma",
        description="Local reasoning models (gpt-oss and friends) in the terminal and the editor.",
        epilog="Environment: KOMA_PROVIDER, KOMA_BASE_URL, KOMA_MODEL, KOMA_API_KEY, KOMA_CONFIG.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        if only is not None and cmd.name != only:
            continue
        sub = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(sub)
        add_common_options(sub)
        sub.set_defaults(_run=cmd.run)
    return parser


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The common flags as camelCase settings overrides; unset flags are left out."""
    overrides = {
        "provider": getattr(args, "provider", None),
        "baseUrl": getattr(args, "base_url", None),
        "model": getattr(args, "model", None),
    }
    return {key: value for key, value in overrides.items() if value is not None}


def config_from_args(
    args: argparse.Namespace, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[Resolved, list[str]]:
    """Resolved settings (with their warnings) plus the sources they came from."""
    from koma.settings.layers import gather_sources, resolve

    sources = gather_sources(flag_overrides(args), cwd, env)
    return resolve(sources), [layer.source for layer in sources.layers]


def settings_from_args(
    args: argparse.Namespace,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    *,
    warn: bool = True,
) -> tuple[KomaSettings, list[str]]:
    """Resolved settings plus the sources they came from (for `koma doctor`).

    Each warning (project keys ignored, an API key withheld) is one line on stderr: the user
    must see that the project file did not get its way, and how to change that.
    """
    resolved, sources = config_from_args(args, cwd, env)
    if warn:
        print_warnings(resolved.warnings)
    return resolved.settings, sources


def print_warnings(warnings: Sequence[str]) -> None:
    """One plain line per warning on stderr (no wrapping, no markup from file contents)."""
    for warning in warnings:
        print(printable(warning), file=sys.stderr)


def printable(text: str) -> str:
    """`text` with control characters escaped, so a file cannot rewrite the terminal."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def open_session(settings: KomaSettings) -> Session:
    """The engine session of one command: provider, model and request settings.

    The same object the language server and the Python API hold, so `koma chat` sends what
    the editor and `koma.generate` send for the same settings; close it with `aclose()`.
    """
    from koma.engine.session import Session

    return Session(settings)


@asynccontextmanager
async def open_provider(settings: KomaSettings) -> AsyncIterator[Provider]:
    """The configured provider for one command, closed when the block ends.

    `auto` probes Ollama, then LM Studio; Ollama gets the largest num_ctx that fits this
    machine when `numCtx` is not set (`Session.provider`).
    """
    session = open_session(settings)
    try:
        yield await session.provider()
    finally:
        await session.aclose()


# ---------------------------------------------------------------- chat


def _configure_chat(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="the message; read from stdin when absent")
    parser.add_argument("--system", metavar="TEXT", help="system prompt")
    parser.add_argument("--max-tokens", type=_positive_int, metavar="N")
    parser.add_argument("--temperature", type=_temperature, metavar="T")
    parser.add_argument("--seed", type=int, metavar="N")
    parser.add_argument(
        "--hide-thinking", action="store_true", help="do not show the model's reasoning"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON result object")
    parser.add_argument(
        "--no-cache", action="store_true", help="skip the persistent response cache (cache.*)"
    )


@command("chat", "ask the model; streams its reasoning (dimmed) and its answer", _configure_chat)
async def run_chat(args: argparse.Namespace) -> int:
    from koma.cli_render import ChatPrinter, make_console, print_json
    from koma.engine.generate import stream_text
    from koma.types import Done, Message

    resolved, _ = config_from_args(args)
    print_warnings(resolved.warnings)
    settings = resolved.settings
    prompt = read_prompt(args.prompt)

    messages = []
    system = args.system or settings.chat.system_prompt
    if system:
        messages.append(Message.system(system))
    messages.append(Message.user(prompt))
    if args.no_cache:
        settings = settings.model_copy(
            update={"cache": settings.cache.model_copy(update={"mode": "off"})}
        )
    session = open_session(settings)
    generation = chat_generation_settings(session, args)
    out, err = make_console(), make_console(stderr=True)
    printer = ChatPrinter(out, err, show_thinking=not args.hide_thinking and not args.json)
    try:
        provider = await session.cached_provider()
        model = await session.model("chat")
        stream = stream_text(model=model, messages=messages, settings=generation, provider=provider)
        async with aclosing(stream) as events:
            async for event in events:
                if not args.json:
                    printer.feed(event)
                elif isinstance(event, Done):
                    printer.result = event.result
    finally:
        await session.aclose()
    result: GenerationResult | None = printer.result
    if result is None:
        raise KomaError("the stream ended without a result", "run `koma doctor`")
    if args.json:
        # The settings' warnings and the answer's own (empty, stopped, cut short) together.
        print_json(out, {**result.to_dict(), "warnings": [*resolved.warnings, *result.warnings]})
        printer.warn(result.warnings)
    else:
        printer.finish()
    return EXIT_OK


def chat_generation_settings(session: Session, args: argparse.Namespace) -> GenerationSettings:
    """The session's chat request settings, with the flags given laid over them."""
    return session.request_settings(
        "chat",
        effort=args.effort,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
    )


def read_prompt(prompt: str | None) -> str:
    """The prompt argument, or stdin (`-` or absent), e.g. `git diff | koma chat`."""
    if prompt is None or prompt == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise ConfigError("no prompt given", 'pass one: koma chat "…", or pipe text into it')
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise ConfigError("the prompt is empty", 'pass one: koma chat "…"')
    return prompt


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _temperature(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2, not {text}")
    return value


# ---------------------------------------------------------------- models


def _configure_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


@command("models", "list the server's models: loaded state, size, quantization", _configure_json)
async def run_models(args: argparse.Namespace) -> int:
    from koma.cli_render import make_console, models_table, print_json

    settings, _ = settings_from_args(args)
    async with open_provider(settings) as provider:
        models = await with_capabilities(provider, await provider.list_models())
        maxima = await with_context_windows(provider, models, settings.num_ctx)
    out = make_console()
    if args.json:
        data = {
            "provider": provider.name,
            "base_url": provider.base_url,
            "models": [{**m.to_dict(), "context_max": maxima.get(m.name)} for m in models],
        }
        print_json(out, data)
    elif models:
        out.print(models_table(models, f"{provider.name} at {provider.base_url}", maxima))
    else:
        make_console(stderr=True).print(f"{provider.name} at {provider.base_url} has no models")
    return EXIT_OK


async def with_context_windows(
    provider: Provider, models: list[ModelInfo], num_ctx: int | None
) -> dict[str, int | None]:
    """Set each model's context to the one it really runs with; returns the models' maxima.

    The same number `koma doctor` and the language server use (engine.lifecycle.context).
    """
    from koma.engine.lifecycle.context import context_window

    if not models or len(models) > 50:
        return {}
    windows = await asyncio.gather(
        *(context_window(provider, m.name, num_ctx=num_ctx, info=m) for m in models),
        return_exceptions=True,
    )
    maxima: dict[str, int | None] = {}
    for model, window in zip(models, windows, strict=True):
        if isinstance(window, BaseException):
            continue
        model.context_length = window.used or model.context_length
        maxima[model.name] = window.maximum
    return maxima


async def with_capabilities(provider: Provider, models: list[ModelInfo]) -> list[ModelInfo]:
    """Fill capabilities the list endpoint leaves out (Ollama's /api/tags) from `show()`."""
    missing = [m for m in models if not m.capabilities]
    if not missing or len(missing) > 50:
        return models
    details = await asyncio.gather(
        *(provider.show(m.name) for m in missing), return_exceptions=True
    )
    for model, found in zip(missing, details, strict=True):
        if isinstance(found, BaseException):
            continue
        model.capabilities = list(found.capabilities)
        model.context_length = model.context_length or found.context_length
    return models


# ---------------------------------------------------------------- doctor


@command("doctor", "check the server, the model and its capabilities", _configure_json)
async def run_doctor_command(args: argparse.Namespace) -> int:
    from koma.cli_render import doctor_table, make_console, print_json
    from koma.engine.doctor import run_doctor

    resolved, sources = config_from_args(args)
    settings = resolved.settings
    session = open_session(settings)
    provider: Provider | None = None
    error: KomaError | None = None
    try:
        try:
            provider = await session.provider()
        except KomaError as exc:
            error = exc
        report = await run_doctor(
            settings,
            provider,
            provider_error=error,
            sources=sources,
            project=resolved.project,
            warnings=resolved.warnings,
        )
    finally:
        await session.aclose()
    out = make_console()
    if args.json:
        print_json(out, report.to_dict())
    else:
        out.print(doctor_table(report.to_dict()))
    return report.exit_code


# ---------------------------------------------------------------- trust


def _configure_trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        help="the .koma.toml (or its folder); default: the project file `koma chat` would use",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask; trust it")
    parser.add_argument(
        "--forget", action="store_true", help="withdraw the trust in this file instead"
    )


@command(
    "trust",
    "let a project's .koma.toml set sensitive keys (baseUrl, tools.*, …); shows them first",
    _configure_trust,
)
def run_trust(args: argparse.Namespace) -> int:
    """Show exactly what the file would enable, ask, and record its real path and sha256."""
    from koma.settings.files import read_project, trust_store
    from koma.settings.layers import sensitive_keys_in

    path = _trust_target(args.path)
    store = trust_store()
    if args.forget:
        real = Path(os.path.realpath(path))
        done = store.forget(real)
        print(f"{printable(str(real))}: " + ("trust withdrawn" if done else "was not trusted"))
        return EXIT_OK
    read, values = read_project(path)
    _validate_project(read.path, values)
    keys = sensitive_keys_in(values)
    shown = printable(str(read.path))
    if not keys:
        print(f"{shown} sets no sensitive keys; there is nothing to trust.")
        return EXIT_OK
    print(f"{shown} (sha256 {read.sha256})")
    print("Trusting it lets this file set:")
    for key in keys:
        print(f"  {key} = {_shown_value(key, values)}")
    print("These choose where your code and keys go, or what runs on your machine.")
    if store.is_trusted(read.path, read.sha256):
        print("It is already trusted with exactly this content.")
        return EXIT_OK
    if not args.yes and not _confirm("Trust this file? [y/N] "):
        print("Not trusted; its sensitive keys stay ignored.")
        return EXIT_ERROR
    try:
        store.trust(read.path, read.sha256)
    except OSError as exc:
        raise KomaError(
            f"cannot record the trust in {store.path}: {exc.strerror or exc}",
            "check that folder's permissions",
        ) from exc
    print(f"Trusted. Any change to {shown} drops the trust until you run `koma trust` again.")
    return EXIT_OK


def _trust_target(given: Path | None) -> Path:
    """The file to trust: the argument (a folder means its .koma.toml), else the project's."""
    from koma.settings.files import PROJECT_FILE, find_project_config

    if given is None:
        found = find_project_config()
        if found is None:
            raise ConfigError(
                f"no {PROJECT_FILE} in this folder or up to its repository root",
                "pass its path: koma trust PATH",
            )
        return found
    path = given.expanduser()
    if path.is_dir():
        path = path / PROJECT_FILE
    if not os.path.lexists(path):
        raise ConfigError(f"{path} does not exist", "pass the path of a .koma.toml")
    return path


def _validate_project(path: Path, values: dict[str, Any]) -> None:
    """A file with invalid settings is not trusted: the error names the key, as elsewhere."""
    from koma.settings.layers import Layer, Sources, resolve

    resolve(Sources([Layer(str(path), values, path, trust="project")]))


def _shown_value(key: str, values: dict[str, Any]) -> str:
    """The value as JSON (escaped: no control characters reach the terminal); keys masked."""
    node: Any = values
    for part in key.split("."):
        node = node[part]
    if key.endswith("apiKey"):
        return '"********"'
    return json.dumps(node, ensure_ascii=True)


def _confirm(question: str) -> bool:
    """Ask on stdin; anything but y/yes, and end of input, is no."""
    print(question, end="", flush=True)
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, ValueError):
        return False
    return answer.strip().lower() in ("y", "yes")


# ---------------------------------------------------------------- lsp


@command("lsp", "run the language server (stdio by default)", add_lsp_arguments)
def run_lsp(args: argparse.Namespace) -> int:
    """Flags become environment defaults: the editor's own settings still win over them."""
    for var, value in (
        ("KOMA_PROVIDER", args.provider),
        ("KOMA_BASE_URL", args.base_url),
        ("KOMA_MODEL", args.model),
    ):
        if value:
            os.environ[var] = value
    from koma.lsp.server import main as lsp_main

    argv = ["--log-level", args.log_level]
    if args.log_file:
        argv += ["--log-file", args.log_file]
    if args.tcp:
        argv += ["--tcp", "--host", args.host, "--port", str(args.port)]
    lsp_main(argv)
    return EXIT_OK


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and turn every failure into one line on stderr plus an exit code."""
    if os.environ.get("KOMA_DEBUG"):
        # The full story behind a one-line error (a server's whole error body) on stderr.
        logging.basicConfig(level=logging.DEBUG, format="koma: debug: %(name)s: %(message)s")
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        # `koma lsp` is what an editor starts and then waits for: only its own parser.
        parser = build_parser(only="lsp" if words[:1] == ["lsp"] else None)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        outcome = args._run(args)
        if isinstance(outcome, Awaitable):
            outcome = asyncio.run(_awaited(outcome))
        return int(outcome)
    except KeyboardInterrupt:
        _stderr().print()
        return EXIT_INTERRUPTED
    except KomaError as exc:
        _print_error(str(exc))
        return exc.exit_code
    except BrokenPipeError:  # `koma models | head`: the reader left, nothing to report
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:  # a bug: one line for the user, the traceback on request
        if os.environ.get("KOMA_DEBUG"):
            raise
        _print_error(f"unexpected {type(exc).__name__}: {exc} (KOMA_DEBUG=1 shows details)")
        return EXIT_ERROR


def _stderr() -> Console:
    from koma.cli_render import make_console

    return make_console(stderr=True)


def _print_error(message: str) -> None:
    from koma.cli_render import print_error

    print_error(_stderr(), message)


async def _awaited(outcome: Awaitable[int]) -> int:
    return await outcome


def _silence_stdout() -> None:
    """Point stdout at devnull so Python's exit flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    raise SystemExit(main())
