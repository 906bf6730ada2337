"""`koma doctor`: a list of checks, each with a status, what was found, and the fix command.

The checks are plain async functions in a registry so later features (memory vs quantization,
model lifecycle, GPU placement) add their own with `register_check` instead of editing this
module. A check reads what earlier checks learned from `DoctorContext.facts`, never raises
(failures become `error` rows), and is bounded by a timeout so the doctor never hangs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from koma.engine.lifecycle.context import ContextWindow
from koma.engine.session import server_choice
from koma.errors import KomaError, ModelNotFound, ProviderUnreachable
from koma.providers.base import Provider
from koma.settings import KomaSettings
from koma.trust import ProjectConfig
from koma.types import ModelDetails, ModelInfo

logger = logging.getLogger(__name__)

Status = Literal["ok", "warn", "error"]
CHECK_TIMEOUT_SECONDS = 15.0

START_HINTS = {
    "ollama": "ollama serve",
    "lmstudio": "lms server start",
    "openai": "start the server, or point --base-url / KOMA_BASE_URL at it",
    "embedded": "./scripts/install.sh (in a Koma checkout)",
}


@dataclass
class Check:
    """One row of the report; `fix` is a command or action the user can take now."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "data": self.data,
        }


@dataclass
class DoctorContext:
    """What the checks share: the settings, the provider (None when it could not be made)."""

    settings: KomaSettings
    provider: Provider | None
    provider_error: KomaError | None = None
    sources: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    # The project file and what trust made of it (None: there is none).
    project: ProjectConfig | None = None
    # Warnings from resolving the settings (ignored keys, a withheld API key).
    warnings: list[str] = field(default_factory=list)

    @property
    def provider_name(self) -> str:
        return self.provider.name if self.provider else self.settings.provider


@dataclass
class DoctorReport:
    provider: str
    base_url: str | None
    model: str | None
    checks: list[Check]

    @property
    def exit_code(self) -> int:
        """README.md's exit codes: 3 unreachable, 4 model not found, 1 any other error, else 0."""
        errors = {c.name for c in self.checks if c.status == "error"}
        if "provider" in errors:
            return ProviderUnreachable.exit_code
        if "model" in errors:
            return ModelNotFound.exit_code
        return 1 if errors else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "base_url": self.base_url,
            "model": self.model,
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "checks": [c.to_dict() for c in self.checks],
        }


CheckFn = Callable[[DoctorContext], Awaitable[Check | list[Check] | None]]
_CHECKS: list[tuple[str, CheckFn]] = []


def register_check(name: str, fn: CheckFn, *, after: str | None = None) -> None:
    """Add a check (by name, replacing one of the same name), optionally after another one."""
    global _CHECKS
    _CHECKS = [(n, f) for n, f in _CHECKS if n != name]
    index = len(_CHECKS)
    if after is not None:
        for i, (existing, _) in enumerate(_CHECKS):
            if existing == after:
                index = i + 1
    _CHECKS.insert(index, (name, fn))


def registered_checks() -> list[str]:
    return [name for name, _ in _CHECKS]


async def run_doctor(
    settings: KomaSettings,
    provider: Provider | None,
    *,
    provider_error: KomaError | None = None,
    sources: Iterable[str] = (),
    check_timeout: float = CHECK_TIMEOUT_SECONDS,
    project: ProjectConfig | None = None,
    warnings: Iterable[str] = (),
) -> DoctorReport:
    """Run every registered check in order; a check that fails or hangs becomes an error row."""
    ctx = DoctorContext(
        settings, provider, provider_error, list(sources), project=project, warnings=list(warnings)
    )
    checks: list[Check] = []
    for name, fn in list(_CHECKS):
        try:
            found = await asyncio.wait_for(fn(ctx), check_timeout)
        except TimeoutError:
            found = Check(name, "error", f"no answer within {check_timeout:.0f} s")
        except KomaError as exc:
            found = Check(name, "error", exc.message, exc.hint)
        except Exception as exc:  # a broken check must not hide the others
            found = Check(name, "error", f"{type(exc).__name__}: {exc}")
        if found is None:
            continue
        checks.extend(found if isinstance(found, list) else [found])
    return DoctorReport(
        provider=ctx.provider_name,
        base_url=provider.base_url if provider else settings.base_url,
        model=ctx.facts.get("model") or settings.model,
        checks=checks,
    )


async def check_config(ctx: DoctorContext) -> Check:
    detail = "settings from " + ", ".join(ctx.sources) if ctx.sources else "built-in defaults"
    project_message = ctx.project.message() if ctx.project is not None else None
    others = [w for w in ctx.warnings if w != project_message]
    if others:
        return Check(
            "config", "warn", detail + "; " + "; ".join(others), data={"sources": ctx.sources}
        )
    return Check("config", "ok", detail, data={"sources": ctx.sources})


