#!/bin/sh
# Runs every cargo-fuzz target briefly (stable toolchain: no sanitizer).
# A crash fails; a missing cargo-fuzz that cannot be installed is reported
# and skipped.  Usage: sh tests/tools/fuzz-smoke.sh [seconds]
set -u
cd "$(dirname "$0")/../.."
secs=${1:-10}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked >/dev/null 2>&1 || { echo "fuzz-smoke: cargo-fuzz unavailable, skipped"; exit 0; }
fi
fail=0
for t in $(sed -n 's/^name = "\(.*\)"$/\1/p' tests/fuzz/Cargo.toml | grep -v mumail-fuzz); do
  # New inputs go to a scratch corpus; tests/fuzz/seeds/<target> (real
  # commands and messages) is read as a second corpus.
  mkdir -p "/tmp/fuzz-corpus-$t"
  seeds=""
  [ -d "tests/fuzz/seeds/$t" ] && seeds="tests/fuzz/seeds/$t"
  if cargo fuzz run --fuzz-dir tests/fuzz "$t" -s none "/tmp/fuzz-corpus-$t" $seeds -- -max_total_time="$secs" -rss_limit_mb=1024 >/tmp/fuzz-smoke-$t.log 2>&1; then
    echo "fuzz $t: $(grep -a -o 'Done [0-9]* runs' /tmp/fuzz-smoke-$t.log)"
  else
    echo "fuzz $t: CRASH (see /tmp/fuzz-smoke-$t.log)"; grep -a -A5 panicked /tmp/fuzz-smoke-$t.log | head -8
    fail=1
  fi
done
exit $fail
