#!/usr/bin/env bash
# Install dependencies, build, and run the main job on the embedded default.
# (Filled in as the daemon and CLI land; for now: deps + build + tests of the engine.)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/scripts/deps.sh"
bash "$top/scripts/build.sh" "$top/build"
