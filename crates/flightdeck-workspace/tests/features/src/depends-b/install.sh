#!/bin/sh
# Test feature: depends-a's dependency.
set -e
mkdir -p /usr/local/share /usr/local/bin
echo "depends-b level=${LEVEL}" >> /usr/local/share/flightdeck-features.log
printf '#!/bin/sh\necho depends-b %s\n' "${LEVEL}" > /usr/local/bin/depends-b-tool
chmod 755 /usr/local/bin/depends-b-tool
