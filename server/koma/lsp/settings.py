"""Editor settings: `initializationOptions.koma`, `workspace/configuration`, didChangeConfiguration.

What the editor sends counts like a command-line flag: it wins over `KOMA_*` variables, the
project's `.koma.toml` and the user's config file, which still fill in every key the editor
leaves out (docs/providers.md, "Choosing a provider"). A bad value is reported with
`window/showMessage` naming the key and where it came from, and the previous valid settings stay
in force — a typo in the editor never takes the server down or silently resets the model.

Trust (docs/protocol.md#trust): the project's `.koma.toml` is read from the workspace folder
only, and its sensitive keys apply only once the user trusted that exact file. When some were
ignored the server tells the user once per file version — `koma/untrustedConfig` to a client
that offered a trust prompt (`initializationOptions.client.trustPrompt`), `window/showMessage`
to any other. `client.workspaceTrusted = false` (VS Code's Restricted Mode) ignores the file's
sensitive keys whatever the trust store says, and refuses the tools that run or write.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from koma.errors import KomaError
from koma.lsp import protocol
from koma.lsp.params import first_argument

# koma.settings (pydantic) are imported where settings are read, after the
# `initialize` reply: an editor waits for that reply (docs/performance.md, cold start).
if TYPE_CHECKING:
    from koma.lsp.server import KomaLanguageServer
    from koma.lsp.state import TrustState
    from koma.settings.layers import Layer, Resolved

logger = logging.getLogger("koma.lsp.settings")

SECTION = "koma"
EDITOR_SOURCE = "editor settings (koma)"
PICKED_SOURCE = "koma.selectModel"
CLIENT_SECTION = "client"
RESTRICTED_REASON = (
    "the workspace is in Restricted Mode, so Koma does not run or change anything in it; "
    "the user can trust the workspace (Workspaces: Manage Workspace Trust) to allow it"
)


def trust_state(server: KomaLanguageServer) -> TrustState:
    """The server's trust state: what the client said about trust, and the project file."""
    return server.state.trust


def restricted_reason(server: KomaLanguageServer) -> str | None:
    """Why tools that run or write are refused, or None when they are not."""
    return None if trust_state(server).workspace_trusted else RESTRICTED_REASON


def client_options(raw: Any) -> tuple[bool, bool]:
    """(trustPrompt, workspaceTrusted) from `initializationOptions.client`.

    Absent means a generic client: no prompt, a trusted workspace. A value of the wrong type
    for `workspaceTrusted` counts as untrusted: a confused client gets the safe side.
    """
    section = raw.get(CLIENT_SECTION) if isinstance(raw, Mapping) else None
    if not isinstance(section, Mapping):
        return False, True
    prompt = section.get("trustPrompt") is True
    trusted = section.get("workspaceTrusted", True)
    if not isinstance(trusted, bool):
        logger.warning("initializationOptions.client.workspaceTrusted is not a boolean")
        trusted = False
    return prompt, trusted


def editor_section(raw: Any) -> dict[str, Any] | None:
    """The `koma` section of what an editor sent, or None when it sent none."""
    if not isinstance(raw, Mapping):
        return None
    inner = raw.get(SECTION)
    if isinstance(inner, Mapping):
        return dict(inner)
    return None


