#!/usr/bin/env bash
# Install promtool (Debian package `prometheus`) when it is missing; do nothing when it is present.
# The package also ships the prometheus server and may start it as a service on install; tests need
# only the binaries, so any server the install started is stopped again.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

# Remember which prometheus servers ran before, so we stop only one the install started.
before="$(pgrep -x prometheus || true)"

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends prometheus

after="$(pgrep -x prometheus || true)"
for pid in $after; do
  case " $before " in
    *" $pid "*) ;;
    *)
      if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl stop prometheus || true
        $SUDO systemctl disable prometheus || true
      elif command -v service >/dev/null 2>&1; then
        $SUDO service prometheus stop || true
      fi
      # Still alive (no service manager answered): end that one process by its id.
      if kill -0 "$pid" 2>/dev/null; then
        $SUDO kill "$pid" || true
      fi
      ;;
  esac
done

command -v promtool >/dev/null 2>&1 || { echo "promtool still missing after install" >&2; exit 1; }
promtool --version 2>&1 | head -n 1
