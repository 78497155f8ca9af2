"""Where the pinned real agent CLIs are installed, and the argv/env that run them against the scripted servers.

``tests/e2e/install_agents.sh`` installs them with npm into ``$RLM_AGENTS_DIR`` (default
``~/.cache/rlm-agents``). The locators return None when a CLI is absent, so tests skip with
``skip_reason(...)`` instead of failing on machines without them.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

CODEX_PACKAGE = "@openai/codex"
CODEX_VERSION = "0.169.0"
CLAUDE_PACKAGE = "@anthropic-ai/claude-code"
CLAUDE_VERSION = "2.1.330"
GEMINI_PACKAGE = "@google/gemini-cli"
GEMINI_VERSION = "0.61.0"
OPENCODE_PACKAGE = "opencode-ai"
OPENCODE_VERSION = "1.18.33"

# The provider id the e2e tests configure codex with (`-c model_provider=rlmtest`).
CODEX_PROVIDER = "rlmtest"
# Claude Code refuses --dangerously-skip-permissions / bypassPermissions as root unless this is set.
CLAUDE_ROOT_OVERRIDE = {"IS_SANDBOX": "1"}


def agents_dir() -> Path:
    return Path(os.environ.get("RLM_AGENTS_DIR") or Path.home() / ".cache" / "rlm-agents")


def _installed_version(package: str, root: Path | None = None) -> str | None:
    manifest = (root or agents_dir()) / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _platform_suffix() -> str | None:
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system())
    return f"{system}-{machine}" if machine and system else None


def codex_binary() -> str | None:
    """``node_modules/.bin/codex`` (a node launcher that spawns the native binary), if installed."""
    if _installed_version(CODEX_PACKAGE) != CODEX_VERSION:
        return None
    launcher = agents_dir() / "node_modules" / ".bin" / "codex"
    return str(launcher) if _executable(launcher) and codex_native() is not None else None


def codex_native() -> str | None:
    """The native codex executable of the platform package (no node process in between)."""
    suffix = _platform_suffix()
    if suffix is None:
        return None
    vendor = agents_dir() / "node_modules" / f"{CODEX_PACKAGE}-{suffix}" / "vendor"
    for binary in sorted(vendor.glob("*/bin/codex")):
        if _executable(binary):
            return str(binary)
    return None


def claude_binary() -> str | None:
    """The native claude executable, if installed.

    ``node_modules/.bin/claude`` is the native binary once the package's postinstall has run;
    without it (``--ignore-scripts``) it is a 500-byte shell stub that exits 1, so fall back to the
    platform package's binary.
    """
    if _installed_version(CLAUDE_PACKAGE) != CLAUDE_VERSION:
        return None
    launcher = agents_dir() / "node_modules" / ".bin" / "claude"
    if _executable(launcher) and launcher.stat().st_size > 1_000_000:
        return str(launcher)
    suffix = _platform_suffix()
    native = agents_dir() / "node_modules" / f"{CLAUDE_PACKAGE}-{suffix}" / "claude"
    return str(native) if suffix and _executable(native) else None


def gemini_binary() -> str | None:
    """``node_modules/.bin/gemini`` (the bundled node script), if installed."""
    if _installed_version(GEMINI_PACKAGE) != GEMINI_VERSION:
        return None
    launcher = agents_dir() / "node_modules" / ".bin" / "gemini"
    return str(launcher) if _executable(launcher) else None


def opencode_binary() -> str | None:
    """The native opencode executable: ``.bin/opencode`` once the package is installed, else the platform package's."""
    if _installed_version(OPENCODE_PACKAGE) != OPENCODE_VERSION:
        return None
    launcher = agents_dir() / "node_modules" / ".bin" / "opencode"
    if _executable(launcher) and launcher.stat().st_size > 1_000_000:
        return str(launcher)
    suffix = _platform_suffix()
    native = agents_dir() / "node_modules" / f"{OPENCODE_PACKAGE.removesuffix('-ai')}-{suffix}" / "bin" / "opencode"
    return str(native) if suffix and _executable(native) else None


