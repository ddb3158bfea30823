#!/bin/sh
# What the tests and the demo need from Debian: Fashion-MNIST product photos (real images for the
# offline data) and, for the web app's browser test, chromium + chromium-driver.
# As root: apt-get install. Otherwise Fashion-MNIST is unpacked into $STEERVIT_HOME/fashion-mnist.
set -e
if [ "$(id -u)" = 0 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
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
