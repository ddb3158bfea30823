#!/bin/sh
# What the demo and the tests need from Debian: Fashion-MNIST product photos (real images for the
# offline data). As root: apt-get install. Otherwise it is unpacked into $STEERVIT_HOME/fashion-mnist.
# (The web app's browser test also needs chromium: scripts/install-browser.sh, run by `make test`.)
set -e
FILE=t10k-images-idx3-ubyte.gz
HOME_DIR="${STEERVIT_HOME:-$HOME/.cache/steervit}"
if [ -f "/usr/share/datasets/fashion-mnist/$FILE" ] || [ -f "$HOME_DIR/fashion-mnist/$FILE" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb unpacked)
mkdir -p "$HOME_DIR/fashion-mnist"
cp "$tmp"/unpacked/usr/share/datasets/fashion-mnist/*.gz "$HOME_DIR/fashion-mnist/"