async def check_project_config(ctx: DoctorContext) -> Check:
    """The project's `.koma.toml`: trusted, untrusted with keys ignored, not read, or none."""
    project = ctx.project
    if project is None:
        return Check("project config", "ok", "none (no .koma.toml in this project)")
    data = project.to_dict()
    if project.state == "refused":
        return Check("project config", "warn", project.summary(), project.fix, data=data)
    if not project.ignored:
        return Check("project config", "ok", project.summary(), data=data)
    if project.state == "restricted":
        fix = "trust the workspace in the editor"
    else:
        fix = f"review it, then: koma trust {project.path}"
    return Check("project config", "warn", project.summary(), fix, data=data)


async def check_provider(ctx: DoctorContext) -> Check:
    """Reachability and server version; everything after this needs a live server."""
    name = ctx.provider_name
    if ctx.provider is None:
        error = ctx.provider_error
        detail = error.message if error else f"no {name} server found"
        fix = (error.hint if error else None) or START_HINTS.get(name)
        return Check("provider", "error", detail, fix)
    try:
        models = await ctx.provider.list_models()
    except ProviderUnreachable as exc:
        return Check("provider", "error", exc.message, exc.hint or START_HINTS.get(name))
    ctx.facts["models"] = models
    version = await _quiet(ctx.provider.version())
    ctx.facts["version"] = version
    where = f"{name} at {ctx.provider.base_url}" if ctx.provider.base_url else name
    detail = f"{where} answers" + (f" (version {version})" if version else "")
    if name == "embedded" and ctx.settings.provider == "auto":
        # `auto` fell back: it works, but a real server is far faster and has larger models.
        return Check(
            "provider",
            "warn",
            "no Ollama or LM Studio server answered; using the small embedded model",
            "ollama serve (or start LM Studio's server)",
            data={"version": version},
        )
    return Check("provider", "ok", detail, data={"version": version})


async def check_models(ctx: DoctorContext) -> Check | None:
    models: list[ModelInfo] | None = ctx.facts.get("models")
    if models is None:
        return None
    if not models:
        fix = "ollama pull gpt-oss:20b" if ctx.provider_name == "ollama" else None
        return Check("models", "warn", "the server lists no models", fix or "load a model")
    loaded = [m.name for m in models if m.loaded]
    detail = f"{len(models)} available" + (f", loaded: {', '.join(loaded)}" if loaded else "")
    return Check("models", "ok", detail, data={"names": [m.name for m in models]})


async def check_model(ctx: DoctorContext) -> Check | None:
    """The configured model exists (or which one Koma will fall back to)."""
    models: list[ModelInfo] | None = ctx.facts.get("models")
    if models is None:
        return None
    wanted = ctx.settings.model
    names = [m.name for m in models]
    if wanted is None:
        chosen = server_choice(models)  # the rule chat and completion use
        if chosen is None:
            return Check("model", "warn", "no model configured and none available", "koma models")
        ctx.facts["model"] = chosen
        return Check(
            "model",
            "warn",
            f"no model configured; Koma uses {chosen} (a loaded model, else the first listed)",
            f'set model = "{chosen}" in .koma.toml, or pass --model',
        )
    if _present(wanted, names):
        ctx.facts["model"] = wanted
        return Check("model", "ok", f"{wanted} is available")
    fix = f"ollama pull {wanted}" if ctx.provider_name == "ollama" else "koma models"
    return Check("model", "error", f"model {wanted!r} is not on the server", fix)


async def check_capabilities(ctx: DoctorContext) -> Check | None:
    """What the model can do, and what that means for completion, chat tools and reasoning."""
    model = ctx.facts.get("model")
    if ctx.provider is None or not model:
        return None
    details: ModelDetails = await ctx.provider.show(model)
    ctx.facts["details"] = details
    caps = set(details.capabilities)
    notes = []
    status: Status = "ok"
    fix = None
    if caps and "tools" not in caps:
        status = "warn"
        notes.append("no tool calling, so chat cannot read files or run tests")
    if caps and "insert" not in caps and not ctx.settings.completion_model:
        notes.append("no fill-in-the-middle; inline completion continues the prefix raw")
        example = "qwen2.5-coder:1.5b" if ctx.provider_name == "ollama" else "a FIM-capable model"
        fix = f"set completionModel ({example}) for faster inline completion"
    window = await context_window_of(ctx, model, details)
    context = f", context {window.describe()}" if window.used or window.maximum else ""
    listed = ", ".join(sorted(caps)) or "not reported by this server"
    detail = f"{model}: {listed}{context}" + ("; " + "; ".join(notes) if notes else "")
    return Check(
        "capabilities",
        status,
        detail,
        fix,
        data={"capabilities": sorted(caps), **window.to_dict()},
    )


