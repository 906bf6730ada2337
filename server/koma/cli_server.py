"""`koma models` and `koma doctor`: what the configured server offers, and whether it works.

Both look at the server rather than ask the model anything: the model list with each model's
loaded state, size, capabilities and the context window it really runs with (the number the
doctor and the language server use too), and the doctor's checks of server, model and
capabilities with their exit codes (README.md, "Command line").
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from koma.cli import (
    EXIT_OK,
    command,
    config_from_args,
    open_provider,
    open_session,
    settings_from_args,
)
from koma.errors import KomaError

if TYPE_CHECKING:
    from koma.providers.base import Provider
    from koma.types import ModelInfo


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
