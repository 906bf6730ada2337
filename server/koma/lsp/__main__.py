"""`python -m koma.lsp`: the language server without the rest of the CLI (same as `koma lsp`)."""

from koma.lsp.server import main

main()
