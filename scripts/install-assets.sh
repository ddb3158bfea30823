#!/bin/sh
# Real images from Debian that the offline data and its tests use: Fashion-MNIST product photos.
# As root: apt-get install. Otherwise the package is unpacked into $STEERVIT_HOME/fashion-mnist.
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
