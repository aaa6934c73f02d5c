#!/bin/sh
# Test feature: logs whether after-d was installed before it.
set -e
mkdir -p /usr/local/share /opt/after-c
if [ -e /opt/after-d/installed ]; then d=present; else d=missing; fi
echo "after-c after-d=${d}" >> /usr/local/share/flightdeck-features.log
touch /opt/after-c/installed
