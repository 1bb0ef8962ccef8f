#!/usr/bin/env bash
# stopsign-edge set-up and entry point. Two commands, on a fresh Debian/Ubuntu machine or a Jetson:
#   ./run.sh demo   set up .venv (runtime extras) and run edge-detect on the bundled sample drive
#   ./run.sh test   install the system packages the tests need, set up .venv (dev extras), run the tests
# Extra arguments after `test` go to pytest (e.g. ./run.sh test -m "not slow"). The tests run on
# TEST_WORKERS pytest-xdist workers (default 0: in this process, serially; 2 takes ~13 instead of ~19 min
# on 2 cores, but its timing tests are not yet proven stable under it).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
# Torch pinned to the build these machines carry (see docs/development.md).
TORCH_PIN="torch==2.13.0"
APT_TEST_PACKAGES=(
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gir1.2-gst-plugins-base-1.0 libgirepository1.0-dev libcairo2-dev python3-dev
  python3-venv pkg-config shellcheck slurm-wlm munge systemd gir1.2-gst-rtsp-server-1.0
  mosquitto openssl chromium chromium-driver
)
APT_DEMO_PACKAGES=(
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav
  gir1.2-gst-plugins-base-1.0 libgirepository1.0-dev libcairo2-dev python3-dev python3-venv pkg-config
)

log() { printf '[run.sh] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
  if ! command -v apt-get >/dev/null; then
    log "missing system packages ${missing[*]} and no apt-get: install them with your package manager"
    return 1
  fi
  log "installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_venv() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    # On a Jetson the TensorRT bindings live in the system Python: let the venv see them.
    if [ -e /etc/nv_tegra_release ]; then
      "$PYTHON" -m venv --system-site-packages "$VENV"
    else
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
  if [[ "$extras" == *dev* || "$extras" == *train* ]]; then
    "$VENV/bin/python" -m pip install -q "$TORCH_PIN"
  fi
  log "installing stopsign-edge[$extras] into $VENV"
  "$VENV/bin/python" -m pip install -q -e ".[$extras]"
  if [[ "$extras" == *dev* ]]; then
    # Type stubs for checking the TensorRT code; --no-deps because their `tensorrt` requirement
    # is the real runtime, which needs CUDA (tests/tensorrt_stubs.py explains the rest).
    "$VENV/bin/python" -m pip install -q --no-deps "tensorrt-stubs>=10.0"
  fi
}

case "${1:-}" in
  demo)
    shift
    apt_install "${APT_DEMO_PACKAGES[@]}"
    make_venv "edge,gst"
    exec "$VENV/bin/python" -m stopsign.edge.cli.demo "$@"
    ;;
  test)
    shift
    apt_install "${APT_TEST_PACKAGES[@]}"
    make_venv "dev"
    exec "$VENV/bin/python" -m pytest -n "${TEST_WORKERS:-0}" --durations=25 "$@"
    ;;
  *)
    echo "usage: ./run.sh demo | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
