#!/bin/sh
# Test feature: installs an entrypoint that touches /tmp/entrypoint-ran, then execs "$@".
set -e
mkdir -p /usr/local/share/entrypoint-feature
echo "entrypoint" >> /usr/local/share/flightdeck-features.log
cat > /usr/local/share/entrypoint-feature/entrypoint.sh <<'SCRIPT'
#!/bin/sh
echo "entrypoint ran" >> /tmp/entrypoint-ran
exec "$@"
SCRIPT
chmod 755 /usr/local/share/entrypoint-feature/entrypoint.sh
