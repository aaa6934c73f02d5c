#!/bin/sh
# Test feature: asks for SYS_PTRACE and seccomp=unconfined in its metadata.
set -e
mkdir -p /usr/local/share /opt/cap-add
echo "cap-add" >> /usr/local/share/flightdeck-features.log
touch /opt/cap-add/installed
