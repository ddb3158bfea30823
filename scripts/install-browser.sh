#!/bin/sh
# For the web app's browser test only (`make test`): chromium + chromium-driver from Debian, as root.
# Nothing else needs a browser (the test itself says clearly when one cannot be had).
set -e
if [ "$(id -u)" = 0 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
