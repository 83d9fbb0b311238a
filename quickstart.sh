#!/usr/bin/env bash
# The main job: set up what is missing, then run the default scenario end to end.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/scripts/setup.sh"
exec "$here/.venv/bin/kubemu" run "$here/scenarios/quickstart.yaml" "$@"
