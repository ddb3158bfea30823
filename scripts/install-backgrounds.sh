#!/bin/sh
# Real photo backgrounds for the made scenes: exactly the Debian packages in
# src/steervit/offline/backgrounds.json (docs/offline-backgrounds.md says what is in them).
# As root: apt-get install --no-install-recommends, except for packages marked unpack_only (their
# Depends are large). Otherwise, and for anything still missing after that: apt-get download +
# dpkg -x, and only the catalogued files are copied to $STEERVIT_HOME/backgrounds/<package>/<path>.
# When every catalogued file is present already, it only checks them (well under a second).
set -e
cd "$(dirname "$0")/.."
CATALOGUE=src/steervit/offline/backgrounds.json
HOME_DIR="${STEERVIT_HOME:-$HOME/.cache/steervit}"
DEST="$HOME_DIR/backgrounds"
PYTHON=python3
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python

# "missing": one line "<package> <apt|unpack>" per package with a file in neither place.
# "files <package>": that package's catalogued paths.
catalogue() {
    "$PYTHON" - "$CATALOGUE" "$DEST" "$@" <<'EOF'
import json, os, sys
catalogue, dest, command = sys.argv[1], sys.argv[2], sys.argv[3]
packages = json.load(open(catalogue, encoding="utf-8"))["packages"]
for p in packages:
    paths = [f["path"] for f in p["files"]]
    if command == "files" and p["name"] == sys.argv[4]:
        print("\n".join(paths))
    elif command == "missing":
        if any(not os.path.isfile(x) and not os.path.isfile(os.path.join(dest, p["name"], x.lstrip("/")))
               for x in paths):
            print(p["name"], "unpack" if p.get("unpack_only") else "apt")
EOF
}

missing=$(catalogue missing)
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    apt_pkgs=$(echo "$missing" | awk '$2 == "apt" {print $1}')
    if [ -n "$apt_pkgs" ]; then
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $apt_pkgs
        missing=$(catalogue missing)
    fi
fi

if [ -n "$missing" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    pkgs=$(echo "$missing" | awk '{print $1}')
    sandbox=""  # as root, apt's _apt user could not write into the private temporary folder
    [ "$(id -u)" = 0 ] && sandbox="-o APT::Sandbox::User=root"
    # shellcheck disable=SC2086
    (cd "$tmp" && apt-get download -q $sandbox $pkgs)
    for pkg in $pkgs; do
        dpkg -x "$tmp/${pkg}"_*.deb "$tmp/$pkg"
        catalogue files "$pkg" | while IFS= read -r path; do
            mkdir -p "$DEST/$pkg$(dirname "$path")"
            cp "$tmp/$pkg$path" "$DEST/$pkg$path"
        done
    done
fi

missing=$(catalogue missing)
if [ -n "$missing" ]; then
    echo "install-backgrounds: still missing files from: $(echo "$missing" | awk '{print $1}' | tr '\n' ' ')" >&2
    exit 1
fi
