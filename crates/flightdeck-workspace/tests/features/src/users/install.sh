#!/bin/sh
# Test feature: logs the user variables the build passes to install.sh.
set -e
mkdir -p /usr/local/share /opt/users
echo "users remote=${_REMOTE_USER} remote_home=${_REMOTE_USER_HOME} container=${_CONTAINER_USER} container_home=${_CONTAINER_USER_HOME}" >> /usr/local/share/flightdeck-features.log
echo "${_REMOTE_USER}" > /opt/users/remote-user
