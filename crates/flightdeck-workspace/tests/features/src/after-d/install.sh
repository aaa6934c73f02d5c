#!/bin/sh
# Test feature: after-c installs after it.
set -e
mkdir -p /usr/local/share /opt/after-d
echo "after-d" >> /usr/local/share/flightdeck-features.log
touch /opt/after-d/installed
