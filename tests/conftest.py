"""Fixtures every test folder shares: the simulated model server, Koma's provider for it, the
real `koma lsp` driven by an editor-like client, and Koma's built wheel.

    async def test_something(sim, provider):          # a started Simulator and its provider
        sim.add_reply(Reply(content="..."))

    async def test_editor(lsp, sim):                  # runs once as Neovim, once as VS Code
        client = await lsp(settings={"maxTokens": 64})
        client.open("a.py", "x = 1\\n")
        result = await client.command("koma.chat", {"message": "hi"})

A module or folder that needs another server overrides `sim_options` (keyword arguments of
`koma_sim.Simulator`: models, flavor, timings, replies) and, for the provider,
`provider_options`; a fixture with `params` runs every test once per server flavour. A test that
needs a second server at once (the one a hostile repository names, another flavour) starts it
with `start_sim(...)`.

No test sees the developer's `KOMA_*` settings variables or their user `config.toml`
(`no_user_settings`, autouse): a test sets what it needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types

from koma.providers.base import Provider
from koma.providers.lmstudio import LMStudioProvider
from koma.providers.ollama import OllamaProvider
from koma.providers.openai_compat import OpenAICompatProvider
from koma_sim import Simulator
from koma_sim.env import isolated_env
from lsp_support import (
    CHAT_MODEL,
    PROFILES,
    KomaClient,
    LspFactory,
    capabilities_for,
    start_koma_lsp,
    stop_koma_lsp,
)
from provider_support import closed_port

REPO = Path(__file__).resolve().parents[1]


# -- the simulated model server -----------------------------------------------------------------
@pytest.fixture
def start_sim() -> Iterator[Callable[..., Simulator]]:
    """Start a `Simulator(**options)` on a free loopback port; every one stops at teardown."""
    started: list[Simulator] = []

    def start(**options: Any) -> Simulator:
        server = Simulator(**options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """How `sim` is built; override in a module or conftest (default: Ollama serving gpt-oss:20b
    and qwen2.5-coder:1.5b, replying "Hello from the simulator.")."""
    return {}


@pytest.fixture
def sim(start_sim: Callable[..., Simulator], sim_options: dict[str, Any]) -> Simulator:
    """The loopback model server the test's Koma talks to (real HTTP, records every request)."""
    return start_sim(**sim_options)


# -- Koma's provider for it ---------------------------------------------------------------------
@pytest.fixture
def provider_options() -> dict[str, Any]:
    """Extra keyword arguments of the provider class (e.g. LM Studio's `context_length`)."""
    return {}


@pytest_asyncio.fixture
async def provider(sim: Simulator, provider_options: dict[str, Any]) -> AsyncIterator[Provider]:
    """Koma's provider for `sim`'s wire flavour, closed at teardown.

    Retries back off 10 ms instead of Koma's default, so a test of a retried failure is quick.
    """
    options = {"backoff": 0.01, **provider_options}
    built: Provider
    if sim.flavor == "ollama":
        built = OllamaProvider(sim.url, **options)
    elif sim.flavor == "lmstudio":
        built = LMStudioProvider(sim.openai_url, **options)
    else:
        built = OpenAICompatProvider(sim.openai_url, preset=sim.flavor, **options)
    yield built
    await built.aclose()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (a port that was free a moment ago)."""
    return f"http://127.0.0.1:{closed_port()}"


# -- the developer's own settings stay out ------------------------------------------------------
# What Koma itself reads from the environment. The test tools' own `KOMA_LIVE_*`, `KOMA_LLAMA_*`
# and build variables stay: they are how scripts/test.sh hands the session its live server.
PRODUCT_ENV = (
    "KOMA_CONFIG",
    "KOMA_PROVIDER",
    "KOMA_BASE_URL",
    "KOMA_MODEL",
    "KOMA_API_KEY",
    "KOMA_LSP_TOKEN",
    "KOMA_DEBUG",
)


@pytest.fixture(scope="session")
def no_user_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user config path where no file is."""
    return tmp_path_factory.mktemp("user") / "no-config.toml"


