#!/usr/bin/env bash
# Headless Chromium (Debian's package) for the dashboard test. Installs it when missing and
# prints CHROMIUM=<path>. A non-zero exit, with the reason on stderr, is a test failure.
set -euo pipefail
# fonts-nanum: Korean glyphs in the screenshots (transcripts are Korean).
need=()
for p in chromium fonts-nanum; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "browser_env: installing ${need[*]}" >&2
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; } >&2 \
    || { echo "browser_env: apt-get install ${need[*]} failed" >&2; exit 2; }
fi
bin="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$bin" ] || { echo "browser_env: chromium is installed but not on PATH" >&2; exit 3; }
"$bin" --version >&2 || { echo "browser_env: $bin does not start" >&2; exit 3; }
echo "CHROMIUM=$bin"
