"""`koma doctor` rows for local models: memory, quantization, context, reasoning, GPU, pairs.

"Model won't load" has a reason, and these rows name it with the command that fixes it: the
weights plus KV cache against free memory, the quantization and model this machine should run,
the largest safe context, what the model can do (tools, thinking, fill-in-the-middle), GPU
settings the server will not apply, and a completion model that would evict the chat model.

They run after the core checks (`koma.engine.doctor`) and read what those learned from
`ctx.facts` (`models`, `model`, `details`). Importing the module registers them;
`register()` is idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from koma.engine.doctor import Check, DoctorContext, Status, context_window_of, register_check
from koma.engine.lifecycle.context import ContextPlan, find_model, plan_context
from koma.engine.lifecycle.hardware import MemorySnapshot, gb, probe_memory
from koma.engine.lifecycle.memory import pair_warning
from koma.engine.lifecycle.options import placement_problems, placement_summary
from koma.engine.lifecycle.quantization import describe_machine, recommend, table_row
from koma.types import ModelDetails, ModelInfo

# Replaced in tests to describe a machine of a given shape.
memory_probe: Callable[[], MemorySnapshot] = probe_memory
FALLBACK_CONTEXT = 8192


async def _memory(ctx: DoctorContext) -> MemorySnapshot:
    found = ctx.facts.get("memory")
    if isinstance(found, MemorySnapshot):
        return found
    probed = await asyncio.to_thread(memory_probe)
    ctx.facts["memory"] = probed
    return probed


def _installed(ctx: DoctorContext) -> ModelInfo | None:
    models: list[ModelInfo] | None = ctx.facts.get("models")
    model = ctx.facts.get("model")
    return find_model(models, model) if models and model else None


async def check_memory(ctx: DoctorContext) -> Check | None:
    """Weights + KV cache of the configured model against what is free now."""
    memory = await _memory(ctx)
    info = _installed(ctx)
    machine = f"{describe_machine(memory)}, {gb(memory.free_bytes)} free"
    if ctx.provider is None or info is None or not info.size_bytes:
        return Check("memory", "ok", machine, data={"machine": memory.to_dict()})
    plan = await _plan(ctx, info.name, memory)
    window = await context_window_of(ctx, info.name)
    num_ctx = window.used or ctx.settings.num_ctx or (plan.num_ctx if plan else FALLBACK_CONTEXT)
    kv = plan.shape.bytes_for(num_ctx) if plan else 0
    resident = 0
    if info.loaded:
        running = find_model(await ctx.provider.loaded_models(), info.name)
        resident = (running.size_bytes or 0) if running else 0
    required = info.size_bytes + kv
    available = memory.free_bytes + resident
    usable = available - 0.2 * memory.total_bytes
    data = {
        "machine": memory.to_dict(),
        "required_bytes": required,
        "available_bytes": available,
        "weights_bytes": info.size_bytes,
        "kv_cache_bytes": kv,
        "num_ctx": num_ctx,
    }
    detail = (
        f"{info.name} needs {gb(required)} ({gb(info.size_bytes)} weights + {gb(kv)} KV cache at "
        f"{num_ctx:,} tokens); available {gb(available)} ({machine})"
    )
    if required <= usable:
        return Check("memory", "ok", detail, data=data)
    others = [m.name for m in ctx.facts.get("models") or [] if m.loaded and m.name != info.name]
    smaller = _smaller_model(info.name)
    if required > memory.total_bytes:
        fix = f"koma pull {smaller}" if smaller else "use a smaller model or quantization"
        return Check("memory", "error", f"{detail}: it cannot load on this machine", fix, data)
    if others:
        fix = f"koma unload {others[0]}"
    elif required > available:
        fix = "close other programs, or " + (f"koma pull {smaller}" if smaller else "lower numCtx")
    else:
        fix = "close other programs to keep 20 % of memory free"
    status: Status = "error" if required > available else "warn"
    why = "it will not load now" if status == "error" else "less than 20 % would stay free"
    return Check("memory", status, f"{detail}: {why}", fix, data)


def _smaller_model(name: str) -> str | None:
    lowered = name.lower()
    if "gpt-oss" in lowered and "120b" in lowered:
        return "gpt-oss:20b"
    if "gpt-oss" in lowered:
        return "qwen2.5-coder:1.5b"
    return None


async def _plan(ctx: DoctorContext, model: str, memory: MemorySnapshot) -> ContextPlan | None:
    key = f"plan:{model}"
    if key not in ctx.facts:
        details = ctx.facts.get("details")
        if not isinstance(details, ModelDetails) or details.name != model:
            details = None
        assert ctx.provider is not None
        ctx.facts[key] = await plan_context(ctx.provider, model, details, memory)
    plan: ContextPlan | None = ctx.facts[key]
    return plan


async def check_quantization(ctx: DoctorContext) -> Check:
    """The model (and, for GGUF imports, the quantization) this machine should run."""
    memory = await _memory(ctx)
    advice = recommend(memory)
    info = _installed(ctx)
    data = {"recommendation": advice.to_dict()}
    detail = advice.detail
    if advice.gguf is not None:
        detail += f"; for a gpt-oss-120b GGUF import: {advice.gguf.name} ({advice.gguf_fit})"
    elif advice.model != "gpt-oss:120b":
        detail += "; gpt-oss-120b (≈ 65 GB, at least 32 GB RAM per the guide) does not run here"
    status: Status = "ok"
    fix = None
    if info is not None and info.quantization:
        row = table_row(info.quantization)
        current = f"{info.name} is {info.quantization}"
        if row is not None:
            current += f" (guide: {row.size_gb:g} GB, {row.ram_gb:g} GB RAM, {row.quality})"
        detail = f"{current}. Recommended: {detail}"
        data["current"] = {"model": info.name, "quantization": info.quantization}
        if (
            info.size_bytes
            and info.size_bytes > advice.size_bytes
            and info.name != advice.model
            and advice.fit != "no"
        ):
            status, fix = "warn", f"koma pull {advice.model}"
    return Check("quantization", status, detail, fix, data=data)


async def check_context(ctx: DoctorContext) -> Check | None:
    """The largest safe num_ctx for the model here, and whether the setting exceeds it."""
    model = ctx.facts.get("model")
    if ctx.provider is None or not model:
        return None
    memory = await _memory(ctx)
    plan = await _plan(ctx, model, memory)
    configured = ctx.settings.num_ctx
    if plan is None:
        window = await context_window_of(ctx, model)
        detail = (
            f"{model} runs with a context of {window.describe()}; the server does not describe "
            "the model's layers, so its memory cost is not estimated"
        )
        fix = None
        if window.used and window.maximum and window.used < window.maximum and not configured:
            fix = "set numCtx for a larger context (it costs memory)"
        known = {"num_ctx": window.used, "context_max": window.maximum, "configured": configured}
        return Check("context", "ok", detail, fix, data=known)
    data = {"plan": plan.to_dict(), "configured": configured}
    detail = f"largest safe context for {model}: {plan.describe()}"
    if configured is None and not plan.fits:
        fix = "free memory or use a smaller model (see the memory row)"
        return Check("context", "warn", detail + "; Koma sends it as num_ctx", fix, data)
    if configured is None:
        return Check("context", "ok", detail + "; Koma sends it as num_ctx", data=data)
    if plan.context_length and configured > plan.context_length:
        fix = f"set numCtx = {plan.context_length} (the model's maximum)"
        return Check("context", "warn", f"numCtx {configured:,} exceeds it; {detail}", fix, data)
    if configured > plan.num_ctx and plan.limited_by != "model":
        fix = f"set numCtx = {plan.num_ctx}, or unset it to let Koma choose"
        message = f"numCtx {configured:,} needs more memory than is free; {detail}"
        return Check("context", "warn", message, fix, data)
    return Check("context", "ok", f"numCtx {configured:,} fits; {detail}", data=data)


async def check_reasoning(ctx: DoctorContext) -> Check | None:
    """Thinking and fill-in-the-middle: what effort levels and inline completion will do."""
    details = ctx.facts.get("details")
    if not isinstance(details, ModelDetails):
        return None
    caps = set(details.capabilities)
    gpt_oss = details.architecture == "gptoss" or "gpt-oss" in details.name.lower()
    if gpt_oss:
        detail = "gpt-oss: reasoning effort low/medium/high is sent as think levels (Harmony)"
        status: Status = "ok"
    elif "thinking" in caps:
        detail = f"{details.name} thinks; effort turns thinking on (no levels)"
        status = "ok"
    else:
        detail = f"{details.name} has no thinking capability; reasoning effort is ignored"
        status = "ok" if caps else "warn"
    fix = None
    completion = ctx.settings.completion_model
    if completion and ctx.provider is not None:
        try:
            fim = await ctx.provider.supports_fim(completion)
        except Exception as exc:  # any provider's failure is a warning in the report
            return Check("reasoning", "warn", f"{detail}; completionModel: {exc}", "koma models")
        if not fim:
            status = "warn"
            detail += f"; completionModel {completion} has no fill-in-the-middle (insert)"
            fix = "ollama pull qwen2.5-coder:1.5b and set completionModel to it"
        else:
            detail += f"; completionModel {completion} fills in the middle"
    data = {"capabilities": sorted(caps), "gpt_oss": gpt_oss}
    return Check("reasoning", status, detail, fix, data=data)


async def check_gpu(ctx: DoctorContext) -> Check | None:
    """GPU/CPU settings the server will not apply, and how much of the model is on the GPU."""
    provider = ctx.provider_name
    problems = placement_problems(ctx.settings, provider)
    if problems:
        return Check(
            "gpu",
            "warn",
            "; ".join(p.message for p in problems),
            "remove the gpu.* settings for this provider",
            data={"problems": [p.to_dict() for p in problems]},
        )
    if provider != "ollama":
        return None
    detail = "placement: " + placement_summary(ctx.settings)
    info = _installed(ctx)
    memory = await _memory(ctx)
    if info is not None and info.loaded and ctx.provider is not None:
        running = find_model(await ctx.provider.loaded_models(), info.name)
        if running is not None and running.size_bytes:
            share = (running.size_vram_bytes or 0) / running.size_bytes
            detail += f"; {info.name} is {share:.0%} on the GPU"
            if memory.gpus and share < 1:
                return Check(
                    "gpu",
                    "warn",
                    detail + " — layers on the CPU are much slower",
                    "lower numCtx, or use a smaller model (koma doctor → quantization)",
                    data={"gpu_share": share},
                )
    return Check("gpu", "ok", detail)


async def check_pair(ctx: DoctorContext) -> Check | None:
    """The chat and completion models must both fit, or they evict each other."""
    models: list[ModelInfo] | None = ctx.facts.get("models")
    chat, completion = ctx.facts.get("model"), ctx.settings.completion_model
    if not models or not chat or not completion or completion == chat:
        return None
    warning = pair_warning(
        find_model(models, chat),
        find_model(models, completion),
        max_memory_gb=ctx.settings.memory.max_memory_gb,
        memory=await _memory(ctx),
    )
    if warning is None:
        return Check("model pair", "ok", f"{chat} and {completion} fit in memory together")
    return Check(
        "model pair", "warn", warning, f"set completionModel = {chat!r}, or a smaller model"
    )


def register() -> None:
    """Add the lifecycle rows to `koma doctor` (after the core capability check)."""
    previous = "capabilities"
    for name, fn in (
        ("memory", check_memory),
        ("quantization", check_quantization),
        ("context", check_context),
        ("reasoning", check_reasoning),
        ("gpu", check_gpu),
        ("model pair", check_pair),
    ):
        register_check(name, fn, after=previous)
        previous = name


# Importing this module adds the rows, as importing `koma.engine.doctor` adds the core ones.
register()