@pytest.fixture(autouse=True)
def no_user_settings(no_user_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test: no `KOMA_*` setting of the developer's shell and not their config.toml.

    In-process code that reads settings (`koma.generate_text` without settings, a `Session`
    built from `load_settings()`) would otherwise answer with the developer's model, server,
    token limit or cache; a test sets what it needs itself (monkeypatch, `isolated`).
    """
    for var in PRODUCT_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KOMA_CONFIG", str(no_user_config))


# -- an in-process `koma` command --------------------------------------------------------------
@pytest.fixture(name="isolated")
def isolated_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty git repository as the working directory, no user config, no `KOMA_*` variable:
    what a `koma` command run in this process reads is what the test wrote. A module of CLI
    tests applies it to every test with `pytestmark = pytest.mark.usefixtures("isolated")`.
    (A `koma` process the test starts gets the same from `koma_sim.env.isolated_env`.)
    """
    for var in [v for v in os.environ if v.startswith("KOMA_")]:
        monkeypatch.delenv(var)
    work = tmp_path / "work"
    (work / ".git").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("KOMA_CONFIG", str(tmp_path / "no-user-config.toml"))
    return work


# -- the real `koma lsp` ------------------------------------------------------------------------
@pytest.fixture(params=PROFILES)
def client_profile(request: pytest.FixtureRequest) -> str:
    """Every test using `lsp` runs once as Neovim and once as VS Code (pytest-lsp's recorded
    client capabilities); a module that tests no client difference may pin one by
    parametrizing `client_profile` itself."""
    return str(request.param)


@pytest.fixture
def profile_capabilities(client_profile: str) -> types.ClientCapabilities:
    """A fresh copy of the current profile's capabilities, for tests that change them."""
    return capabilities_for(client_profile)


@pytest_asyncio.fixture
async def lsp(sim: Simulator, client_profile: str, tmp_path: Path) -> AsyncIterator[LspFactory]:
    """Starts `python -m koma.lsp` pointed at `sim` and returns an initialized `KomaClient`.

    `lsp(settings=None, init_options=None, configuration=None, profile=None, env=None,
    capabilities=None)`: the editor sends provider ollama, baseUrl sim.url and model
    gpt-oss:20b unless `settings` overrides keys (`init_options` replaces initializationOptions
    entirely); `configuration` is what the client answers to workspace/configuration, `env`
    adds server environment variables, `capabilities` replaces the profile's. The server runs
    in `tmp_path/workspace`, isolated from the user's config files and environment (home:
    `tmp_path/home`, user config `tmp_path/home/no-config.toml`). Shutdown is at teardown.
    """
    clients: list[KomaClient] = []
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    home = tmp_path / "home"
    home.mkdir()

    async def start(
        settings: dict[str, Any] | None = None,
        init_options: Any = None,
        configuration: dict[str, Any] | None = None,
        profile: str | None = None,
        env: dict[str, str] | None = None,
        capabilities: types.ClientCapabilities | None = None,
    ) -> KomaClient:
        koma = {"provider": "ollama", "baseUrl": sim.url, "model": CHAT_MODEL}
        koma.update(settings or {})
        client = await start_koma_lsp(
            env={**isolated_env(home), **(env or {})},
            root=workspace,
            capabilities=capabilities or capabilities_for(profile or client_profile),
            initialization_options={"koma": koma} if init_options is None else init_options,
            configuration=configuration,
        )
        clients.append(client)
        return client

    yield start
    for client in clients:
        await stop_koma_lsp(client)


# -- packaging ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def koma_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Koma's wheel built from this checkout (as the README and `npm run package` build it).

    From a copy that holds the test tools too (`testing/`, `tests/`), so a wheel that picked
    them up would show it; setuptools' build/ scratch directory stays out of the checkout.
    """
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("server", "testing", "tests"):
        shutil.copytree(
            REPO / name,
            src / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc", "build"),
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("koma_lsp-*.whl")
    return built
