#!/usr/bin/env bash
# Install stopsign-edge on an NVIDIA Jetson running JetPack 6 (L4T R36: Ubuntu 22.04,
# Python 3.10, TensorRT 10) and set up the edge-detect systemd service.
#
# JetPack 5 (L4T R35: Python 3.8, TensorRT 8.5) is out of scope: the script refuses it.
# Re-running is safe: every step checks what is already there and does only what is missing
# (pip re-installs the same project, which changes nothing).
#
#   sudo deploy/jetson/install.sh            install, build the engine, enable the service
#   deploy/jetson/install.sh --dry-run       run every check and print what would be done
#   deploy/jetson/install.sh --check         print TensorRT, CUDA, GStreamer and camera facts
#
# Tests point STOPSIGN_SYSROOT at a folder holding fake etc/nv_tegra_release,
# proc/device-tree/model and etc/os-release files; a real install refuses to run with it.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly SERVICE_NAME=edge-detect.service
readonly SERVICE_USER=stopsign
readonly STATE_DIR=/var/lib/stopsign-edge
readonly DEFAULT_PREFIX=/opt/stopsign-edge
readonly SYSROOT="${STOPSIGN_SYSROOT:-}"

dry_run=0
check_only=0
prefix="$DEFAULT_PREFIX"
source_dir="$(cd "$SCRIPT_DIR/../.." && pwd)"
wheel=""
env_file=/etc/stopsign-edge/edge-detect.env
build_engine=1
install_service=1
failures=0

usage() {
    cat <<EOF
usage: install.sh [--dry-run | --check] [--prefix DIR] [--source DIR | --wheel FILE]
                  [--env-file FILE] [--no-engine] [--no-service]

Installs stopsign-edge on a Jetson with JetPack 6 (L4T R36, Ubuntu 22.04, Python 3.10,
TensorRT 10). JetPack 5 (L4T R35, Python 3.8, TensorRT 8.5) is not supported.

  --dry-run       run every check and print what would be done; change nothing (any host)
  --check         only print TensorRT, CUDA, GStreamer, cameras and nvarguscamerasrc
  --prefix DIR    where the virtual environment and model link go (default $DEFAULT_PREFIX)
  --source DIR    project checkout to install editable (default: this script's checkout)
  --wheel FILE    install this wheel instead of an editable checkout
  --env-file F    service settings (default /etc/stopsign-edge/edge-detect.env)
  --no-engine     do not build the TensorRT engine now (the service builds it on first start)
  --no-service    do not install or enable $SERVICE_NAME
EOF
}

die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

# A check result: "ok" lines are facts, "fail" lines stop a real install at once and are
# counted in a dry run, so that one dry run lists every problem of the host.
report() {
    local status="$1" message="$2"
    printf '  [%s] %s\n' "$status" "$message"
    if [[ "$status" == fail ]]; then
        failures=$((failures + 1))
        if ((!dry_run && !check_only)); then
            die "$message"
        fi
    fi
}

# Run a command that changes the system, or in a dry run print it.
act() {
    if ((dry_run)); then
        printf '  [would run] %s\n' "$(quote "$@")"
    else
        printf '  [run] %s\n' "$(quote "$@")"
        "$@"
    fi
}

quote() {
    local out="" word
    for word in "$@"; do
        out+="$(printf '%q' "$word") "
    done
    printf '%s' "${out% }"
}

# Value of KEY in a systemd EnvironmentFile (KEY=value lines). Read, never sourced: the file is
# configuration, not a script.
env_value() {
    local file="$1" key="$2" line value=""
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ ^[[:space:]]*${key}=(.*)$ ]]; then
            value="${BASH_REMATCH[1]}"
            value="${value%\"}"
            value="${value#\"}"
        fi
    done <"$file"
    printf '%s' "$value"
}

# ---------------------------------------------------------------------------- platform

jetson_model() {
    local model_file="$SYSROOT/proc/device-tree/model"
    if [[ -r "$model_file" ]]; then
        tr -d '\0' <"$model_file"
    fi
}

