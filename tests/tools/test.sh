#!/bin/sh
# The test command (README, .ci/run): installs what the tests need on a
# fresh Debian 12 machine, then runs the whole suite.
set -eu
cd "$(dirname "$0")/../.."
# Real peers and clients the tests drive, and the RPM tools (rpmbuild,
# rpmlint, mandoc, systemd-analyze) for the packaging tests (Debian 12 names).
packages="postfix opendkim opendkim-tools python3-dkim cyrus-common cyrus-imapd cyrus-pop3d cyrus-clients cyrus-admin cyrus-murder swaks sasl2-bin slapd ldap-utils krb5-kdc krb5-admin-server krb5-user libkrb5-dev libpam0g-dev libpam-krb5 libcrypt-dev zlib1g-dev pkgconf util-linux isync offlineimap3 fetchmail dovecot-core pflogsumm libnet-ssleay-perl libio-socket-ssl-perl dnsmasq-base libsasl2-modules-gssapi-mit python3-gssapi postfix-ldap postfix-mysql mariadb-server mariadb-client rpm rpmlint mandoc man-db file systemd fail2ban"
need=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  # No package may start a system daemon (policy-rc.d), none is needed.
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi
  export DEBIAN_FRONTEND=noninteractive
  {
    echo "postfix postfix/main_mailer_type select No configuration"
    echo "slapd slapd/no_configuration boolean true"
    echo "krb5-config krb5-config/default_realm string MUMAIL.TEST"
    echo "krb5-config krb5-config/add_servers_realm string MUMAIL.TEST"
  } | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
log=$(mktemp)
set +e
# The optional mysql: tables (feature "mysql") are built and tested too.
cargo test --no-fail-fast --features mysql >"$log" 2>&1
status=$?
cat "$log"
set -e
# One closing line over all test binaries.
awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f}' "$log"
rm -f "$log"
exit $status