def apply_editor_settings(
    server: KomaLanguageServer, section: Mapping[str, Any] | None, *, initial: bool = False
) -> bool:
    """Validate and apply; on error tell the user and keep the old settings. True if applied.

    `section` is what the editor sent now (None: re-apply what is in force). Later sections
    are laid over the `initializationOptions` one, so a key given only at startup stays.
    """
    from koma.settings.keys import deep_merge, drop_none, normalize_keys
    from koma.settings.layers import Layer, Sources, gather_sources, resolve

    sections = server.state.settings
    if initial:
        editor = dict(section or {})
    elif section is None:
        editor = sections.editor_section
    else:
        editor = deep_merge(sections.initial_section, dict(section))
    picked = dict(sections.picked_section)
    for key in list(picked):
        if section is not None and editor.get(key) != sections.editor_section.get(key):
            del picked[key]  # the user changed this in the editor since picking a model
    state = trust_state(server)
    editor_layers: list[Layer] = []
    if editor:
        editor_layers.append(Layer(EDITOR_SOURCE, normalize_keys(drop_none(editor))))
    if picked:
        editor_layers.append(Layer(PICKED_SOURCE, normalize_keys(picked)))
    try:
        sources = gather_sources(
            None,
            workspace=server.workspace_root,
            search_cwd=False,
            workspace_trusted=state.workspace_trusted,
        )
        resolved = resolve(Sources([*sources.layers, *editor_layers], sources.project))
    except KomaError as err:
        report_invalid(server, str(err))
        if not initial:
            return False  # the previous settings stay
        # At the start there are none to keep: bare defaults would drop the user's own server,
        # key and secret patterns because of one typo in a repository's .koma.toml. Apply the
        # layers that are valid instead (the error is reported above).
        fallback = _valid_part(server, editor_layers, state.workspace_trusted)
        if fallback is None:
            return False
        resolved, editor = fallback, {}
    if initial:
        sections.initial_section = dict(editor)
    sections.editor_section = editor
    sections.picked_section = picked
    state.project = resolved.project
    state.warnings = resolved.warnings
    server.apply_settings(resolved.settings)
    report_trust(server)
    return True


def _valid_part(
    server: KomaLanguageServer, editor_layers: list[Layer], workspace_trusted: bool
) -> Resolved | None:
    """The settings of every layer that is valid on its own (a project file that cannot be
    read or parsed is left out); None when even those do not resolve."""
    from koma.settings.layers import Sources, gather_sources, resolve, valid_layers

    try:
        sources = gather_sources(
            None,
            workspace=server.workspace_root,
            search_cwd=False,
            workspace_trusted=workspace_trusted,
        )
    except KomaError:
        try:
            sources = gather_sources(None, search_cwd=False)  # without the project file
        except KomaError:
            return None
    layers, _ = valid_layers([*sources.layers, *editor_layers])
    try:
        return resolve(Sources(layers, sources.project))
    except KomaError:
        return None


def report_trust(server: KomaLanguageServer) -> None:
    """Tell the user, once per file version (or message), what was ignored and the fix."""
    state = trust_state(server)
    if not state.ready:
        return
    project = state.project
    project_message = project.message() if project is not None else None
    for message in state.warnings:
        if project is not None and message == project_message:
            key = (str(project.path), project.sha256 or project.reason or "")
        else:
            key = ("", message)
        if key in state.shown:
            continue
        state.shown.add(key)
        logger.warning(message)
        if project is not None and message == project_message and project.state == "restricted":
            continue  # VS Code shows Restricted Mode itself; trusting the file would not help
        if (
            project is not None
            and message == project_message
            and project.state == "untrusted"
            and state.trust_prompt
        ):
            server.protocol.notify(
                protocol.UNTRUSTED_CONFIG, protocol.untrusted_config(project, message)
            )
            continue
        server.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=message)
        )


def trust_config(
    server: KomaLanguageServer, params: Mapping[str, Any]
) -> protocol.TrustConfigReply:
    """`koma.trustConfig`: trust the workspace's project file, if it still has the shown hash.

    Only the file this server found for its workspace can be trusted this way, and only when
    its bytes still hash to what the user was shown: a file changed after the prompt is not
    trusted, so a click can never approve contents the user did not see.
    """
    from koma.settings.files import read_project, trust_store
    from koma.settings.layers import sensitive_keys_in

    path, sha = params.get("path"), params.get("sha256")
    if not isinstance(path, str) or not isinstance(sha, str) or not path or not sha:
        return {"trusted": False, "message": "koma.trustConfig needs `path` and `sha256`"}
    project = trust_state(server).project
    if project is None or os.path.realpath(path) != str(project.path):
        return {
            "trusted": False,
            "message": f"{path} is not this workspace's project config; nothing was trusted",
        }
    try:
        read, values = read_project(project.path)
    except KomaError as err:
        return {"trusted": False, "message": f"{err}; nothing was trusted"}
    if read.sha256 != sha.lower():
        return {
            "trusted": False,
            "message": f"{read.path} changed since it was shown (sha256 {read.sha256[:12]}, "
            f"shown {sha[:12]}); nothing was trusted — review it again",
        }
    try:
        trust_store().trust(read.path, read.sha256)
    except OSError as err:
        return {"trusted": False, "message": f"could not store the trust: {err}"}
    logger.info("trusted %s (sha256 %s)", read.path, read.sha256)
    apply_editor_settings(server, None)
    answer: protocol.TrustConfigReply = {
        "trusted": True,
        "path": str(read.path),
        "sha256": read.sha256,
        "keys": sensitive_keys_in(values),
    }
    if not trust_state(server).workspace_trusted:
        answer["message"] = "stored; the keys apply once the workspace is trusted"
    return answer


