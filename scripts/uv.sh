#!/usr/bin/env bash
# Run the pinned uv, installing it first into .tools/ when the machine has no uv of that version.
# Needs only python3 with venv and pip; everything else comes from the lock file.
set -euo pipefail
UV_VERSION="0.13.9"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export UV_PYTHON_DOWNLOADS=never
if command -v uv >/dev/null 2>&1 && [ "$(uv --version 2>/dev/null | awk '{print $2}')" = "$UV_VERSION" ]; then
  exec uv "$@"
fi
tool="$root/.tools/bin/uv"
if [ ! -x "$tool" ] || [ "$("$tool" --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  echo "installing uv $UV_VERSION into .tools/" >&2
  python3 -m venv "$root/.tools"
  "$root/.tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
exec "$tool" "$@"