# L4T major release from /etc/nv_tegra_release ("# R36 (release), REVISION: 4.0, ..."), or "".
l4t_major() {
    local release_file="$SYSROOT/etc/nv_tegra_release"
    if [[ -r "$release_file" ]] && [[ "$(head -n 1 "$release_file")" =~ ^#\ R([0-9]+) ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
    fi
}

check_platform() {
    printf '== platform\n'
    local model major os_id="" os_version=""
    model="$(jetson_model)"
    major="$(l4t_major)"
    if [[ -e "$SYSROOT/etc/nv_tegra_release" || "$model" == *"NVIDIA Jetson"* ]]; then
        report ok "Jetson: ${model:-model unknown}"
    else
        report fail "not a Jetson: neither /etc/nv_tegra_release nor /proc/device-tree/model names an NVIDIA Jetson. install.sh sets up Jetson devices with JetPack 6 only; run it with --dry-run to see its checks and steps on this host."
    fi
    case "$major" in
    36) report ok "L4T R36: JetPack 6" ;;
    35) report fail "L4T R35 is JetPack 5 (Python 3.8, TensorRT 8.5), which is out of scope: flash JetPack 6 (L4T R36)." ;;
    "") report fail "JetPack version unknown: /etc/nv_tegra_release is missing or unreadable (JetPack 6 = L4T R36 is required)." ;;
    *) report fail "L4T R$major is not supported: install.sh supports JetPack 6 (L4T R36) only." ;;
    esac
    if [[ -r "$SYSROOT/etc/os-release" ]]; then
        os_id="$(env_value "$SYSROOT/etc/os-release" ID)"
        os_version="$(env_value "$SYSROOT/etc/os-release" VERSION_ID)"
    fi
    if [[ "$os_id" == ubuntu && "$os_version" == 22.04 ]]; then
        report ok "OS: Ubuntu 22.04"
    else
        report fail "OS: ${os_id:-unknown} ${os_version:-unknown}; JetPack 6 runs Ubuntu 22.04."
    fi
    # Fake platform files stop here: the checks below look at this host itself.
    if [[ -n "$SYSROOT" ]] && ((!dry_run && !check_only)); then
        die "STOPSIGN_SYSROOT is set (test mode): refusing to change this system."
    fi
    local py_version
    py_version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    if [[ "$py_version" == 3.10 ]]; then
        report ok "python3: 3.10"
    else
        report fail "python3: ${py_version:-missing}; JetPack 6's TensorRT bindings are built for Python 3.10."
    fi
    if ((EUID == 0)); then
        report ok "running as root"
    else
        report fail "not root: run the install with sudo."
    fi
}

# ---------------------------------------------------------------------------- install steps

apt_packages() {
    local packages=(
        python3-venv python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
        gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
        gstreamer1.0-plugins-bad v4l-utils
    )
    if [[ -n "$(l4t_major)" ]]; then
        # NVIDIA's GStreamer elements (nvarguscamerasrc, nvvidconv, nvv4l2decoder) and the
        # TensorRT Python bindings for the system Python, from the L4T apt repository.
        packages+=(nvidia-l4t-gstreamer python3-libnvinfer)
    fi
    printf '%s\n' "${packages[@]}"
}

