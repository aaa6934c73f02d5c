#!/bin/sh
# Test feature: installs /opt/env-path/bin/env-path-tool (found through the PATH that its
# containerEnv sets) and logs the PATH and ENV_PATH_HOME that install.sh itself sees.
set -e
mkdir -p /usr/local/share /opt/env-path/bin
echo "env-path home=${ENV_PATH_HOME} path=${PATH}" >> /usr/local/share/flightdeck-features.log
cat > /opt/env-path/bin/env-path-tool <<'TOOL'
#!/bin/sh
echo "env-path-tool home=${ENV_PATH_HOME}"
TOOL
chmod 755 /opt/env-path/bin/env-path-tool
