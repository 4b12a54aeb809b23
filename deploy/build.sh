#!/usr/bin/env bash
# Builds drscreen and stages everything its container needs into one folder:
#   OUT/bin/drscreen                    the binary
#   OUT/lib/libonnxruntime.so.VERSION   the ONNX Runtime build.rs extracted into .ort/
#                                       (or the file ORT_DYLIB_PATH names)
#   OUT/lib/libonnxruntime.so           a link to it: point ORT_DYLIB_PATH here
#   OUT/models/dr-synth/                the bundled, sha256-locked model package
# then checks that the staged binary loads the staged model with the staged library.
# The Dockerfile's builder stage runs this same script.
#
# Usage: deploy/build.sh [--profile PROFILE] [--out DIR] [--no-build]
#   --profile PROFILE  cargo profile (default release; dev is staged from target/debug)
#   --out DIR          staging folder (default target/stage); its bin/ lib/ models/ are replaced
#   --no-build         stage the existing build without running cargo (tests/deploy.rs)
set -euo pipefail
usage="usage: $0 [--profile PROFILE] [--out DIR] [--no-build]"
profile=release out="" build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?$usage}"; shift 2 ;;
    --out) out="$(realpath -m "${2:?$usage}")"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
out="${out:-$PWD/target/stage}"

if [ "$build" = 1 ]; then
  cargo build --locked --profile "$profile" --bin drscreen
fi
target="${CARGO_TARGET_DIR:-target}"
case "$profile" in dev | test) dir=debug ;; bench) dir=release ;; *) dir="$profile" ;; esac
bin="$target/$dir/drscreen"
# The library the binary was built to load: ORT_DYLIB_PATH, else build.rs's .ort/ copy.
ort_version="$(sed -n 's/^const ORT_VERSION: &str = "\(.*\)";$/\1/p' build.rs)"
lib="${ORT_DYLIB_PATH:-.ort/$ort_version/libonnxruntime.so.$ort_version}"
[ -x "$bin" ] || { echo "no binary at $bin (build with --profile $profile first)" >&2; exit 1; }
[ -f "$lib" ] || { echo "no ONNX Runtime library at $lib (build.rs fetches it; see README)" >&2; exit 1; }

rm -rf "$out/bin" "$out/lib" "$out/models"
mkdir -p "$out/bin" "$out/lib" "$out/models"
cp "$bin" "$out/bin/drscreen"
cp "$lib" "$out/lib/"
name="$(basename "$lib")"
[ "$name" = libonnxruntime.so ] || ln -s "$name" "$out/lib/libonnxruntime.so"
cp -R models/dr-synth "$out/models/dr-synth"

# The staged files work together: integrity check, library load, session creation.
ORT_DYLIB_PATH="$out/lib/libonnxruntime.so" "$out/bin/drscreen" model inspect "$out/models/dr-synth" >/dev/null
echo "staged drscreen ($profile), ONNX Runtime $ort_version and models/dr-synth in $out"
