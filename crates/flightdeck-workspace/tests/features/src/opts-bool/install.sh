#!/bin/sh
# Test feature: logs its boolean options; installs /opt/opts-bool/enabled only when enabled.
set -e
mkdir -p /usr/local/share /opt/opts-bool
echo "opts-bool enabled=${ENABLED} verbose=${VERBOSE}" >> /usr/local/share/flightdeck-features.log
if [ "${ENABLED}" = "true" ]; then
    echo "${VERBOSE}" > /opt/opts-bool/enabled
fi
