#!/usr/bin/env bash
# happyhorse installer: system packages, release build, binary on PATH. Safe to run again.
#
#   ./install.sh            install happyhorse (CPU build)
#   ./install.sh --cuda     build with CUDA (needs the CUDA toolkit); --metal on Apple silicon
#   ./install.sh --test     install the system packages and run the whole test suite instead
#   ./install.sh --prefix DIR   install DIR/bin/happyhorse (default: /usr/local as root, ~/.local otherwise)
#   ./install.sh --no-system    skip the system packages (you installed them yourself)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

features=()
mode=install
system=1
if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) features+=(cuda) ;;
    --metal) features+=(metal) ;;
    --flash-attn) features+=(flash-attn) ;;
    --test) mode=test ;;
    --no-system) system=0 ;;
    --prefix) prefix="$2"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "install.sh: $*" >&2; }

debian_packages=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev libasound2-dev libclang-dev clang pkg-config ffmpeg tmux)

install_system() {
  if command -v apt-get >/dev/null 2>&1; then
    local missing=()
    for p in "${debian_packages[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then say "system packages already installed"; return; fi
    say "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  elif command -v brew >/dev/null 2>&1; then
    brew install ffmpeg pkg-config llvm tmux
  else
    say "no apt-get or brew here: install FFmpeg (libav* development files), libclang and pkg-config yourself, then rerun with --no-system"
    exit 1
  fi
}

[ "$system" = 1 ] && install_system

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  say "Rust is needed to build happyhorse: install it with"
  say "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
  say "then run ./install.sh again"
  exit 1
fi

feature_args=()
[ ${#features[@]} -gt 0 ] && feature_args=(--features "$(IFS=,; echo "${features[*]}")")

if [ "$mode" = test ]; then
  say "running the test suite"
  exec cargo test --locked "${feature_args[@]}"
fi

say "building happyhorse (release${features:+, ${features[*]}})"
cargo install --locked --path . --root "$prefix" --force "${feature_args[@]}"
bin="$prefix/bin/happyhorse"
say "installed $bin"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) say "add $prefix/bin to your PATH, e.g.: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
