"""The quantization table of docs/local-models.md, and what this machine should run.

The table ("Quantization" there) is for gpt-oss-120b GGUF imports: size on disk, the least RAM
it runs in with GPU offload and memory-mapping, quality, speed. What Ollama (`gpt-oss:120b`,
`gpt-oss:20b`) and LM Studio ship today is the native MXFP4 release: its expert weights are
already 4-bit, so ≈ 65 GB for 120b and ≈ 14 GB for 20b whatever the label — requantizing it
gains little. Recommendations therefore start from the native sizes and fall back to the table
for GGUF imports.

"Fits" means weights plus a KV cache fit in 80 % of RAM + VRAM (about 20 % kept free);
"partially" means only the table's least RAM is there: it loads, with layers streamed from
disk, and is slow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from koma.engine.lifecycle.hardware import GB, MemorySnapshot, gb

Fit = Literal["fully", "partially", "no"]
RESERVE_FRACTION = 0.2
# A working context's KV cache on top of the weights (gpt-oss-120b at 32k ≈ 1.2 GB).
KV_ALLOWANCE_BYTES = int(1.5 * GB)


@dataclass(frozen=True)
class QuantRow:
    name: str
    size_gb: float
    ram_gb: float
    quality: str
    speed: str
    use_case: str
    ram_or_more: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantization": self.name,
            "size_gb": self.size_gb,
            "ram_required_gb": self.ram_gb,
            "ram_or_more": self.ram_or_more,
            "quality": self.quality,
            "speed": self.speed,
            "use_case": self.use_case,
        }


# The table for gpt-oss-120b GGUF imports, as docs/local-models.md ("Quantization") prints it.
GPT_OSS_120B_TABLE: tuple[QuantRow, ...] = (
    QuantRow("Q4_0", 65, 32, "Good", "Fast", "General use"),
    QuantRow("Q4_K_M", 67, 32, "Better", "Fast", "Recommended"),
    QuantRow("Q5_K_M", 82, 48, "Very Good", "Medium", "Quality focus"),
    QuantRow("Q6_K", 98, 64, "Excellent", "Slower", "Research"),
    QuantRow("Q8_0", 127, 96, "Near Perfect", "Slow", "Maximum quality"),
    QuantRow("FP16", 240, 128, "Perfect", "Very Slow", "Development only", ram_or_more=True),
)


@dataclass(frozen=True)
class NativeModel:
    """A model as Ollama ships it (`ollama pull <tag>`)."""

    tag: str
    quantization: str
    size_bytes: int
    context_length: int


# Sizes as Ollama's /api/tags reports them for the official tags.
GPT_OSS_120B = NativeModel("gpt-oss:120b", "MXFP4", 65_369_818_941, 131_072)
GPT_OSS_20B = NativeModel("gpt-oss:20b", "MXFP4", 13_780_173_734, 131_072)


def usable_bytes(memory: MemorySnapshot, reserve_fraction: float = RESERVE_FRACTION) -> float:
    """What may be used at all on this machine: RAM + VRAM minus the 20 % kept free."""
    return (1 - reserve_fraction) * memory.total_bytes


def fit(
    size_bytes: float,
    memory: MemorySnapshot,
    min_ram_bytes: float | None = None,
    reserve_fraction: float = RESERVE_FRACTION,
) -> Fit:
    """Whether weights of this size run here fully, partially (streamed from disk) or not."""
    if size_bytes + KV_ALLOWANCE_BYTES <= usable_bytes(memory, reserve_fraction):
        return "fully"
    if min_ram_bytes is not None and memory.total_ram >= min_ram_bytes:
        return "partially"
    return "no"


def table_row(quantization: str | None) -> QuantRow | None:
    """The table's row for a quantization label (`q4_k_m`, `Q4_K_M`, `F16` …)."""
    if not quantization:
        return None
    label = quantization.upper().replace("-", "_")
    label = {"F16": "FP16", "BF16": "FP16"}.get(label, label)
    return next((row for row in GPT_OSS_120B_TABLE if row.name == label), None)


def best_table_row(memory: MemorySnapshot) -> tuple[QuantRow | None, Fit]:
    """The highest-quality GGUF quantization of gpt-oss-120b this machine runs (fully first)."""
    for wanted in ("fully", "partially"):
        for row in reversed(GPT_OSS_120B_TABLE):
            if row.name == "FP16" and wanted == "partially":
                continue  # development only: never recommended for a partial fit
            if fit(row.size_gb * GB, memory, row.ram_gb * GB) == wanted:
                return row, wanted
    return None, "no"


@dataclass(frozen=True)
class Recommendation:
    """What to run on this machine, and the command that gets it."""

    model: str
    quantization: str
    size_bytes: int
    fit: Fit
    detail: str
    command: str
    gguf: QuantRow | None = None
    gguf_fit: Fit = "no"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "quantization": self.quantization,
            "size_bytes": self.size_bytes,
            "fit": self.fit,
            "detail": self.detail,
            "command": self.command,
            "gguf": self.gguf.to_dict() if self.gguf else None,
            "gguf_fit": self.gguf_fit,
        }


def recommend(memory: MemorySnapshot) -> Recommendation:
    """The largest gpt-oss this machine runs well, else the best partial fit, else advice."""
    where = describe_machine(memory)
    row, row_fit = best_table_row(memory)
    for native in (GPT_OSS_120B, GPT_OSS_20B):
        if fit(native.size_bytes, memory) == "fully":
            detail = (
                f"{where}: {native.tag} ({native.quantization}, {gb(native.size_bytes)}) fits "
                "with 20 % of memory kept free"
            )
            return Recommendation(
                native.tag,
                native.quantization,
                native.size_bytes,
                "fully",
                detail,
                f"ollama pull {native.tag}",
                row,
                row_fit,
            )
    if memory.total_ram >= GPT_OSS_20B.size_bytes:
        detail = (
            f"{where}: {GPT_OSS_20B.tag} ({gb(GPT_OSS_20B.size_bytes)}) loads but leaves less "
            "than 20 % free; close other programs, keep the context small (4096) and expect "
            "slow answers"
        )
        return Recommendation(
            GPT_OSS_20B.tag,
            GPT_OSS_20B.quantization,
            GPT_OSS_20B.size_bytes,
            "partially",
            detail,
            f"ollama pull {GPT_OSS_20B.tag}",
            row,
            row_fit,
        )
    detail = (
        f"{where}: too little memory for gpt-oss ({gb(GPT_OSS_20B.size_bytes)} for 20b); use a "
        "small coding model such as qwen2.5-coder:1.5b (1 GB) or Koma's embedded model"
    )
    return Recommendation(
        "qwen2.5-coder:1.5b",
        "Q4_K_M",
        986_062_089,
        "fully",
        detail,
        "ollama pull qwen2.5-coder:1.5b",
    )


def describe_machine(memory: MemorySnapshot) -> str:
    if memory.unified:
        return f"{gb(memory.total_ram)} unified memory"
    if memory.gpus:
        return f"{gb(memory.total_ram)} RAM + {gb(memory.total_vram)} VRAM"
    return f"{gb(memory.total_ram)} RAM, no GPU"
