#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only those whose command is missing:
# as root with apt-get, else with `sudo -n` if that works without a password, else it stops
# at once with one line naming the packages and the command that installs them.
#
# Usage: scripts/system-packages.sh [COMMAND:PACKAGE ...]
# Without arguments: what the tests need (`make test`):
# - chromium: the web pages are tested in a real headless Chromium (no browser download);
# - prometheus: `promtool` checks deploy/prometheus/, and a real server scrapes the service.
set -euo pipefail

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(chromium:chromium promtool:prometheus prometheus:prometheus)

missing=()
for pair in "${wanted[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  if [ -z "$cmd" ] || [ -z "$pkg" ] || [ "$cmd" = "$pair" ]; then
    echo "system-packages.sh: argument '$pair' is not COMMAND:PACKAGE" >&2
    exit 2
  fi
  command -v "$cmd" >/dev/null 2>&1 && continue
  [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as=(sudo -n)
else
  echo "missing Debian packages: ${missing[*]}; install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "installing Debian packages: ${missing[*]}" >&2
# Waits for another apt/dpkg run to finish rather than failing on its lock.
apt=("${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300)
"${apt[@]}" update
"${apt[@]}" install -y "${missing[@]}" >/dev/null
