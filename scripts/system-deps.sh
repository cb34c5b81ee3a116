#!/usr/bin/env bash
# Install the Debian packages the service and its tests need, when they are missing.
# ffmpeg libraries come inside PyAV's wheel; these are the command-line tools, servers and browser.
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox libsox-fmt-all)
command -v redis-server >/dev/null || need+=(redis-server)
# The browser test of the web pages drives Debian's Chromium through its own chromedriver.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ "${QA_WITH_POSTGRES:-1}" = 1 ] && ! command -v pg_ctlcluster >/dev/null && ! command -v pg_ctl >/dev/null; then
  need+=(postgresql)
fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
