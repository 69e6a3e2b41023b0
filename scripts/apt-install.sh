#!/usr/bin/env bash
# Install Debian packages without prompts: sudo when not root, `apt-get update` only when the first try fails
# (the package lists of a fresh machine are empty). Used by install-dictionary.sh and install-postgres.sh.
#
# Usage: scripts/apt-install.sh PACKAGE...
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends "$@" || {
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "$@"
}
