#!/bin/sh
# Test feature: needs depends-b installed before it.
set -e
mkdir -p /usr/local/share /usr/local/bin
if [ -x /usr/local/bin/depends-b-tool ]; then b=present; else b=missing; fi
echo "depends-a mode=${MODE} depends-b=${b}" >> /usr/local/share/flightdeck-features.log
printf '#!/bin/sh\necho depends-a\n' > /usr/local/bin/depends-a-tool
chmod 755 /usr/local/bin/depends-a-tool
