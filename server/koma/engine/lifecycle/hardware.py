"""What memory this machine has: RAM from psutil, NVIDIA VRAM from `nvidia-smi` when present.

Everything that sizes a context window or recommends a quantization starts from one
`MemorySnapshot`, so tests can hand in a machine of any shape instead of the one they run on.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

GB = 1_000_000_000  # decimal, as Ollama and docs/local-models.md print sizes
NVIDIA_SMI_TIMEOUT_SECONDS = 5.0
_NVIDIA_QUERY = [
    "nvidia-smi",
    "--query-gpu=name,memory.total,memory.free",
    "--format=csv,noheader,nounits",
]


@dataclass(frozen=True)
class GpuMemory:
    name: str
    total_bytes: int
    free_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "total_bytes": self.total_bytes, "free_bytes": self.free_bytes}


@dataclass(frozen=True)
class MemorySnapshot:
    """RAM and discrete-GPU memory at one moment; `unified` for Apple Silicon's shared memory."""

    total_ram: int
    available_ram: int
    gpus: tuple[GpuMemory, ...] = field(default_factory=tuple)
    unified: bool = False

    @property
    def total_vram(self) -> int:
        return sum(g.total_bytes for g in self.gpus)

    @property
    def free_vram(self) -> int:
        return sum(g.free_bytes for g in self.gpus)

    @property
    def total_bytes(self) -> int:
        """Everything a server can spread a model over (Ollama splits layers GPU/CPU)."""
        return self.total_ram + self.total_vram

    @property
    def free_bytes(self) -> int:
        return self.available_ram + self.free_vram

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_ram_bytes": self.total_ram,
            "available_ram_bytes": self.available_ram,
            "total_vram_bytes": self.total_vram,
            "free_vram_bytes": self.free_vram,
            "gpus": [g.to_dict() for g in self.gpus],
            "unified": self.unified,
        }


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def probe_memory(
    run: Runner = subprocess.run, which: Callable[[str], str | None] = shutil.which
) -> MemorySnapshot:
    """This machine now; a missing or failing `nvidia-smi` just means no discrete GPU."""
    vm = psutil.virtual_memory()
    unified = platform.system() == "Darwin" and platform.machine() == "arm64"
    gpus = () if unified else query_nvidia(run, which)
    return MemorySnapshot(int(vm.total), int(vm.available), gpus, unified)


def query_nvidia(
    run: Runner = subprocess.run, which: Callable[[str], str | None] = shutil.which
) -> tuple[GpuMemory, ...]:
    """Per-GPU total and free memory from `nvidia-smi` (MiB in its CSV output)."""
    if which("nvidia-smi") is None:
        return ()
    try:
        done = run(
            _NVIDIA_QUERY,
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    if done.returncode != 0:
        return ()
    return parse_nvidia_csv(done.stdout)


def parse_nvidia_csv(text: str) -> tuple[GpuMemory, ...]:
    """`NVIDIA GeForce RTX 4090, 24564, 23012` lines → GpuMemory; odd lines are skipped."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        try:
            total, free = int(float(parts[-2])), int(float(parts[-1]))
        except ValueError:
            continue
        name = ",".join(parts[:-2])
        gpus.append(GpuMemory(name, total * 1024 * 1024, free * 1024 * 1024))
    return tuple(gpus)


def gb(value: float) -> str:
    """Bytes as `12.3 GB` for messages."""
    return f"{value / GB:.1f} GB"
