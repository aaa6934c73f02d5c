#!/bin/sh
# Test feature: asks for --privileged in its metadata.
set -e
mkdir -p /usr/local/share /opt/privileged
echo "privileged" >> /usr/local/share/flightdeck-features.log
touch /opt/privileged/installed
