"""Local model lifecycle: memory, context window, quantization advice, variants, pull, bench.

One module per concern (see each docstring): `hardware` (this machine's RAM/VRAM), `context`
(KV-cache cost and the largest safe `num_ctx`), `truncation` (detecting a prompt the server cut,
trimming history), `memory` (idle unloading and the memory budget), `quantization` (the table of
docs/local-models.md and a recommendation), `modelfile` (Ollama Modelfiles ↔ `/api/create`
fields), `pull` (download progress), `bench` (time to first token, tokens/s, memory), `options`
(GPU/CPU settings a server still accepts), `checks` (`koma doctor` rows).

Importing this package has no side effects; importing `checks` adds the doctor rows.
"""
