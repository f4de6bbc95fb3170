#!/usr/bin/env bash
# Create .venv and install requirements.txt into it; a no-op when nothing changed since last time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# torchcodec decodes through the system's FFmpeg libraries (decord and PyAV bundle their own); as root
# on Debian, install them; elsewhere the torchcodec backend reports itself unavailable.
if ! command -v ffmpeg >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; } \
    || echo "warning: could not install ffmpeg; the torchcodec video backend will be unavailable" >&2
fi
# METEOR and the PTB tokenizer of the caption metrics run Java jars; without Java they report "not run".
if ! command -v java >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; } \
    || echo "warning: could not install Java; METEOR and PTB tokenisation will be unavailable" >&2
fi
# The demo's browser test drives Debian's Chromium through Playwright (Playwright cannot download its own
# browser here); without it that test skips with the reason.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "warning: could not install chromium; the demo's browser test will be skipped" >&2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  # torch first, from the pinned release; sam2 then builds without CUDA extensions and without
  # rebuilding torch in an isolated environment.
  .venv/bin/pip install -q "$(grep '^torch==' requirements.txt)" "$(grep '^torchvision==' requirements.txt)" \
    "$(grep '^numpy==' requirements.txt)" setuptools wheel
  SAM2_BUILD_CUDA=0 .venv/bin/pip install -q --no-build-isolation -r requirements.txt
  echo "$want" > "$stamp"
fi
