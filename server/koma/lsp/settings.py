"""Editor settings: `initializationOptions.koma`, `workspace/configuration`, didChangeConfiguration.

What the editor sends counts like a command-line flag: it wins over `KOMA_*` variables, the
project's `.koma.toml` and the user's config file, which still fill in every key the editor
leaves out (DESIGN.md). A bad value is reported with `window/showMessage` naming the key and
where it came from, and the previous valid settings stay in force — a typo in the editor never
takes the server down or silently resets the model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from koma.config import Layer, collect_layers, load_layers, normalize_keys
from koma.errors import KomaError
from koma.settings import deep_merge

if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer

logger = logging.getLogger("koma.lsp.settings")

SECTION = "koma"
EDITOR_SOURCE = "editor settings (koma)"
SESSION_SOURCE = "koma.selectModel"


def editor_section(raw: Any) -> dict[str, Any] | None:
    """The `koma` section of what an editor sent, or None when it sent none."""
    if not isinstance(raw, Mapping):
        return None
    inner = raw.get(SECTION)
    if isinstance(inner, Mapping):
        return dict(inner)
    return None


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """Editors send `null` for "not set"; such keys fall back to env, files and defaults."""
    return {
        str(k): _drop_none(v) if isinstance(v, Mapping) else v
        for k, v in data.items()
        if v is not None
    }


def apply_editor_settings(
    server: KomaLanguageServer, section: Mapping[str, Any] | None, *, initial: bool = False
) -> bool:
    """Validate and apply; on error tell the user and keep the old settings. True if applied.

    `section` is what the editor sent now (None: re-apply what is in force). Later sections
    are laid over the `initializationOptions` one, so a key given only at startup stays.
    """
    if initial:
        editor = dict(section or {})
    elif section is None:
        editor = server.editor_section
    else:
        editor = deep_merge(server.initial_section, dict(section))
    session = dict(server.session_section)
    for key in list(session):
        if section is not None and editor.get(key) != server.editor_section.get(key):
            del session[key]  # the user changed this in the editor since picking a model
    try:
        layers = collect_layers(None, server.workspace_root)
        if editor:
            layers.append(Layer(EDITOR_SOURCE, normalize_keys(_drop_none(editor))))
        if session:
            layers.append(Layer(SESSION_SOURCE, normalize_keys(session)))
        new = load_layers(layers)
    except KomaError as err:
        report_invalid(server, str(err))
        return False
    if initial:
        server.initial_section = dict(editor)
    server.editor_section = editor
    server.session_section = session
    server.apply_settings(new)
    return True


def report_invalid(server: KomaLanguageServer, problem: str) -> None:
    message = f"Koma: {problem}. The previous settings stay in force."
    logger.warning(message)
    server.window_show_message(
        types.ShowMessageParams(type=types.MessageType.Error, message=message)
    )


def _supports_configuration(server: KomaLanguageServer) -> bool:
    workspace = server.client_capabilities.workspace
    return bool(workspace is not None and workspace.configuration)


async def refresh_from_client(server: KomaLanguageServer) -> None:
    """Ask the client for section `koma` and apply it (when the client can answer)."""
    if not _supports_configuration(server):
        return
    try:
        answer = await server.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        )
    except Exception as err:
        logger.warning("workspace/configuration failed: %s", err)
        return
    if not answer:
        return
    section = answer[0]
    if section is None:
        return
    if not isinstance(section, Mapping):
        report_invalid(server, f"the {SECTION!r} settings section must be an object")
        return
    apply_editor_settings(server, section)


def register(server: KomaLanguageServer) -> None:
    """Read settings at initialize, after initialized, and on every configuration change."""

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: KomaLanguageServer, params: types.InitializeParams) -> None:
        options = params.initialization_options
        section = editor_section(options)
        if options is not None and section is None and isinstance(options, Mapping):
            # Accept the bare settings object too; some clients do not nest it under "koma".
            keys = set(options)
            if keys and keys <= set(_known_keys()):
                section = dict(options)
        apply_editor_settings(ls, section, initial=True)

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: KomaLanguageServer, params: types.InitializedParams) -> None:
        await refresh_from_client(ls)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_change(ls: KomaLanguageServer, params: types.DidChangeConfigurationParams) -> None:
        pushed = editor_section(params.settings)
        if _supports_configuration(ls):
            await refresh_from_client(ls)
        elif pushed is not None:
            apply_editor_settings(ls, pushed)


def _known_keys() -> list[str]:
    from koma.settings import KomaSettings

    return [info.alias or name for name, info in KomaSettings.model_fields.items()]
