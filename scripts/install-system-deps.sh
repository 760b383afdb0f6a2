#!/usr/bin/env bash
# Debian packages the test suite needs: a real single-node Slurm (slurm-wlm) and its
# authentication daemon (munge), a browser for the UI test (chromium, driven by Playwright) and a
# PostgreSQL server for the Postgres-storage test. Idempotent: installs only what is missing, so CI can run it
# on every build. Safe on a fresh Debian bookworm machine as root; uses sudo otherwise.
set -euo pipefail

packages=(slurm-wlm munge chromium postgresql)

missing=()
for package in "${packages[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-system-deps: already present: ${packages[*]}"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-system-deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi

# The packages would start system-wide munged/slurmctld/slurmd/postgresql services; the tests start their own
# daemons on loopback instead, so forbid service starts while installing (Debian's policy-rc.d).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi

echo "install-system-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
