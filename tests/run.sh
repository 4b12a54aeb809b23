#!/usr/bin/env bash
# The README's test command: installs the real third-party peers the tests talk to
# (idempotent; pinned versions), then runs the whole suite with real ONNX Runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
# Triton's own Python client is the peer for the KServe v2 tests.
python3 -c "import tritonclient.http" 2>/dev/null ||
  python3 -m pip install --quiet "tritonclient[http]==2.73.0" "numpy==2.4.6"
# schemathesis fuzzes the API against its OpenAPI document (tests/api_schema.rs).
python3 -c "import schemathesis" 2>/dev/null ||
  python3 -m pip install --quiet "schemathesis==4.32.5"
# dcmtk (img2dcm, echoscu, storescu, storescp, dsrdump) and dicom3tools (dciodvfy) are
# the DICOM peers, Orthanc the real PACS of tests/orthanc.rs; poppler-utils (pdftotext,
# pdffonts, pdfinfo) reads the PDF reports back (tests/report_pdf.rs); fhir.resources
# parses the FHIR reports and validates every Parameters body the stand-in DIPS server
# (tests/peers/dips_server.py) gets. The tests start their own Orthanc
# (tests/common/orthanc.rs), never the package's service, which is stopped and disabled
# where systemd runs it.
if ! command -v storescu >/dev/null || ! command -v dciodvfy >/dev/null || ! command -v pdftotext >/dev/null ||
  ! { command -v Orthanc || [ -x /usr/sbin/Orthanc ]; } >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dcmtk dicom3tools orthanc poppler-utils >/dev/null
  { command -v systemctl && $SUDO systemctl disable --now orthanc; } >/dev/null 2>&1 || true
fi
python3 -c "import fhir.resources.R4B" 2>/dev/null ||
  python3 -m pip install --quiet "fhir.resources==8.3.0"
# kubernetes-validate checks deploy/k8s against the Kubernetes schemas it ships (tests/deploy.rs).
python3 -c "import kubernetes_validate" 2>/dev/null ||
  python3 -m pip install --quiet "kubernetes-validate==1.37.0"
# The review pages' end-to-end test drives Debian's Chromium with playwright-core
# and runs axe-core in it (both pinned by tests/browser/package-lock.json; no browser download).
if ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
# PostgreSQL (initdb, pg_ctl, psql; Debian keeps them in /usr/lib/postgresql/N/bin) and
# haproxy: the replica tests (tests/cluster.rs) start a throwaway cluster and a real load
# balancer in front of the replicas.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
  ! { command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql haproxy >/dev/null
fi
[ -d tests/browser/node_modules/playwright-core ] && [ -d tests/browser/node_modules/axe-core ] ||
  npm ci --prefix tests/browser --no-audit --no-fund --silent
# s3s-fs is the S3 server the image store's S3 backend is tested against (tests/blobs.rs);
# 0.14.1 is its newest release that builds with rustc 1.95 (0.15 wants 1.96).
command -v s3s-fs >/dev/null || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ] ||
  cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary
# One build tests both JPEG decoders: tests/preprocess_skew.rs and tests/jpeg_backends.rs
# run every `preprocess::JpegBackend` compiled in (libjpeg-turbo and jpeg-decoder).
cargo test --locked "$@"
# The store, serve, review, API and DICOM suites again on the replicas' backend
# (PostgreSQL + S3; tests/common/backend.rs): the same test binaries, no second build.
if [ $# -eq 0 ]; then
  DRSCREEN_TEST_BACKEND=cluster cargo test --locked --test dips --test serve --test review --test api --test dicom --test review_context --test orthanc
fi