async def context_window_of(
    ctx: DoctorContext, model: str, details: ModelDetails | None = None
) -> ContextWindow:
    """The context the model runs with and its maximum, worked out once for every row."""
    from koma.engine.lifecycle.context import context_window, find_model

    key = f"context:{model}"
    found = ctx.facts.get(key)
    if isinstance(found, ContextWindow):
        return found
    assert ctx.provider is not None
    models: list[ModelInfo] | None = ctx.facts.get("models")
    window = await context_window(
        ctx.provider,
        model,
        num_ctx=ctx.settings.num_ctx,
        info=find_model(models, model) if models else None,
        details=details,
    )
    ctx.facts[key] = window
    return window


# How long the raw-Harmony probe may take; a slower server simply gets no row.
HARMONY_PROBE_SECONDS = 10.0
# What makes each server split gpt-oss's Harmony itself instead of handing it over raw.
RAW_HARMONY_FIXES = {
    "ollama": "the model's template is not Ollama's gpt-oss one (a Modelfile TEMPLATE?): "
    "recreate it FROM the gpt-oss model without a TEMPLATE line",
    "lmstudio": "LM Studio → Developer → Settings: turn on separating reasoning_content from "
    "content in API responses (or update LM Studio)",
    "llamacpp": "start llama-server with --jinja --reasoning-format auto (not none)",
    "vllm": "start vLLM with --reasoning-parser openai_gptoss "
    "(and --tool-call-parser openai --enable-auto-tool-choice for tools)",
}
RAW_HARMONY_FIX = (
    "llama-server: --jinja --reasoning-format auto; vLLM: --reasoning-parser openai_gptoss; "
    "LM Studio: separate reasoning_content in the Developer settings"
)


async def check_harmony(ctx: DoctorContext) -> Check | None:
    """Whether the server splits gpt-oss's Harmony itself or hands it over raw in `content`.

    Koma parses raw Harmony too, but the server's own parser is the reliable one (it knows
    the prompt it rendered), so a raw server gets one warning row naming the flag that fixes
    it. A short probe answers it; a model that is not loaded is left alone (the probe would
    load it), and a probe that fails or is slow gives no row.
    """
    from koma.engine.harmony import writes_harmony

    model = ctx.facts.get("model")
    provider = ctx.provider
    if provider is None or not model or not writes_harmony(model):
        return None
    models: list[ModelInfo] = ctx.facts.get("models") or []
    if any(m.name == model and m.loaded is False for m in models):
        return None
    try:
        raw = await asyncio.wait_for(_probe_raw_harmony(provider, model), HARMONY_PROBE_SECONDS)
    except (TimeoutError, KomaError):
        return None
    if not raw:
        return Check(
            "harmony", "ok", "the server splits gpt-oss's reasoning from the answer itself"
        )
    from koma.engine.stream import note_raw_harmony

    note_raw_harmony(provider, model)  # this process's later answers are read accordingly
    kind = getattr(provider, "preset", None) or provider.name
    return Check(
        "harmony",
        "warn",
        f"the server hands {model}'s raw Harmony over in the answer text (`<|channel|>…`); "
        "Koma splits it itself, but the server's own parser knows the prompt it rendered",
        RAW_HARMONY_FIXES.get(kind, RAW_HARMONY_FIX),
        data={"raw_harmony": True},
    )


async def _probe_raw_harmony(provider: Provider, model: str) -> bool:
    """A few tokens of a tiny chat: True when Harmony markup arrives in `content`."""
    from koma.engine.channels import ChannelParser
    from koma.providers.base import ChatRequest
    from koma.types import GenerationSettings, Message

    settings = GenerationSettings(max_tokens=48, reasoning_effort="low", temperature=0)
    request = ChatRequest(model, [Message.user("Reply with the word OK.")], settings)
    parser = ChannelParser()
    stream = provider.chat(request)
    try:
        async for chunk in stream:
            if chunk.reasoning:  # split by the server
                return False
            if chunk.content:
                parser.feed(chunk.content)
                if parser.saw_harmony:
                    return True
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    parser.finish()
    return parser.saw_harmony


def _present(wanted: str, names: list[str]) -> bool:
    """Ollama lists `name:latest` for a bare `name`."""
    return wanted in names or (":" not in wanted and f"{wanted}:latest" in names)


async def check_completion_route(ctx: DoctorContext) -> Check | None:
    """The inline-completion route for the completion model and why (engine/completion)."""
    from koma.engine.completion.routes import check_completion_route as check

    return await check(ctx)


async def _quiet(awaitable: Awaitable[str | None]) -> str | None:
    """An optional fact (the server's version): a server that will not say is not an error."""
    try:
        return await awaitable
    except KomaError as exc:
        logger.debug("optional doctor fact unavailable: %s", exc)
        return None


for _name, _fn in (
    ("config", check_config),
    ("project config", check_project_config),
    ("provider", check_provider),
    ("models", check_models),
    ("model", check_model),
    ("capabilities", check_capabilities),
    ("completion route", check_completion_route),
    ("harmony", check_harmony),
):
    register_check(_name, _fn)