def set_workspace_trust(
    server: KomaLanguageServer, params: Mapping[str, Any]
) -> protocol.WorkspaceTrustReply:
    """`koma.setWorkspaceTrust`: the editor's workspace trust changed at run time."""
    trusted = params.get("trusted")
    if not isinstance(trusted, bool):
        return {"error": "koma.setWorkspaceTrust needs `trusted`: true or false"}
    state = trust_state(server)
    if state.workspace_trusted != trusted:
        state.workspace_trusted = trusted
        logger.info("workspace trust: %s", trusted)
        apply_editor_settings(server, None)
    return {"workspaceTrusted": state.workspace_trusted}


def report_invalid(server: KomaLanguageServer, problem: str) -> None:
    message = f"Koma: {problem}. The previous settings stay in force."
    logger.warning(message)
    server.window_show_message(
        types.ShowMessageParams(type=types.MessageType.Error, message=message)
    )


def _supports_configuration(server: KomaLanguageServer) -> bool:
    workspace = server.client_capabilities.workspace
    return bool(workspace is not None and workspace.configuration)


async def refresh_from_client(server: KomaLanguageServer) -> bool:
    """Ask the client for section `koma` and apply it (when the client can answer).

    True when the client answered with a section (applied, or reported as invalid).
    """
    if not _supports_configuration(server):
        return False
    try:
        answer = await server.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        )
    except Exception as err:  # any client failure: the settings in force stay
        logger.warning("workspace/configuration failed: %s", err)
        return False
    if not answer:
        return False
    section = answer[0]
    if section is None:
        return False
    if not isinstance(section, Mapping):
        report_invalid(server, f"the {SECTION!r} settings section must be an object")
        return True
    apply_editor_settings(server, section)
    return True


def register(server: KomaLanguageServer) -> None:
    """Read settings at initialize, after initialized, and on every configuration change."""

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: KomaLanguageServer, params: types.InitializeParams) -> None:
        options = params.initialization_options
        state = trust_state(ls)
        state.trust_prompt, state.workspace_trusted = client_options(options)

        def apply() -> None:
            section = editor_section(options)
            if options is not None and section is None and isinstance(options, Mapping):
                # Accept the bare settings object too; some clients do not nest it under "koma".
                keys = set(options)
                if keys and keys <= set(_known_keys()):
                    section = dict(options)
            apply_editor_settings(ls, section, initial=True)

        # Validated after the reply: on `initialized`, or when something reads them sooner.
        ls.defer_settings(apply)

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: KomaLanguageServer, params: types.InitializedParams) -> None:
        ls.apply_pending_settings()
        trust_state(ls).ready = True
        report_trust(ls)
        await refresh_from_client(ls)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_change(ls: KomaLanguageServer, params: types.DidChangeConfigurationParams) -> None:
        pushed = editor_section(params.settings)
        if _supports_configuration(ls):
            if await refresh_from_client(ls):
                return
        elif pushed is not None:
            apply_editor_settings(ls, pushed)
            return
        # Nothing new from the editor: read the files again (a changed .koma.toml loses trust).
        apply_editor_settings(ls, None)

    @server.command("koma.trustConfig")
    def trust_config_command(ls: KomaLanguageServer, *args: Any) -> protocol.TrustConfigReply:
        return trust_config(ls, first_argument(args))

    @server.command("koma.setWorkspaceTrust")
    def set_workspace_trust_command(
        ls: KomaLanguageServer, *args: Any
    ) -> protocol.WorkspaceTrustReply:
        return set_workspace_trust(ls, first_argument(args))


def _known_keys() -> list[str]:
    from koma.settings import KomaSettings

    return [info.alias or name for name, info in KomaSettings.model_fields.items()]
