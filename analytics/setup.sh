#!/usr/bin/env bash
# Create/refresh the analytics virtualenv outside the repo.
#
#   analytics/setup.sh            -> installs if needed; last stdout line = venv python path
#   PY=$(analytics/setup.sh | tail -n1)
#
# Env:
#   FLUMEN_CACHE   cache root (default ~/.cache/flumen); venv lives at $FLUMEN_CACHE/venv
#   FLUMEN_PYTHON  interpreter used to create the venv (default: python3.11, else python3)
#   PIP_CACHE_DIR  pip download cache (default ~/.cache/pip)
# The venv is rebuilt from scratch only when the base interpreter version changes (or it is
# missing). A changed requirements.txt is installed into the existing venv (`pip install -r`
# is idempotent: it adds or re-pins what differs and leaves the rest), so adding a package does
# not throw away the ~400 MB pyspark install other users of the same cache rely on. A rerun
# with nothing changed returns in well under a second. The python path is also written to
# $FLUMEN_CACHE/analytics-python for scripts that prefer reading a file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
cache="${FLUMEN_CACHE:-$HOME/.cache/flumen}"
venv="$cache/venv"
stamp="$venv/.flumen-requirements.sha256"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

base="${FLUMEN_PYTHON:-}"
if [[ -z "$base" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then base=python3.11; else base=python3; fi
fi

mkdir -p "$cache" "$PIP_CACHE_DIR"
# Serialise concurrent callers (tests, demo, CI) on the same cache.
exec 9>"$cache/.analytics-setup.lock"
flock 9

base_version="$("$base" -c 'import sys; print(sys.version)')"
want="$( { cat "$req"; echo "$base_version"; } | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "analytics venv up to date: $venv" >&2
else
  have_version="$("$venv/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null || true)"
  if [[ "$have_version" != "$base_version" ]]; then
    echo "analytics venv: (re)building $venv with $base" >&2
    rm -rf "$venv"
    "$base" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2 || echo "warning: pip self-upgrade failed; continuing" >&2
  else
    echo "analytics venv: requirements changed, installing into $venv" >&2
  fi
  rm -f "$stamp"  # an interrupted install must not look up to date
  "$venv/bin/python" -m pip install --quiet -r "$req" >&2
  "$venv/bin/python" -c 'import pyspark, confluent_kafka, pytest, pyarrow' >&2
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python" > "$cache/analytics-python"
echo "$venv/bin/python"
