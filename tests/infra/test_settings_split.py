"""The settings split (issue 12 item 6): each service builds only its own model from the one flat environment, so a
search process never holds an LLM provider's key; the environment names are those of the whole ``Settings``; the
entry points and ``build`` functions take their service's model; a local child process starts without the other
services' secrets; and each service started as ``python -m services.<name>`` serves from an environment that holds
every key.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path

import pytest

from shared.config import (
    SERVICE_SETTINGS,
    BaseServiceSettings,
    ClientSettings,
    ExtractionSettings,
    InferenceSettings,
    OrchestratorSettings,
    SearchSettings,
    Settings,
    env_names,
    readers,
    service_environ,
)
from shared.healthcheck import check
from shared.procs import start_child, stop_child

#: One canary per secret environment name (every vendor alias too) and a database URL with a password.
CANARIES = {
    "TAVILY_API_KEY": "tvly-CANARYtavily0001",
    "OPENAI_API_KEY": "sk-CANARYopenai0002",
    "ANTHROPIC_API_KEY": "sk-ant-CANARYanthropic0003",
    "BRIGHTDATA_API_TOKEN": "CANARYbrightdata0004",
    "PERPLEXITY_API_KEY": "pplx-CANARYperplexity0005",
    "VANTAGE_AUTH_TOKEN": "CANARYauth0006",
}
DB_PASSWORD = "CANARYdbpass0007"
PROVIDER_FIELDS = {f"{p}_api_key" for p in ("tavily", "openai", "anthropic", "brightdata", "perplexity")}
#: Which provider keys each service may hold.
OWN_KEYS = {
    "search": {"tavily_api_key"},
    "inference": {"openai_api_key", "anthropic_api_key", "brightdata_api_key", "perplexity_api_key"},
    "extraction": set(),
    "orchestrator": set(),
}


@pytest.fixture
def every_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """An environment holding every service's keys, as a shared .env or a careless compose file would."""
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://vantage:{DB_PASSWORD}@127.0.0.1:9/vantage")
    monkeypatch.setenv("VANTAGE_SEARCH_MAX_RESULTS", "7")
    monkeypatch.setenv("VANTAGE_OPENAI_CONCURRENCY", "3")
    monkeypatch.setenv("VANTAGE_EXTRACTION_MAX_ANSWER_CHARS", "1234")
    monkeypatch.setenv("VANTAGE_LEASE_SECONDS", "42")
    return dict(CANARIES)


def _text(s: BaseServiceSettings) -> str:
    """Everything a settings object can show: repr, str and a JSON dump with the secrets revealed."""
    dumped = s.model_dump(mode="python")
    revealed = {k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v) for k, v in dumped.items()}
    return repr(s) + str(s) + json.dumps(revealed, default=str)


def test_search_settings_from_an_environment_with_every_key_hold_only_tavilys(every_key):
    s = SearchSettings()
    for field in PROVIDER_FIELDS - {"tavily_api_key"}:
        assert not hasattr(s, field), field
    assert not hasattr(s, "database_url")
    text = _text(s)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "BRIGHTDATA_API_TOKEN", "PERPLEXITY_API_KEY"):
        assert CANARIES[name] not in text, name
    assert DB_PASSWORD not in text and "openai" not in text and "anthropic" not in text and "brightdata" not in text
    assert s.api_key("tavily") == CANARIES["TAVILY_API_KEY"] and s.search_max_results == 7
    with pytest.raises(AttributeError):
        s.api_key("openai")  # type: ignore[arg-type]  # not a provider of this service: no silent None


