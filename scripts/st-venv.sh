#!/usr/bin/env bash
# Makes (once) a venv with the pinned schemathesis from PyPI and prints its executable's path.
# The venv lives in $ST_VENV (default: ~/.cache/claudemeshd/st-venv-<version>).
set -euo pipefail
version=4.32.5
venv=${ST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/claudemeshd/st-venv-$version}
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >&2; then
    # Debian ships venv's pip bootstrap separately.
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq python3-venv; } >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version" >&2
fi
echo "$venv/bin/schemathesis"
