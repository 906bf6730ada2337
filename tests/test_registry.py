"""Provider selection: names, settings pass-through, and the `auto` probe."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable

import pytest

from koma.errors import ConfigError, ProviderUnreachable
from koma.providers import registry
from koma.providers.lmstudio import LMStudioProvider
from koma.providers.ollama import OllamaProvider
from koma.providers.openai_compat import OpenAICompatProvider
from koma.providers.registry import DEFAULT_URLS, create_provider, resolve_provider
from koma.settings import KomaSettings
from koma_sim import Simulator


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ollama_sim(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim(flavor="ollama")


@pytest.fixture
def lmstudio_sim(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim(flavor="lmstudio")


@pytest.fixture
def no_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import koma.providers.embedded` fail, as on an install without the extra."""
    monkeypatch.setitem(sys.modules, "koma.providers.embedded", None)


def test_names_build_the_right_provider_with_default_urls() -> None:
    ollama = create_provider("ollama")
    assert isinstance(ollama, OllamaProvider) and ollama.base_url == DEFAULT_URLS["ollama"]
    lms = create_provider("lmstudio")
    assert isinstance(lms, LMStudioProvider) and lms.base_url == "http://localhost:1234/v1"
    llama = create_provider("llamacpp")
    assert isinstance(llama, OpenAICompatProvider) and llama.preset == "llamacpp"
    assert llama.base_url == "http://localhost:8080/v1"
    vllm = create_provider("vllm", "http://127.0.0.1:9000")
    assert vllm.base_url == "http://127.0.0.1:9000/v1" and vllm.name == "vllm"


def test_generic_openai_uses_given_url_then_env_then_lm_studio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KOMA_BASE_URL", raising=False)
    assert create_provider("openai").base_url == "http://localhost:1234/v1"
    monkeypatch.setenv("KOMA_BASE_URL", "http://127.0.0.1:7000/v1")
    assert create_provider("openai").base_url == "http://127.0.0.1:7000/v1"
    given = create_provider("openai", "http://127.0.0.1:7001", api_key="k")
    assert isinstance(given, OpenAICompatProvider)
    assert given.base_url == "http://127.0.0.1:7001/v1" and given.api_key == "k"


def test_settings_reach_ollama() -> None:
    settings = KomaSettings.model_validate(
        {"keepAlive": "1h", "numCtx": 16384, "gpu": {"numGpu": 12, "useMmap": False}}
    )
    p = create_provider("ollama", "http://127.0.0.1:1", settings=settings)
    assert isinstance(p, OllamaProvider)
    assert (p.keep_alive, p.num_ctx) == ("1h", 16384)
    assert p.gpu["num_gpu"] == 12 and p.gpu["use_mmap"] is False


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'gpt4'"):
        create_provider("gpt4")
    with pytest.raises(ConfigError):
        create_provider("auto")


def test_missing_embedded_extra_says_what_to_install(no_embedded: None) -> None:
    with pytest.raises(ConfigError) as info:
        create_provider("embedded")
    assert "scripts/install.sh" in (info.value.hint or "")


async def test_explicit_provider_is_built_without_probing() -> None:
    settings = KomaSettings(provider="lmstudio", base_url="http://127.0.0.1:1/v1")
    start = time.perf_counter()
    p = await resolve_provider(settings)
    assert isinstance(p, LMStudioProvider) and p.base_url == "http://127.0.0.1:1/v1"
    assert time.perf_counter() - start < 0.1


async def test_auto_probe_of_closed_ports_is_fast_and_names_what_it_tried(
    no_embedded: None,
) -> None:
    candidates = [
        ("ollama", f"http://127.0.0.1:{closed_port()}", "/api/version"),
        ("lmstudio", f"http://127.0.0.1:{closed_port()}/v1", "/models"),
    ]
    start = time.perf_counter()
    with pytest.raises(ProviderUnreachable) as info:
        await resolve_provider(KomaSettings(), candidates)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.3
    assert candidates[0][1] in info.value.message and candidates[1][1] in info.value.message
    assert info.value.exit_code == 3


async def test_auto_prefers_ollama_when_both_answer(
    ollama_sim: Simulator, lmstudio_sim: Simulator
) -> None:
    candidates = [
        ("ollama", ollama_sim.url, "/api/version"),
        ("lmstudio", lmstudio_sim.openai_url, "/models"),
    ]
    p = await resolve_provider(KomaSettings(numCtx=4096), candidates)
    assert isinstance(p, OllamaProvider) and p.base_url == ollama_sim.url
    assert p.num_ctx == 4096
    await p.aclose()


async def test_auto_takes_lm_studio_when_ollama_is_down(lmstudio_sim: Simulator) -> None:
    candidates = [
        ("ollama", f"http://127.0.0.1:{closed_port()}", "/api/version"),
        ("lmstudio", lmstudio_sim.openai_url, "/models"),
    ]
    p = await resolve_provider(KomaSettings(), candidates)
    assert isinstance(p, LMStudioProvider) and p.base_url == lmstudio_sim.openai_url
    await p.aclose()


async def test_auto_does_not_mistake_lm_studio_for_ollama(lmstudio_sim: Simulator) -> None:
    """LM Studio answers every path with HTTP 200; only a real `/api/version` counts."""
    candidates = [
        ("ollama", lmstudio_sim.url, "/api/version"),
        ("lmstudio", lmstudio_sim.openai_url, "/models"),
    ]
    p = await resolve_provider(KomaSettings(), candidates)
    assert isinstance(p, LMStudioProvider)
    await p.aclose()


async def test_auto_with_a_base_url_detects_the_server_kind(
    ollama_sim: Simulator, lmstudio_sim: Simulator
) -> None:
    p = await resolve_provider(KomaSettings(base_url=ollama_sim.url))
    assert isinstance(p, OllamaProvider)
    await p.aclose()
    p = await resolve_provider(KomaSettings(base_url=lmstudio_sim.url))
    assert isinstance(p, LMStudioProvider) and p.base_url == lmstudio_sim.openai_url
    await p.aclose()


async def test_auto_falls_back_to_embedded_when_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "embedded_available", lambda: True)
    candidates = [("ollama", f"http://127.0.0.1:{closed_port()}", "/api/version")]
    p = await resolve_provider(KomaSettings(), candidates)
    assert p.name == "embedded"
