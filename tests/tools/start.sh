#!/bin/sh
# The start command (README): builds the suite and starts a whole local
# Murder on an embedded default in $MUMAIL_RUN (default /tmp/mumail-local),
# nothing to configure:
#   - OpenLDAP slapd on 127.0.0.1:24389 with test users u1..u5 (password
#     testpw), the Active Directory stand-in;
#   - our saslauthd -a ldap on $MUMAIL_RUN/saslauthd/mux against it;
#   - the MUPDATE master (mupdate -m) on 127.0.0.1:13905, from
#     etc/murder/master.*;
#   - two back ends (stores), 127.0.0.2 and 127.0.0.3, each our master
#     running imapd :14300, pop3d :11000, lmtpd :24024 and a UNIX socket,
#     from etc/murder/backend.* (u5 administers; u1..u3 live on the first,
#     u4 and u5 on the second);
#   - the front end on 127.0.0.1: the MUPDATE replica and the IMAP, POP3
#     and LMTP proxies on :14300, :11000, :24024 and a UNIX socket, from
#     etc/murder/frontend.* (MUMAIL_SERVICES gives the back ends' ports);
#   - the hub: our postfix-master from etc/postfix (smtpd on 127.0.0.1:2525,
#     AUTH through the saslauthd above, delivery by LMTP to the front end's
#     proxy), queue and log under $MUMAIL_RUN/postfix;
#   - main.cf/master.cf and imapd.conf/cyrus.conf shown through our postconf
#     and cyr_info.
# Stop everything with:  sh tests/tools/start.sh stop
set -eu
cd "$(dirname "$0")/../.."
run=${MUMAIL_RUN:-/tmp/mumail-local}
stop() {
  for f in "$run"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  rm -f "$run"/*.pid
}
if [ "${1:-}" = stop ]; then stop; echo "stopped"; exit 0; fi
command -v cargo >/dev/null || { echo "cargo (Rust 1.95) is required" >&2; exit 1; }
need=""
for p in libkrb5-dev libpam0g-dev libcrypt-dev zlib1g-dev pkgconf slapd ldap-utils; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; }
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
cargo build --bins
stop
mkdir -p "$run/postfix" "$run/slapd/db" "$run/saslauthd" "$run/mupdate/config" "$run/frontend/config"
cp etc/postfix/main.cf etc/postfix/master.cf "$run/postfix/"
for f in master frontend; do
  sed "s#@RUN@#$run#g" "etc/murder/$f.imapd.conf" >"$run/$f.imapd.conf"
  sed "s#@RUN@#$run#g" "etc/murder/$f.cyrus.conf" >"$run/$f.cyrus.conf"
done
for b in 127.0.0.2 127.0.0.3; do
  mkdir -p "$run/$b/config" "$run/$b/spool"
  sed -e "s#@RUN@#$run#g" -e "s#@NAME@#$b#g" etc/murder/backend.imapd.conf >"$run/$b.imapd.conf"
  sed -e "s#@RUN@#$run#g" -e "s#@NAME@#$b#g" etc/murder/backend.cyrus.conf >"$run/$b.cyrus.conf"
done
# The front end reaches back ends by name and service, as Cyrus does.
printf 'imap 14300/tcp\npop3 11000/tcp\nlmtp 24024/tcp\nsieve 14190/tcp\nmupdate 13905/tcp\n' >"$run/services"

base="dc=mumail,dc=test"
cat >"$run/slapd/slapd.conf" <<EOC
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "$base"
rootdn "cn=admin,$base"
rootpw adminpw
directory $run/slapd/db
access to attrs=userPassword by anonymous auth by self read by * none
access to * by * read
EOC
if [ ! -f "$run/slapd/db/data.mdb" ]; then
  {
    printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: mumail\no: mumail\n\n' "$base"
    printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$base"
    for i in 1 2 3 4 5; do
      printf 'dn: uid=u%s,ou=people,%s\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: u%s\ncn: User %s\nsn: %s\nmail: u%s@mumail.test\nuidNumber: 1000%s\ngidNumber: 10000\nhomeDirectory: /nonexistent\nuserPassword: testpw\n\n' "$i" "$base" "$i" "$i" "$i" "$i" "$i"
    done
  } >"$run/slapd/init.ldif"
  slapadd -f "$run/slapd/slapd.conf" -l "$run/slapd/init.ldif" >/dev/null 2>&1
fi
/usr/sbin/slapd -f "$run/slapd/slapd.conf" -h ldap://127.0.0.1:24389/ -d 0 >"$run/slapd/slapd.log" 2>&1 &
echo $! >"$run/slapd.pid"
printf 'ldap_servers: ldap://127.0.0.1:24389/\nldap_search_base: ou=people,%s\nldap_filter: (uid=%%u)\nldap_timeout: 5\n' "$base" >"$run/saslauthd.conf"
sleep 1
./target/debug/saslauthd -a ldap -O "$run/saslauthd.conf" -m "$run/saslauthd" -c
cp "$run/saslauthd/saslauthd.pid" "$run/saslauthd-daemon.pid"
wait_port() {
  for i in $(seq 1 40); do
    python3 -c "import socket; socket.create_connection(('$1', $2))" 2>/dev/null && return 0
    sleep 0.25
  done
  echo "nothing listens on $1:$2" >&2
  return 1
}
./target/debug/master -C "$run/master.imapd.conf" -M "$run/master.cyrus.conf" -p "$run/master-mupdate.pid" -d
wait_port 127.0.0.1 13905
for b in 127.0.0.2 127.0.0.3; do
  MUMAIL_SERVICES="$run/services" ./target/debug/master -C "$run/$b.imapd.conf" -M "$run/$b.cyrus.conf" -p "$run/master-$b.pid" -d
  wait_port $b 14300
done
MUMAIL_SERVICES="$run/services" ./target/debug/master -C "$run/frontend.imapd.conf" -M "$run/frontend.cyrus.conf" -p "$run/master-frontend.pid" -d
wait_port 127.0.0.1 14300
python3 - "$run" <<'EOP'
import imaplib, smtplib, sys, time
run = sys.argv[1]
# u1..u3 on the first back end, u4 and u5 on the second (the admin
# creates the INBOXes there; each back end tells the MUPDATE master).
for host, users in (('127.0.0.2', ('u1', 'u2', 'u3')), ('127.0.0.3', ('u4', 'u5'))):
    A = imaplib.IMAP4(host, 14300)
    A.login('u5', 'testpw')
    for u in users:
        A.create('user.' + u)
    A.logout()
time.sleep(0.5)
l = smtplib.LMTP(run + '/frontend/config/socket/lmtp')
l.sendmail('welcome@mumail.test', ['u1', 'u4'], b'Subject: welcome to mumail\r\nFrom: welcome@mumail.test\r\n\r\nThe local murder works.\r\n')
l.quit()
for u in ('u1', 'u4'):
    M = imaplib.IMAP4('127.0.0.1', 14300)
    M.login(u, 'testpw')
    print('== front end: %s INBOX has' % u, M.select('INBOX')[1][0].decode(), 'message(s)')
    M.logout()
EOP
# The hub: the sample main.cf/master.cf, pointed at this run's directories.
id postfix >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin postfix
mkdir -p "$run/postfix/queue"
cat >>"$run/postfix/main.cf" <<EOC
queue_directory = $run/postfix/queue
maillog_file = $run/postfix/maillog
maillog_file_prefixes = $run
mailbox_transport = lmtp:unix:$run/frontend/config/socket/lmtp
local_recipient_maps =
alias_maps = hash:$run/postfix/aliases
alias_database = hash:$run/postfix/aliases
cyrus_sasl_config_path = $run/postfix
EOC
printf 'postmaster: u1\nabuse: u1\nstaff: u1, u2\n' >"$run/postfix/aliases"
printf 'pwcheck_method: saslauthd\nsaslauthd_path: %s\nmech_list: PLAIN LOGIN\n' "$run/saslauthd/mux" >"$run/postfix/smtpd.conf"
sed -i 's/^smtp      inet /127.0.0.1:2525 inet /' "$run/postfix/master.cf"
./target/debug/postfix-master -c "$run/postfix" >"$run/postfix/stderr" 2>&1 &
echo $! >"$run/postfix-master.pid"
for i in 1 2 3 4 5 6 7 8 9 10; do
  python3 -c 'import socket; socket.create_connection(("127.0.0.1", 2525))' 2>/dev/null && break
  sleep 0.5
done
python3 - <<'EOP'
import imaplib, smtplib, time
s = smtplib.SMTP('127.0.0.1', 2525)
s.login('u2', 'testpw')
s.sendmail('u2@mumail.test', ['u1@mumail.test'], b'Subject: through the hub\r\nFrom: u2@mumail.test\r\n\r\nThe local hub works.\r\n')
s.quit()
M = imaplib.IMAP4('127.0.0.1', 14300)
M.login('u1', 'testpw')
for i in range(50):
    n = int(M.select('INBOX')[1][0])
    if n >= 2:
        break
    time.sleep(0.1)
print('== hub: u1 INBOX has', n, 'message(s) after one sent through the hub (AUTH as u2)')
M.logout()
EOP
echo "== postconf -n ($run/postfix)"
./target/debug/postconf -c "$run/postfix" -n
echo "== cyr_info conf (front end)"
./target/debug/cyr_info -C "$run/frontend.imapd.conf" -M "$run/frontend.cyrus.conf" conf
echo "== the MUPDATE master's list"
printf 'A01 LIST\nA02 LOGOUT\n' | /usr/lib/cyrus/bin/mupdatetest -a u5 -u u5 -w testpw -m PLAIN -p 13905 127.0.0.1 2>/dev/null | grep -a 'MAILBOX\|OK' || true
echo "== saslauthd (ldap, users u1..u5 / testpw)"
./target/debug/testsaslauthd -f "$run/saslauthd/mux" -u u1 -p testpw
echo "running: slapd on 127.0.0.1:24389, saslauthd on $run/saslauthd/mux"
echo "         the MUPDATE master on 127.0.0.1:13905"
echo "         back ends 127.0.0.2 and 127.0.0.3: imapd :14300, pop3d :11000, lmtpd :24024, timsieved :14190"
echo "         the front end 127.0.0.1: IMAP :14300, POP3 :11000, LMTP :24024, ManageSieve :14190 and $run/frontend/config/socket/lmtp (proxies)"
echo "         the hub (postfix-master) with smtpd on 127.0.0.1:2525, delivering to the front end; log in $run/postfix/maillog"
echo "try:     ./target/debug/testsaslauthd -f $run/saslauthd/mux -u u2 -p testpw"
echo "         swaks --server 127.0.0.1:2525 --to u3@mumail.test --auth PLAIN --auth-user u2 --auth-password testpw"
echo "         ./target/debug/mailq -C $run/postfix"
echo "         /usr/lib/cyrus/bin/imtest -a u2 -w testpw -m login -p 14300 127.0.0.1   (cyrus-clients)"
echo "         /usr/lib/cyrus/bin/pop3test -a u2 -w testpw -m login -p 11000 127.0.0.1"
echo "         sieveshell -a u2 -u u2 -p testpw 127.0.0.1:14190   (cyrus-admin)"
echo "         python3 -c \"import imaplib; M=imaplib.IMAP4('127.0.0.1',14300); print(M.login('u2','testpw'))\""
echo "stop:    sh tests/tools/start.sh stop"
