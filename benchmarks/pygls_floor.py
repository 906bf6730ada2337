"""The pygls floor for `benchmarks/cold_start.py`: a bare pygls server answering `initialize`.

No features, no settings: Python, pygls and lsprotocol only. What `koma lsp` takes beyond this
is Koma's own share of the cold start.
"""

from pygls.lsp.server import LanguageServer

if __name__ == "__main__":
    LanguageServer("pygls-floor", "0").start_io()
