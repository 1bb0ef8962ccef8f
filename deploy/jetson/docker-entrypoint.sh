#!/usr/bin/env bash
# Entry point of the stopsign-edge container (deploy/jetson/Dockerfile).
#
#   (no arguments) or options   build or refresh the TensorRT engine for this device, then run
#                               edge-detect with CAMERA, ENGINE, BUDGET_MS, TILES, EDGE_DETECT_ARGS
#                               and the options given
#   check                       print TensorRT, CUDA, GStreamer, cameras and nvarguscamerasrc
#   any other command           run it (e.g. bash)
set -euo pipefail

readonly STATE_DIR=/var/lib/stopsign-edge

if [[ "${1:-}" == check ]]; then
    exec /opt/stopsign-edge/src/deploy/jetson/install.sh --check
fi
if (($#)) && [[ "$1" != -* ]]; then
    exec "$@"
fi

CAMERA="${CAMERA:-/dev/video0}"
PRECISION="${PRECISION:-fp16}"
ENGINE="${ENGINE:-$STATE_DIR/engines/stopsign.$PRECISION.engine}"
BUDGET_MS="${BUDGET_MS:-33}"
TILES="${TILES:-auto}"
if [[ -z "${ONNX:-}" ]]; then
    ONNX="$(python3 -c 'import importlib.resources as r; print(r.files("stopsign.edge.assets") / "stopsign.onnx")')"
fi
# Several options in one variable, split on spaces on purpose (e.g. "--udp 192.0.2.10:5005").
read -r -a extra_args <<<"${EDGE_DETECT_ARGS:-}"

mkdir -p "$(dirname "$ENGINE")"
# Engines are specific to the device and TensorRT version, so they are built here, on the device,
# into the volume; --if-stale reuses a current one and rebuilds a stale one.
edge-export engine "$ONNX" --precision "$PRECISION" --if-stale \
    --timing-cache "$STATE_DIR/engines/timing.cache" --out "$ENGINE"
exec edge-detect --camera "$CAMERA" --model "$ENGINE" --budget-ms "$BUDGET_MS" --tiles "$TILES" "${extra_args[@]}" "$@"
