#!/bin/sh
# The start command (README): builds the suite and starts what exists on an
# embedded default.  Today the suite is the foundation (configuration
# readers, postconf, cyr_info, the daemon skeleton): this builds it and shows
# the embedded default configuration through our postconf and cyr_info.
# The daemons (saslauthd, the store, the hub, the Murder) join this script
# as their issues land.
set -eu
cd "$(dirname "$0")/../.."
command -v cargo >/dev/null || { echo "cargo (Rust 1.95) is required" >&2; exit 1; }
# Build dependencies (libraries the suite links with).
need=""
for p in libkrb5-dev libpam0g-dev libcrypt-dev; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
cargo build --bins
run=${MUMAIL_RUN:-/tmp/mumail-local}
mkdir -p "$run/postfix" "$run/imap"
cp etc/postfix/main.cf etc/postfix/master.cf "$run/postfix/"
sed "s#@RUN@#$run#g" etc/imapd.conf >"$run/imap/imapd.conf"
cp etc/cyrus.conf "$run/imap/cyrus.conf"
echo "== postconf -n ($run/postfix)"
./target/debug/postconf -c "$run/postfix" -n
echo "== cyr_info conf ($run/imap)"
./target/debug/cyr_info -C "$run/imap/imapd.conf" -M "$run/imap/cyrus.conf" conf
echo "mumail foundation built in target/debug; no daemon exists yet to start."
