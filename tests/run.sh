#!/usr/bin/env bash
# The README's test command: installs the real third-party peers the tests talk to
# (idempotent; pinned versions), then runs the whole suite with real ONNX Runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
# Triton's own Python client is the peer for the KServe v2 tests.
python3 -c "import tritonclient.http" 2>/dev/null ||
  python3 -m pip install --quiet "tritonclient[http]==2.73.0" "numpy==2.4.6"
cargo test --locked "$@"
