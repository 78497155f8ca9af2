#!/usr/bin/env bash
# Install the pinned agent CLIs for the e2e tests into $RLM_AGENTS_DIR (default ~/.cache/rlm-agents).
# Idempotent: exits at once when every pinned version is already there. Needs node + npm and
# access to the npm registry; nothing is installed globally.
set -euo pipefail

CODEX_VERSION=0.169.0
CLAUDE_VERSION=2.1.330
GEMINI_VERSION=0.61.0
OPENCODE_VERSION=1.18.33
DIR="${RLM_AGENTS_DIR:-$HOME/.cache/rlm-agents}"
NM="$DIR/node_modules"

installed() {  # installed <package> -> prints its version or nothing
  node -e 'try { console.log(require(process.argv[1]).version) } catch (e) {}' "$NM/$1/package.json" 2>/dev/null || true
}

claude_ready() {  # the postinstall replaces the 500-byte stub bin/claude.exe with the native binary
  local exe="$NM/@anthropic-ai/claude-code/bin/claude.exe"
  [ -x "$exe" ] && [ "$(wc -c <"$exe")" -gt 1000000 ]
}

opencode_ready() {  # bin/opencode.exe is the platform package's native binary once the postinstall has run
  local exe="$NM/opencode-ai/bin/opencode.exe"
  [ -x "$exe" ] && [ "$(wc -c <"$exe")" -gt 1000000 ]
}

if [ "$(installed @openai/codex)" = "$CODEX_VERSION" ] \
   && [ "$(installed @anthropic-ai/claude-code)" = "$CLAUDE_VERSION" ] && claude_ready \
   && [ "$(installed @google/gemini-cli)" = "$GEMINI_VERSION" ] \
   && [ "$(installed opencode-ai)" = "$OPENCODE_VERSION" ] && opencode_ready; then
  echo "agents already installed in $DIR: codex $CODEX_VERSION, claude $CLAUDE_VERSION, gemini $GEMINI_VERSION," \
       "opencode $OPENCODE_VERSION"
  exit 0
fi

mkdir -p "$DIR"
# Optional dependencies carry the native binaries (@openai/codex-linux-x64, @anthropic-ai/claude-code-linux-x64,
# opencode-linux-x64):
# never --omit=optional. Claude Code declares node>=22 but ships a native binary, so node 20 is fine (EBADENGINE
# is only a warning).
npm install --prefix "$DIR" --save-exact --no-audit --no-fund --include=optional \
  "@openai/codex@$CODEX_VERSION" "@anthropic-ai/claude-code@$CLAUDE_VERSION" \
  "@google/gemini-cli@$GEMINI_VERSION" "opencode-ai@$OPENCODE_VERSION"

# npm may skip install scripts (--ignore-scripts, or an allowScripts policy): run the postinstalls by hand.
if ! claude_ready; then
  (cd "$NM/@anthropic-ai/claude-code" && node install.cjs)
fi
if ! opencode_ready; then
  (cd "$NM/opencode-ai" && node postinstall.mjs)
fi

# Smoke the executables; codex writes helper files under $CODEX_HOME even for --version, so give it a throwaway one.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
CODEX_HOME="$scratch" "$NM/.bin/codex" --version 2>/dev/null
CLAUDE_CONFIG_DIR="$scratch" "$NM/.bin/claude" --version
HOME="$scratch" GEMINI_CLI_HOME="$scratch" "$NM/.bin/gemini" --version
HOME="$scratch" XDG_CONFIG_HOME="$scratch" XDG_DATA_HOME="$scratch" XDG_CACHE_HOME="$scratch" \
  XDG_STATE_HOME="$scratch" "$NM/.bin/opencode" --version
