"""`koma trust`: let one project file set the sensitive keys, after showing exactly which.

A repository's `.koma.toml` is untrusted input: its sensitive keys (where code and keys go,
what runs on the machine) are ignored until the user trusts that file. This command shows
those keys with their values (API keys masked, control characters escaped), asks, and records
the file's real path and sha256, so any later change drops the trust (docs/providers.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from koma.cli import EXIT_ERROR, EXIT_OK, command, printable
from koma.errors import ConfigError, KomaError


def _configure_trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        help="the .koma.toml (or its folder); default: the project file `koma chat` would use",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask; trust it")
    parser.add_argument(
        "--forget", action="store_true", help="withdraw the trust in this file instead"
    )


@command(
    "trust",
    "let a project's .koma.toml set sensitive keys (baseUrl, tools.*, …); shows them first",
    _configure_trust,
)
def run_trust(args: argparse.Namespace) -> int:
    """Show exactly what the file would enable, ask, and record its real path and sha256."""
    from koma.settings.files import read_project, trust_store
    from koma.settings.layers import sensitive_keys_in

    path = _trust_target(args.path)
    store = trust_store()
    if args.forget:
        real = Path(os.path.realpath(path))
        done = store.forget(real)
        print(f"{printable(str(real))}: " + ("trust withdrawn" if done else "was not trusted"))
        return EXIT_OK
    read, values = read_project(path)
    _validate_project(read.path, values)
    keys = sensitive_keys_in(values)
    shown = printable(str(read.path))
    if not keys:
        print(f"{shown} sets no sensitive keys; there is nothing to trust.")
        return EXIT_OK
    print(f"{shown} (sha256 {read.sha256})")
    print("Trusting it lets this file set:")
    for key in keys:
        print(f"  {key} = {_shown_value(key, values)}")
    print("These choose where your code and keys go, or what runs on your machine.")
    if store.is_trusted(read.path, read.sha256):
        print("It is already trusted with exactly this content.")
        return EXIT_OK
    if not args.yes and not _confirm("Trust this file? [y/N] "):
        print("Not trusted; its sensitive keys stay ignored.")
        return EXIT_ERROR
    try:
        store.trust(read.path, read.sha256)
    except OSError as exc:
        raise KomaError(
            f"cannot record the trust in {store.path}: {exc.strerror or exc}",
            "check that folder's permissions",
        ) from exc
    print(f"Trusted. Any change to {shown} drops the trust until you run `koma trust` again.")
    return EXIT_OK


def _trust_target(given: Path | None) -> Path:
    """The file to trust: the argument (a folder means its .koma.toml), else the project's."""
    from koma.settings.files import PROJECT_FILE, find_project_config

    if given is None:
        found = find_project_config()
        if found is None:
            raise ConfigError(
                f"no {PROJECT_FILE} in this folder or up to its repository root",
                "pass its path: koma trust PATH",
            )
        return found
    path = given.expanduser()
    if path.is_dir():
        path = path / PROJECT_FILE
    if not os.path.lexists(path):
        raise ConfigError(f"{path} does not exist", "pass the path of a .koma.toml")
    return path


def _validate_project(path: Path, values: dict[str, Any]) -> None:
    """A file with invalid settings is not trusted: the error names the key, as elsewhere."""
    from koma.settings.layers import Layer, Sources, resolve

    resolve(Sources([Layer(str(path), values, path, trust="project")]))


def _shown_value(key: str, values: dict[str, Any]) -> str:
    """The value as JSON (escaped: no control characters reach the terminal); keys masked."""
    node: Any = values
    for part in key.split("."):
        node = node[part]
    if key.endswith("apiKey"):
        return '"********"'
    return json.dumps(node, ensure_ascii=True)


def _confirm(question: str) -> bool:
    """Ask on stdin; anything but y/yes, and end of input, is no."""
    print(question, end="", flush=True)
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, ValueError):
        return False
    return answer.strip().lower() in ("y", "yes")
