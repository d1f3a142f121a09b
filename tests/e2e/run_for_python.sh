#!/usr/bin/env bash
# ctest wrapper: run the e2e suite for one interpreter.
#   run_for_python.sh PYTHON [pytest args...]
# Exits 77 (ctest SKIP_RETURN_CODE) with a `SKIP: reason` line when the interpreter or
# pytest is missing, so a missing interpreter shows as skipped, never as passed.
set -uo pipefail

python=${1:?usage: run_for_python.sh PYTHON [pytest args...]}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runner=${GILSTAT_PYTEST_PYTHON:-/usr/bin/python3}

if [ ! -x "$python" ]; then
  echo "SKIP: interpreter not found: $python"
  exit 77
fi
if ! "$runner" -c 'import pytest' 2>/dev/null; then
  echo "SKIP: $runner has no pytest (Debian package python3-pytest; scripts/install-deps installs it)"
  exit 77
fi

cd "$here/../.."
export PYTHONDONTWRITEBYTECODE=1
exec "$runner" -m pytest -q -rsx -p no:cacheprovider tests/e2e --python "$python" "$@"
