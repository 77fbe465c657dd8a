#!/bin/sh
# Records the expected outputs in compat/ by running the REAL programs
# (Debian 12: postfix 3.7.11, cyrus-common 3.6.1).  See compat/README.
# Paths of the case directory are written as @DIR@ so the files replay
# anywhere.  Usage: sh tests/tools/record-compat.sh
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
CYR_INFO=${CYR_INFO:-/usr/lib/cyrus/bin/cyr_info}
POSTFIX_NAMES="myorigin mydestination relayhost smtpd_banner header_size_limit compatibility_level smtpd_relay_restrictions inet_interfaces"
for d in "$top"/compat/postfix/*/; do
  d=${d%/}
  tmp=$(mktemp -d)
  for f in "$d"/*; do case "$f" in *.out|*.err|*.after-*) ;; *) cp "$f" "$tmp/" ;; esac; done
  sub() { sed "s#$tmp#@DIR@#g"; }
  postconf -c "$tmp" -n >"$d/postconf-n.out" 2>"$tmp/err"; echo "status $?" >>"$d/postconf-n.out"; sub <"$tmp/err" | sort -u >"$d/postconf-n.err"
  sub <"$d/postconf-n.out" >"$tmp/x" && mv "$tmp/x" "$d/postconf-n.out"
  postconf -c "$tmp" -d >"$d/postconf-d.out" 2>/dev/null
  postconf -c "$tmp" -h $POSTFIX_NAMES 2>/dev/null | sub >"$d/postconf-h.out"
  postconf -c "$tmp" -M >"$d/postconf-M.out" 2>/dev/null
  postconf -c "$tmp" -Mf >"$d/postconf-Mf.out" 2>/dev/null
  postconf -c "$tmp" -F >"$d/postconf-F.out" 2>/dev/null
  postconf -c "$tmp" -P >"$d/postconf-P.out" 2>/dev/null
  postconf -c "$tmp" -e 'myhostname = edited.example.com' 'mumail_test_new = a  b' >/dev/null 2>&1
  cp "$tmp/main.cf" "$d/main.cf.after-e"
  postconf -c "$tmp" -X mydestination >/dev/null 2>&1
  postconf -c "$tmp" -# myhostname >/dev/null 2>&1
  cp "$tmp/main.cf" "$d/main.cf.after-X-comment"
  rm -rf "$tmp"
done
for d in "$top"/compat/cyrus/*/; do
  d=${d%/}
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # cyr_info drops privilege to the cyrus user
  sed "s#\$PEERS_TMP#$tmp#g" "$d/imapd.conf" >"$tmp/imapd.conf"
  cp "$d/cyrus.conf" "$tmp/cyrus.conf"
  for cmd in conf conf-all conf-default conf-lint; do
    "$CYR_INFO" -C "$tmp/imapd.conf" -M "$tmp/cyrus.conf" $cmd >"$tmp/out" 2>&1; echo "status $?" >>"$tmp/out"
    sed "s#$tmp#@DIR@#g" "$tmp/out" >"$d/cyr_info-$cmd.out"
  done
  "$CYR_INFO" -C "$tmp/imapd.conf" -M "$tmp/cyrus.conf" -n imaps conf >"$tmp/out" 2>&1; echo "status $?" >>"$tmp/out"
  sed "s#$tmp#@DIR@#g" "$tmp/out" >"$d/cyr_info-n-imaps-conf.out"
  rm -rf "$tmp"
done
