# Shared by the scripts in this folder: messages, root access, OS packages, the state folder.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${EVENTLINE_STATE_DIR:-$ROOT/.eventline}"
LOG_DIR="$STATE_DIR/logs"
RUN_DIR="$STATE_DIR/run"
SCRIPT_NAME="$(basename "$0" .sh)"

say() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install sudo or run as root)"; fi
}

apt_install() {
  say "installing $* from the OS packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Installs the OS package $2 unless command $1 exists.
need_command() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

mkdir -p "$LOG_DIR" "$RUN_DIR"

# What building eventline needs beside the Rust toolchain: a C toolchain and make for the
# vendored librdkafka, and OpenSSL's headers for its TLS support.
ensure_build_tools() {
  command -v cargo >/dev/null 2>&1 || die "cargo is needed: install a Rust toolchain (https://rustup.rs)"
  need_command cc build-essential
  need_command make make
  need_command pkg-config pkg-config
  pkg-config --exists openssl || apt_install libssl-dev
}