def skip_reason(agent: str) -> str:
    version = {"codex": CODEX_VERSION, "claude": CLAUDE_VERSION, "gemini": GEMINI_VERSION,
               "opencode": OPENCODE_VERSION}[agent]
    return (f"{agent} {version} is not installed in {agents_dir()} (set RLM_AGENTS_DIR, or run "
            f"tests/e2e/install_agents.sh)")


def codex_provider_args(base_url: str) -> list[str]:
    """``agent.args`` pointing codex at a scripted Responses server; fail fast instead of retrying."""
    provider = (f'{{name="{CODEX_PROVIDER}", base_url="{base_url}", wire_api="responses", '
                f"request_max_retries=0, stream_max_retries=0}}")
    return ["--skip-git-repo-check", "-c", f"model_provider={CODEX_PROVIDER}",
            "-c", f"model_providers.{CODEX_PROVIDER}={provider}"]


def codex_env(codex_home: str | Path) -> dict[str, str]:
    """Env additions for codex: its own config/state dir, nothing inherited from a real login."""
    # A throwaway HOME as for claude (below): codex's tool shells are login shells too (`bash -lc`).
    return {"CODEX_HOME": str(codex_home), "HOME": str(Path(codex_home) / "home")}


def claude_env(base_url: str, config_dir: str | Path) -> dict[str, str]:
    """Env additions for claude: scripted server, throwaway config dir, no network besides the server."""
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "dummy",
        "CLAUDE_CONFIG_DIR": str(config_dir),
        # Telemetry, error reporting, auto-update and the /api/hello probe all off.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        # A scripted 5xx/429 should fail the worker at once, not after minutes of backoff.
        "CLAUDE_CODE_MAX_RETRIES": "0",
        # Its tool shells are login shells: with the real HOME they run the developer's profile (here
        # `pyenv rehash`, whose lock a shell killed at the CLI's exit leaves behind, and every later
        # shell then waits 60 s on it). A throwaway HOME, like the throwaway config dir.
        "HOME": str(Path(config_dir) / "home"),
    }


def gemini_env(base_url: str, home: str | Path) -> dict[str, str]:
    """Env additions for gemini: scripted server, a throwaway home holding its settings, no telemetry.

    ``GOOGLE_GEMINI_BASE_URL`` alone selects a "gateway" auth that a headless run refuses ("Invalid auth
    method selected"), so the settings choose the API-key auth, which honours the base URL too.
    """
    settings = Path(home) / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    }), encoding="utf-8")
    return {"GEMINI_API_KEY": "dummy", "GOOGLE_GEMINI_BASE_URL": base_url, "GEMINI_CLI_HOME": str(home),
            "HOME": str(home)}


OPENCODE_PROVIDER = "rlmtest"


def opencode_env(base_url: str, home: str | Path, models: list[str]) -> dict[str, str]:
    """Env additions for opencode: a provider `rlmtest` (the OpenAI Responses API at the scripted server)
    given inline, a throwaway home and XDG directories, and nothing fetched: no models.dev, no updates, no
    default plugins or LSP downloads."""
    home = Path(home)
    # `reasoning`: a model opencode knows nothing of gets --variant low/medium/high only when it says it reasons
    declared = {model: {"name": model, "reasoning": True} for model in models}
    config = {"$schema": "https://opencode.ai/config.json", "autoupdate": False, "share": "disabled",
              "provider": {OPENCODE_PROVIDER: {"npm": "@ai-sdk/openai", "name": OPENCODE_PROVIDER,
                                               "options": {"baseURL": base_url, "apiKey": "dummy"},
                                               "models": declared}}}
    return {"OPENCODE_CONFIG_CONTENT": json.dumps(config), "OPENCODE_CONFIG_DIR": str(home / "opencode"),
            "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_SHARE": "1", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_STATE_HOME": str(home / ".local" / "state")}


def scrubbed_environ() -> dict[str, str]:
    """os.environ without real credentials or config locations of any of the CLIs."""
    drop = ("OPENAI_", "CODEX_", "ANTHROPIC_", "CLAUDE_", "AWS_BEARER_TOKEN_BEDROCK", "GEMINI_", "GOOGLE_",
            "OPENCODE_")
    return {name: value for name, value in os.environ.items() if not name.startswith(drop)}