def test_a_dot_env_with_every_key_gives_each_model_only_its_own(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in (*CANARIES, "VANTAGE_OPENAI_API_KEY", "VANTAGE_TAVILY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in CANARIES.items()) + "VANTAGE_SEARCH_DEPTH=basic\n")
    search, extraction = SearchSettings(), ExtractionSettings()  # extra="ignore": the other keys are no error
    assert search.api_key("tavily") == CANARIES["TAVILY_API_KEY"] and search.search_depth == "basic"
    assert CANARIES["OPENAI_API_KEY"] not in _text(search)
    assert not any(v in _text(extraction) for k, v in CANARIES.items() if k != "VANTAGE_AUTH_TOKEN")


@pytest.mark.parametrize("name", list(SERVICE_SETTINGS))
def test_each_service_model_holds_its_own_keys_and_no_other(every_key, name):
    s = SERVICE_SETTINGS[name]()
    held = {f for f in PROVIDER_FIELDS if hasattr(s, f)}
    assert held == OWN_KEYS[name]
    text = _text(s)
    for field in PROVIDER_FIELDS - OWN_KEYS[name]:
        env = env_names(Settings, field)
        assert not any(CANARIES.get(e, "\0") in text for e in env), (name, field)
    assert (DB_PASSWORD in text) == (name in ("inference", "orchestrator"))
    assert s.auth_token is not None and s.auth_token.get_secret_value() == CANARIES["VANTAGE_AUTH_TOKEN"]
    for secret in CANARIES.values():
        assert secret not in repr(s)  # SecretStr: even its own keys never print


def test_each_model_reads_its_own_non_secret_keys_from_the_flat_environment(every_key):
    assert InferenceSettings().openai_concurrency == 3
    assert ExtractionSettings().extraction_max_answer_chars == 1234
    assert OrchestratorSettings().lease_seconds == 42
    assert OrchestratorSettings().database_url.startswith("postgresql://vantage:")


def test_the_whole_settings_is_every_service_model_with_the_same_environment_names():
    full = Settings.model_fields
    union = set().union(*(cls.model_fields for cls in SERVICE_SETTINGS.values()))
    assert set(full) - union == set()  # every key is read by a service (sandbox_port: the orchestrator's CLI)
    for name, cls in SERVICE_SETTINGS.items():
        assert issubclass(Settings, cls)
        for field in cls.model_fields:
            assert env_names(cls, field) == env_names(Settings, field), (name, field)
            assert name in readers(field)
    # Vendor names and aliases are unchanged.
    assert env_names(SearchSettings, "tavily_api_key") == ["TAVILY_API_KEY", "VANTAGE_TAVILY_API_KEY"]
    assert env_names(InferenceSettings, "brightdata_api_key") == [
        "BRIGHTDATA_API_TOKEN", "BRIGHTDATA_API_KEY", "VANTAGE_BRIGHTDATA_API_KEY"]
    assert env_names(OrchestratorSettings, "database_url") == ["VANTAGE_DATABASE_URL", "DATABASE_URL"]
    assert env_names(ExtractionSettings, "extraction_cache_max_bytes") == ["VANTAGE_EXTRACTION_CACHE_MAX_BYTES"]


def test_for_service_gives_a_services_view_of_the_whole_configuration(every_key):
    full = Settings(search_max_results=5)
    view = full.for_service("search")
    assert type(view) is SearchSettings and view.search_max_results == 5
    assert set(type(view).model_fields) == set(SearchSettings.model_fields)
    assert CANARIES["OPENAI_API_KEY"] not in _text(view)


def test_each_entry_point_builds_its_own_model():
    from services.extraction.server import build as extraction_build
    from services.inference.server import build as inference_build
    from services.orchestrator.api.server import build as orchestrator_build
    from services.search.server import build as search_build

    builds = {"search": search_build, "inference": inference_build, "extraction": extraction_build,
              "orchestrator": orchestrator_build}
    for name, build in builds.items():
        annotation = inspect.signature(build).parameters["settings"].annotation
        assert annotation == SERVICE_SETTINGS[name].__name__, (name, annotation)
        main = (Path(__file__).resolve().parents[2] / "services" / name / "__main__.py").read_text()
        assert f"{SERVICE_SETTINGS[name].__name__})" in main, name  # main("<name>", build, <Model>)


def test_service_environ_drops_other_services_secrets_only():
    environ = {**CANARIES, "vantage_openai_api_key": "x", "BRIGHTDATA_API_KEY": "y", "VANTAGE_LOG_LEVEL": "INFO",
               "PATH": "/usr/bin", "DATABASE_URL": "sqlite+aiosqlite:///x.db"}
    search = service_environ("search", environ)
    assert search.keys() == {"TAVILY_API_KEY", "VANTAGE_AUTH_TOKEN", "VANTAGE_LOG_LEVEL", "PATH", "DATABASE_URL"}
    inference = service_environ("inference", environ)
    assert "TAVILY_API_KEY" not in inference and {"OPENAI_API_KEY", "BRIGHTDATA_API_KEY"} <= inference.keys()
    assert not set(service_environ("orchestrator", environ)) & {k for k in CANARIES if k != "VANTAGE_AUTH_TOKEN"}
    assert service_environ("sandbox", environ) == environ


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize("name", ["search", "extraction", "inference", "orchestrator"])
def test_each_service_starts_from_an_environment_with_every_key_and_keeps_only_its_own(name, tmp_path, sandbox_url):
    # A real `python -m services.<name>` (shared.procs, as `vantage up` starts it): it becomes SERVING with its
    # own model, and its process environment holds no other service's secret.
    env = {**CANARIES, "VANTAGE_AUTH_TOKEN": "", "VANTAGE_SANDBOX_URL": sandbox_url, "VANTAGE_LOG_LEVEL": "WARNING",
           "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'vantage.db'}"}
    child = start_child(name, env=env, log_dir=tmp_path)
    try:
        seen = _environ_of(child.proc.pid)
        own_env = {e for f in OWN_KEYS[name] for e in env_names(Settings, f)}
        for key in CANARIES.keys() - {"VANTAGE_AUTH_TOKEN"}:
            assert (key in seen) == (key in own_env), (name, key)
        probe = asyncio.run(check(ClientSettings(auth_token=None, tls=False), child.address))
        assert probe.status == "SERVING", probe
    finally:
        stop_child(child, grace=5)
