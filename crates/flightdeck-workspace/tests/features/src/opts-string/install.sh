#!/bin/sh
# Test feature: logs its options, installs a tool that prints them.
set -e
mkdir -p /usr/local/share /usr/local/bin
echo "opts-string flavor=${FLAVOR} size=${SIZE} color=${COLOR}" >> /usr/local/share/flightdeck-features.log
cat > /usr/local/bin/opts-string-tool <<TOOL
#!/bin/sh
echo "opts-string flavor=${FLAVOR} size=${SIZE} color=${COLOR}"
TOOL
chmod 755 /usr/local/bin/opts-string-tool
