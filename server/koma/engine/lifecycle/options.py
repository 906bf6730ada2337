"""GPU / CPU and sampling options: which ones a server still accepts, and saying so when not.

Ollama silently ignores option keys it no longer knows (`use_mlock`, `low_vram` and `f16_kv`
went in 0.7; mirostat and tfs_z later), so a setting copied from an old guide does nothing and
nobody notices. Koma checks options before sending them — from a Modelfile, from flags, from
settings — and reports each one it will not send, with what to do instead.

LM Studio's REST load API takes only context length, batch size, flash attention, expert count
and KV offload; GPU layers and threads are set per model in the app or with `lms load --gpu`.
llama.cpp and vLLM fix placement when the server starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from koma.settings import KomaSettings

# Ollama's accepted `options` (api/types.go Options/Runner) and their types.
OLLAMA_OPTION_TYPES: dict[str, type] = {
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "repeat_last_n": int,
    "temperature": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": list,
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
}

# Options Ollama dropped: what each did and what replaces it.
REMOVED_OLLAMA_OPTIONS: dict[str, str] = {
    "use_mlock": (
        "Ollama no longer supports use_mlock (removed in 0.7); to keep the model from being "
        "paged out, leave use_mmap on and give the machine enough free RAM (koma doctor)"
    ),
    "low_vram": "Ollama no longer supports low_vram (removed in 0.7); lower num_gpu instead",
    "f16_kv": (
        "Ollama no longer supports f16_kv (removed in 0.7); the KV cache type is set on the "
        "server with OLLAMA_KV_CACHE_TYPE (f16, q8_0, q4_0)"
    ),
    "mirostat": "Ollama no longer supports mirostat sampling; use temperature/top_p/min_p",
    "mirostat_eta": "Ollama no longer supports mirostat sampling; use temperature/top_p/min_p",
    "mirostat_tau": "Ollama no longer supports mirostat sampling; use temperature/top_p/min_p",
    "tfs_z": "Ollama no longer supports tail-free sampling (tfs_z); use min_p",
    "penalize_newline": "Ollama no longer supports penalize_newline",
    "numa": "Ollama no longer takes numa as an option; set it when starting the server",
    "vocab_only": "vocab_only is not a generation option",
    "logits_all": "logits_all is not a generation option",
    "gpu_layers": "the Ollama option is num_gpu (layers on the GPU)",
    "n_gpu_layers": "the Ollama option is num_gpu (layers on the GPU)",
    "batch_size": "the Ollama option is num_batch",
    "context_length": "the Ollama option is num_ctx",
    "max_tokens": "the Ollama option is num_predict",
}

PLACEMENT_KEYS = {
    "num_gpu": "gpu.numGpu",
    "num_thread": "gpu.numThread",
    "main_gpu": "gpu.mainGpu",
    "use_mmap": "gpu.useMmap",
}
_PLACEMENT_ELSEWHERE = {
    "lmstudio": "LM Studio sets GPU offload and threads per model: `lms load MODEL --gpu max` "
    "or the model's settings in the app",
    "openai": "this server sets GPU placement itself when it starts",
    "llamacpp": "llama.cpp fixes placement at start: `llama-server -ngl 99 -t 8 --main-gpu 0`",
    "vllm": "vLLM fixes placement at start: `vllm serve MODEL --tensor-parallel-size N`",
    "embedded": "the embedded model runs on the CPU inside Koma",
}


@dataclass(frozen=True)
class OptionProblem:
    """One option that will not be sent, and why."""

    key: str
    value: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "message": self.message}


class OptionValueError(ValueError):
    """A value of the wrong type for an option Ollama does accept."""


def coerce_option(key: str, value: Any) -> Any:
    """An option value in the type Ollama expects; Modelfile values arrive as text."""
    kind = OLLAMA_OPTION_TYPES[key]
    if kind is list:
        items = value if isinstance(value, list | tuple) else [value]
        return [str(v) for v in items]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise OptionValueError(f"{key} must be true or false, not {value!r}")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(str(value).strip()) if not isinstance(value, int | float) else int(value)
        return float(value)
    except (TypeError, ValueError):
        name = "an integer" if kind is int else "a number"
        raise OptionValueError(f"{key} must be {name}, not {value!r}") from None


def validate_ollama_options(
    options: Mapping[str, Any],
) -> tuple[dict[str, Any], list[OptionProblem]]:
    """Split options into what Ollama accepts (typed) and problems to report.

    Raises OptionValueError for a known option with a value of the wrong type: that is a
    mistake to fix, not something to skip.
    """
    accepted: dict[str, Any] = {}
    problems: list[OptionProblem] = []
    for key, value in options.items():
        if key in OLLAMA_OPTION_TYPES:
            accepted[key] = coerce_option(key, value)
        elif key in REMOVED_OLLAMA_OPTIONS:
            problems.append(OptionProblem(key, value, REMOVED_OLLAMA_OPTIONS[key]))
        else:
            problems.append(
                OptionProblem(key, value, f"{key} is not an Ollama option; it would be ignored")
            )
    return accepted, problems


def placement_problems(settings: KomaSettings, provider: str) -> list[OptionProblem]:
    """GPU/CPU settings that this provider cannot apply (Ollama applies all four)."""
    if provider == "ollama":
        return []
    where = _PLACEMENT_ELSEWHERE.get(provider, _PLACEMENT_ELSEWHERE["openai"])
    problems = []
    for field, setting in PLACEMENT_KEYS.items():
        value = getattr(settings.gpu, field)
        if value is not None:
            message = f"{setting} = {value!r} is not applied by {provider}: {where}"
            problems.append(OptionProblem(setting, value, message))
    return problems


def placement_summary(settings: KomaSettings) -> str:
    """`num_gpu auto, num_thread 8, …` as Koma will send it to Ollama."""
    parts = []
    for field in PLACEMENT_KEYS:
        value = getattr(settings.gpu, field)
        parts.append(f"{field} {'auto' if value is None else value}")
    return ", ".join(parts)
