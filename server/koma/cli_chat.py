"""`koma chat`: one question to the model, its reasoning and answer streamed to the terminal.

The command the CLI exists for, and the only one with generation flags (`--max-tokens`,
`--temperature`, `--seed`, `--no-cache`) and a prompt read from stdin (`git diff | koma chat`).
It holds an engine `Session`, as the language server and `koma.generate` do, so the same
settings send the same request from all three. Reasoning goes to stderr (dimmed), the answer to
stdout, `--json` prints one result object.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import aclosing
from typing import TYPE_CHECKING

from koma.cli import EXIT_OK, command, config_from_args, open_session, print_warnings
from koma.errors import ConfigError, KomaError

if TYPE_CHECKING:
    from koma.engine.session import Session
    from koma.types import GenerationResult, GenerationSettings


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
