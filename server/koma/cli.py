"""The `koma` command line's frame: the command registry, the parser, settings from the flags,
the session a command holds, `koma lsp`, and the entry point that turns failures into exit codes.

Each subcommand is one `Command` in a registry: a function that adds its arguments and a
function that runs it. The commands live in their own modules (`cli_chat`, `cli_server` for
`models` and `doctor`, `cli_trust`, `cli_lifecycle` for `pull`, `preload`, …), which register
themselves with `@command(...)` and are listed in `EXTRA_COMMAND_MODULES`, so growing the CLI
never means editing the parser. `koma lsp` is registered here: an editor starts it and waits,
so its path imports none of the other command modules (nor rich, pydantic or the engine).

Exit codes (README.md, "Command line"): 0 ok, 1 error, 2 usage or configuration, 3 provider
unreachable, 4 model not found, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koma._lazy import lazy_attributes
from koma.choices import EFFORTS, PROVIDERS
from koma.errors import KomaError
from koma.lsp.args import add_lsp_arguments

# `koma lsp` must answer the editor's `initialize` fast (docs/performance.md), so rich, the
# configuration code and pydantic (settings, types) are imported by the commands that use them.
if TYPE_CHECKING:
    from rich.console import Console

    from koma.engine.session import Session
    from koma.providers.base import Provider
    from koma.settings import KomaSettings
    from koma.settings.layers import Resolved

# What command modules (`koma.cli_lifecycle`, …) import from here, loaded on first use.
__getattr__ = lazy_attributes(
    __name__,
    {name: "koma.cli_render" for name in ("make_console", "print_json", "print_error")},
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Modules that register the other subcommands when imported, in the order `koma --help` lists them.
EXTRA_COMMAND_MODULES: tuple[str, ...] = (
    "koma.cli_chat",
    "koma.cli_server",
    "koma.cli_trust",
    "koma.cli_lifecycle",
)

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
    # `lsp` is registered when this module loads, before the others; it is listed after them.
    listed = sorted(COMMANDS.values(), key=lambda cmd: cmd.name == "lsp")
    for cmd in listed:
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