install_apt_packages() {
    printf '== apt packages\n'
    local package missing=()
    while IFS= read -r package; do
        if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)" != installed ]]; then
            missing+=("$package")
        fi
    done < <(apt_packages)
    if ((${#missing[@]} == 0)); then
        printf '  [done] all installed: %s\n' "$(apt_packages | tr '\n' ' ')"
        return
    fi
    act apt-get update
    act apt-get install -y --no-install-recommends "${missing[@]}"
}

create_user() {
    printf '== service user\n'
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        if id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx video; then
            printf '  [done] user %s exists, in group video\n' "$SERVICE_USER"
        else
            act usermod --append --groups video "$SERVICE_USER"
        fi
    else
        act useradd --system --user-group --groups video --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
}

venv_dir() { printf '%s/venv' "$prefix"; }

create_venv() {
    printf '== virtual environment\n'
    local venv
    venv="$(venv_dir)"
    if [[ -f "$venv/pyvenv.cfg" ]]; then
        # Without system site packages the venv cannot see JetPack's TensorRT bindings.
        if grep -q '^include-system-site-packages = true' "$venv/pyvenv.cfg"; then
            printf '  [done] %s (with system site packages)\n' "$venv"
        else
            report fail "$venv was made without --system-site-packages, so it cannot import TensorRT: remove it and re-run."
        fi
    else
        act python3 -m venv --system-site-packages "$venv"
    fi
    if [[ -n "$wheel" ]]; then
        [[ -f "$wheel" ]] || report fail "wheel not found: $wheel"
        act "$venv/bin/pip" install "${wheel}[edge,trt]"
    else
        [[ -f "$source_dir/pyproject.toml" ]] || report fail "no pyproject.toml in $source_dir (use --source or --wheel)"
        act "$venv/bin/pip" install -e "${source_dir}[edge,trt]"
    fi
}

write_settings() {
    printf '== settings\n'
    if [[ -f "$env_file" ]]; then
        printf '  [done] %s exists; kept as it is\n' "$env_file"
    else
        act install -D -m 0644 "$SCRIPT_DIR/edge-detect.env.example" "$env_file"
    fi
}

# Settings as the service will see them: the installed file, or in a dry run before it exists
# the example it would be copied from.
setting() {
    local file="$env_file"
    [[ -f "$file" ]] || file="$SCRIPT_DIR/edge-detect.env.example"
    env_value "$file" "$1"
}

# Path of the ONNX model shipped inside the installed package.
shipped_onnx() {
    local python
    python="$(venv_dir)/bin/python"
    if [[ -x "$python" ]]; then
        "$python" -c 'import importlib.resources as r; print(r.files("stopsign.edge.assets") / "stopsign.onnx")'
    elif [[ -z "$wheel" ]]; then
        printf '%s/edge/assets/stopsign.onnx' "$source_dir"
    else
        printf '(stopsign/edge/assets/stopsign.onnx inside %s)' "$wheel"
    fi
}

link_model() {
    printf '== model\n'
    local onnx link
    onnx="$(shipped_onnx)"
    link="$prefix/model/stopsign.onnx"
    if [[ -f "$onnx" ]]; then
        printf '  [ok] shipped model: %s\n' "$onnx"
    elif [[ -z "$wheel" ]] || [[ -x "$(venv_dir)/bin/python" ]]; then
        report fail "the shipped model is missing: $onnx (build or fetch the release that ships it)"
    fi
    if [[ -L "$link" && "$(readlink "$link")" == "$onnx" ]]; then
        printf '  [done] %s -> %s\n' "$link" "$onnx"
    else
        act install -d -m 0755 "$prefix/model"
        act ln -sfn "$onnx" "$link"
    fi
}

build_engine_now() {
    printf '== TensorRT engine\n'
    act install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$STATE_DIR" "$STATE_DIR/engines"
    # Built as the service user so that the service can later refresh it; --if-stale makes a
    # re-run a no-op while the engine matches this device, TensorRT and model.
    act runuser -u "$SERVICE_USER" -- "$(venv_dir)/bin/edge-export" engine "$(setting ONNX)" \
        --precision "$(setting PRECISION)" --if-stale \
        --timing-cache "$STATE_DIR/engines/timing.cache" --out "$(setting ENGINE)"
}

install_unit() {
    printf '== systemd service\n'
    local target="/etc/systemd/system/$SERVICE_NAME" rendered
    # The unit names the default prefix; a different --prefix is written into the installed copy.
    rendered="$(sed "s|$DEFAULT_PREFIX/|$prefix/|g" "$SCRIPT_DIR/$SERVICE_NAME")"
    if [[ -f "$target" ]] && [[ "$(cat "$target")" == "$rendered" ]]; then
        printf '  [done] %s is up to date\n' "$target"
    elif ((dry_run)); then
        printf '  [would write] %s from %s (prefix %s)\n' "$target" "$SCRIPT_DIR/$SERVICE_NAME" "$prefix"
        act systemctl daemon-reload
    else
        printf '  [write] %s\n' "$target"
        printf '%s\n' "$rendered" >"$target.tmp"
        chmod 0644 "$target.tmp"
        mv -f "$target.tmp" "$target"
        act systemctl daemon-reload
    fi
    act systemctl enable "$SERVICE_NAME"
    printf '  start it with: sudo systemctl start %s; logs: journalctl -u %s -f\n' \
        "$SERVICE_NAME" "${SERVICE_NAME%.service}"
}

# ---------------------------------------------------------------------------- device check

device_check() {
    printf '== device check\n'
    local python version
    python="$(venv_dir)/bin/python"
    [[ -x "$python" ]] || python=python3
    printf '  python: %s\n' "$python"
    version="$("$python" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)"
    printf '  TensorRT: %s\n' "${version:-not importable}"
    version="$("$python" -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())' 2>/dev/null || true)"
    printf '  ONNX Runtime: %s\n' "${version:-not importable}"
    if [[ -r /usr/local/cuda/version.json ]]; then
        version="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cuda"]["version"])' \
            /usr/local/cuda/version.json 2>/dev/null || true)"
    elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
        version="$(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    else
        version=""
    fi
    printf '  CUDA: %s\n' "${version:-not found (/usr/local/cuda)}"
    if command -v gst-inspect-1.0 >/dev/null; then
        version="$(gst-inspect-1.0 --version | sed -n 's/^GStreamer //p')"
    else
        version=""
    fi
    printf '  GStreamer: %s\n' "${version:-not found (gst-inspect-1.0 missing)}"
    version="$("$python" -c 'import gi; gi.require_version("Gst", "1.0"); from gi.repository import Gst; print(Gst.version_string())' 2>/dev/null || true)"
    printf '  PyGObject GStreamer: %s\n' "${version:-not importable}"
    local cameras=()
    shopt -s nullglob
    cameras=(/dev/video*)
    shopt -u nullglob
    if ((${#cameras[@]})); then
        printf '  cameras: %s\n' "${cameras[*]}"
    else
        printf '  cameras: none (no /dev/video*)\n'
    fi
    if command -v gst-inspect-1.0 >/dev/null && gst-inspect-1.0 nvarguscamerasrc >/dev/null 2>&1; then
        printf '  nvarguscamerasrc: present (CSI cameras: csi://N)\n'
    else
        printf '  nvarguscamerasrc: absent (CSI cameras unavailable; USB cameras work)\n'
    fi
    if command -v nvpmodel >/dev/null; then
        printf '  power mode: %s\n' "$(nvpmodel -q 2>/dev/null | tr '\n' ' ')"
    fi
}

# ---------------------------------------------------------------------------- main

main() {
    while (($#)); do
        case "$1" in
        --dry-run) dry_run=1 ;;
        --check) check_only=1 ;;
        --prefix) prefix="${2:?--prefix needs a folder}"; shift ;;
        --source) source_dir="${2:?--source needs a folder}"; shift ;;
        --wheel) wheel="${2:?--wheel needs a file}"; shift ;;
        --env-file) env_file="${2:?--env-file needs a file}"; shift ;;
        --no-engine) build_engine=0 ;;
        --no-service) install_service=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    if ((check_only)); then
        device_check
        return
    fi
    if ((dry_run)); then
        printf 'stopsign-edge install: dry run, nothing is changed\n'
    fi
    check_platform
    install_apt_packages
    create_user
    create_venv
    write_settings
    link_model
    if ((build_engine)); then
        build_engine_now
    fi
    if ((install_service)); then
        install_unit
    fi
    device_check
    if ((dry_run)); then
        printf 'dry run done: %d check(s) would stop a real install on this host\n' "$failures"
    else
        printf 'installed.\n'
    fi
}

main "$@"
