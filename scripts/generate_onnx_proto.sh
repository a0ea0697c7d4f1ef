#!/usr/bin/env bash
# Regenerates Sources/QuadraDeploy/Generated/onnx.pb.swift from the official onnx.proto of a pinned
# ONNX release (1.17.0), with protoc and swift-protobuf's protoc-gen-swift (1.39.0, the version
# Package.swift depends on). The generated file is committed; run this only to change the pin.
#
# Usage: scripts/generate_onnx_proto.sh [ONNX_WHEEL]
#   ONNX_WHEEL: an onnx-1.17.0 wheel (a zip holding onnx/onnx.proto). Without it the wheel is fetched
#   with `pip download onnx==1.17.0 --no-deps`.
# Needs: protoc (Debian: protobuf-compiler), unzip, and protoc-gen-swift. PROTOC_GEN_SWIFT may name
# the plugin; otherwise it is built once in a throwaway package (about 10 minutes on two cores):
#   mkdir /tmp/protogen && cd /tmp/protogen   # Package.swift depending on swift-protobuf exact: "1.39.0"
#   swift build -c release --product protoc-gen-swift
set -euo pipefail
ONNX_VERSION=1.17.0
SWIFT_PROTOBUF_VERSION=1.39.0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/Sources/QuadraDeploy/Generated"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

wheel="${1:-}"
if [[ -z "$wheel" ]]; then
  python3 -m pip download "onnx==$ONNX_VERSION" --no-deps --only-binary=:all: -d "$WORK/wheel" >&2
  wheel="$(ls "$WORK"/wheel/onnx-*.whl)"
fi
case "$(basename "$wheel")" in
  onnx-$ONNX_VERSION-*) ;;
  *) echo "error: $wheel is not an onnx $ONNX_VERSION wheel" >&2; exit 1 ;;
esac
unzip -q -o "$wheel" onnx/onnx.proto -d "$WORK/proto"

plugin="${PROTOC_GEN_SWIFT:-}"
if [[ -z "$plugin" ]]; then
  mkdir -p "$WORK/plugin/Sources/Dummy"
  cat > "$WORK/plugin/Package.swift" <<SWIFT
// swift-tools-version:6.0
import PackageDescription
let package = Package(
  name: "protogen",
  dependencies: [.package(url: "https://github.com/apple/swift-protobuf", exact: "$SWIFT_PROTOBUF_VERSION")],
  targets: [.target(name: "Dummy", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")])]
)
SWIFT
  echo 'import SwiftProtobuf' > "$WORK/plugin/Sources/Dummy/Dummy.swift"
  (cd "$WORK/plugin" && nice -n 19 swift build -c release --product protoc-gen-swift >&2)
  plugin="$WORK/plugin/.build/release/protoc-gen-swift"
fi

# Public visibility: QuadraDeploy's API and its tests decode exported files with these messages.
mkdir -p "$OUT" "$WORK/out"
protoc --plugin=protoc-gen-swift="$plugin" -I "$WORK/proto" \
  --swift_opt=Visibility=Public --swift_out="$WORK/out" onnx/onnx.proto
cp "$WORK/out/onnx/onnx.pb.swift" "$OUT/onnx.pb.swift"
echo "wrote $OUT/onnx.pb.swift (onnx $ONNX_VERSION, protoc-gen-swift $SWIFT_PROTOBUF_VERSION)"
