#!/usr/bin/env bash
# What the tests need from Debian, installed when missing: chromium (Playwright drives it through
# executable_path; `playwright install` cannot download browsers offline), a Chinese font (so
# screenshots of the Chinese pages show characters, not boxes) and PostgreSQL (the database
# tests start a throw-away cluster of their own; the server is never left running) and a C
# compiler (gcc: tunelab's CPU kernels, src/tunelab/native, compile on first use).
set -euo pipefail
missing=()
for pkg in chromium fonts-wqy-zenhei postgresql gcc; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install_system: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
echo "installing ${missing[*]} from Debian's packages (once)"
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >/dev/null
