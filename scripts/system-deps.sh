#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Java 17 + Maven (the Kafka broker, from Maven
# Central jars), Debian's docker-compose (validates deploy/docker-compose.yml without an engine) and
# Debian's chromium (the dashboard's browser tests drive it through Playwright; Playwright's own browser
# download is not used).
# Installs only what is missing, with apt-get, when run as root; otherwise says what to install.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: please install: ${missing[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
