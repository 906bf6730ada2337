"""Which way inline completion asks a model: fill-in-the-middle, raw continuation, or chat.

A model's training decides what it does well, so the route is chosen per model, from the model
itself, and shown to the user (`koma doctor`, `:checkhealth koma`, `koma.status`):

- **fim** — the model has fill-in-the-middle tokens: Ollama `/api/generate` with `suffix`
  (`/api/show` lists `insert`), llama-server `/infill` (a zero-token `/infill` is accepted),
  `/v1/completions` with `suffix` where configured, or the embedded GGUF naming FIM token ids.
- **raw** — no FIM, but a completion endpoint: the prefix as a raw prompt (Ollama
  `/api/generate` with `raw: true`, `/v1/completions`, the embedded model), stopped at the end
  of the line or block. A base model continues code well this way; a hole-filler chat prompt
  it was never trained on gets no answer at all.
- **chat** — only where no completion endpoint exists (chat-only servers, the OpenAI cloud):
  the hole-filler prompt, capped in tokens, by a stop sequence and by time.

`completion.route` (auto|fim|raw|chat) overrides the detection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from koma.engine.completion.postprocess import Route
from koma.providers.base import Provider, RouteSupport

if TYPE_CHECKING:
    from koma.engine.doctor import Check, DoctorContext

logger = logging.getLogger("koma.completion")

RouteSetting = Literal["auto", "fim", "raw", "chat"]


@dataclass(frozen=True)
class RouteChoice:
    """The route for one model, where it goes, and why it was chosen."""

    route: Route
    why: str
    endpoint: str = ""
    infill: bool = False  # FIM through llama-server's /infill
    detected: bool = True  # False when the server could not be asked (not remembered)

    def to_dict(self) -> dict[str, Any]:
        return {"route": self.route, "why": self.why, "endpoint": self.endpoint}


def decide(support: RouteSupport, setting: RouteSetting = "auto") -> RouteChoice:
    """The route for a model that supports `support`, honouring a `completion.route` override."""
    if setting != "auto":
        endpoint = {
            "fim": support.fim_endpoint,
            "raw": support.raw_endpoint,
            "chat": "chat",
        }[setting]
        return RouteChoice(
            setting,
            f"completion.route is {setting!r} (detected: {support.why})",
            endpoint or ("chat" if setting == "chat" else "completion endpoint"),
            infill=setting == "fim" and support.infill,
        )
    if support.fim:
        return RouteChoice("fim", support.why, support.fim_endpoint, infill=support.infill)
    if support.raw:
        return RouteChoice("raw", support.why, support.raw_endpoint)
    return RouteChoice("chat", support.why, "chat")


async def choose_route(
    provider: Provider, model: str, setting: RouteSetting = "auto"
) -> RouteChoice:
    """Ask the server about `model` and decide; a server that cannot say gets raw or chat.

    A failed detection is marked `detected=False` so callers ask again next time instead of
    remembering a guess.
    """
    if setting == "chat":
        return RouteChoice("chat", "completion.route is 'chat'", "chat")
    try:
        support = await provider.completion_routes(model)
    except Exception as exc:  # any provider's failure: fall back, detect again next time
        logger.info("could not tell how %s completes: %s", model, exc)
        fallback = "raw" if setting == "auto" else setting
        return RouteChoice(
            fallback,
            f"detection failed ({exc}); trying {fallback}",
            "completion endpoint",
            detected=False,
        )
    return decide(support, setting)


async def check_completion_route(ctx: DoctorContext) -> Check | None:
    """Doctor row: the inline-completion route for the completion model, and why."""
    from koma.engine.doctor import Check

    model = ctx.settings.completion_model or ctx.facts.get("model")
    if ctx.provider is None or not model:
        return None
    choice = await choose_route(ctx.provider, model, ctx.settings.completion.route)
    detail = f"{model}: {choice.route} via {choice.endpoint or choice.route} — {choice.why}"
    if choice.route == "chat" and ctx.settings.completion.route == "auto":
        return Check(
            "completion route",
            "warn",
            detail + "; chat hole-filling is slow and capped",
            "use a server with a completion endpoint (Ollama, llama-server) for ghost text",
            data=choice.to_dict(),
        )
    if not choice.detected:
        return Check("completion route", "warn", detail, data=choice.to_dict())
    return Check("completion route", "ok", detail, data=choice.to_dict())
