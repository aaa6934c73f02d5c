#!/bin/sh
# Test feature: its lifecycle commands append to /tmp/lifecycle.log.
set -e
mkdir -p /usr/local/share /opt/lifecycle
echo "lifecycle" >> /usr/local/share/flightdeck-features.log
touch /opt/lifecycle/installed
