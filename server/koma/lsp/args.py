"""The `koma lsp` flags, shared by `koma lsp` (cli.py) and `python -m koma.lsp` (server.py).

Only argparse here: the CLI builds this parser on every run, before anything heavy is imported.
"""

from __future__ import annotations

import argparse


def add_lsp_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the transport and logging flags: both entry points accept and document the same."""
    parser.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (default)")
    parser.add_argument(
        "--tcp",
        action="store_true",
        help="listen on a loopback TCP port instead; a client must first send the token "
        "(printed on stderr, or taken from KOMA_LSP_TOKEN): docs/protocol.md",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="TCP host, loopback only (default: 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=2087, help="TCP port (default: 2087, 0: any)")
    parser.add_argument("--log-file", metavar="PATH", help="write the server log here")
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
