#!/usr/bin/env bash
# Run pytest and refuse a run that collected no test: pytest's exit code 5 would otherwise be
# mistaken for a pass (or hide a broken collection) in CI.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/uv.sh" run --locked pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
