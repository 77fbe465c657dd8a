//! UTF8=ACCEPT (RFC 6855) and IMAP4rev2 (RFC 9051) over a raw socket:
//! UTF-8 mailbox names once enabled (stored in modified UTF-7, so other
//! sessions see mUTF-7), APPEND's UTF8 literal, and under IMAP4rev2 no
//! \Recent or RECENT, ESEARCH for SEARCH, STATUS DELETED.

mod harness;
use harness::*;

const SCRIPT: &str = r#"
import socket, sys, re
port = int(sys.argv[1])

plain = S()
assert b'IMAP4rev2' in plain.greeting, plain.greeting
caps = b' '.join(plain.cmd(b'CAPABILITY'))
assert b'UTF8=ACCEPT' in caps and b'IMAP4rev2' in caps and b'WITHIN' in caps and b'SAVEDATE' in caps, caps
plain.cmd(b'CREATE Entw&APw-rfe')
# Raw UTF-8 is not a name before ENABLE.
plain.cmd('CREATE "Caf\u00e9"'.encode(), ok=False)

u = S()
assert u.cmd(b'ENABLE UTF8=ACCEPT') == [b'* ENABLED UTF8=ACCEPT']
lst = b'\n'.join(u.cmd(b'LIST "" "*"'))
assert 'Entwürfe'.encode() in lst and b'&APw-' not in lst, lst
u.cmd('CREATE "日本語"'.encode())
u.cmd('SELECT "Entwürfe"'.encode())
msg = 'Subject: Grüße\r\nFrom: jürgen@example.org\r\n\r\nHallo\r\n'.encode()
u.cmd(b'APPEND "' + 'Entwürfe'.encode() + b'" UTF8 (~{%d+}\r\n' % len(msg) + msg + b')')
st = u.cmd('STATUS "Entwürfe" (MESSAGES)'.encode())
assert st and b'(MESSAGES 1)' in st[0], st
# Other sessions see the names in modified UTF-7.
lst = b'\n'.join(plain.cmd(b'LIST "" "*"'))
assert b'&ZeVnLIqe-' in lst and b'Entw&APw-rfe' in lst, lst

r = S()
assert r.cmd(b'ENABLE IMAP4rev2') == [b'* ENABLED IMAP4rev2']
r.cmd(b'APPEND INBOX {19+}\r\nSubject: one\r\n\r\nx\r\n')
r.cmd(b'APPEND INBOX {19+}\r\nSubject: two\r\n\r\nx\r\n')
sel = r.cmd(b'SELECT INBOX')
assert not any(b'RECENT' in l for l in sel), sel
f = r.cmd(b'FETCH 1:* (FLAGS)')
assert f and not any(b'\\Recent' in l for l in f), f
s = r.cmd(b'SEARCH ALL')
assert s == [b'* ESEARCH (TAG "t7") ALL 1:2'], s
s = r.cmd(b'UID SEARCH SUBJECT two')
assert len(s) == 1 and s[0].startswith(b'* ESEARCH (TAG "t8") UID ALL '), s
assert r.cmd(b'SEARCH SUBJECT nothing') == [b'* ESEARCH (TAG "t9")']
r.cmd(b'STORE 1 +FLAGS.SILENT (\\Deleted)')
st = r.cmd(b'STATUS INBOX (MESSAGES DELETED RECENT)')
assert st == [b'* STATUS INBOX (MESSAGES 2 DELETED 1)'], st
lst = b'\n'.join(r.cmd(b'LIST "" "*"'))
assert '日本語'.encode() in lst, lst
# WITHIN (RFC 5032) and SAVEDATE (RFC 8514) search keys.
for key, want in [(b'YOUNGER 3600', b' ALL 1:2'), (b'OLDER 3600', None), (b'SAVEDSINCE 1-Jan-2020', b' ALL 1:2'),
                  (b'SAVEDBEFORE 1-Jan-2020', None), (b'SAVEDATESUPPORTED', b' ALL 1:2'), (b'SAVEDON 1-Jan-2020', None)]:
    out = r.cmd(b'SEARCH ' + key)
    assert len(out) == 1 and out[0].startswith(b'* ESEARCH (TAG'), (key, out)
    assert (want in out[0]) if want else (b'ALL' not in out[0]), (key, out)
# A rev1 session still gets SEARCH and RECENT.
p2 = S()
p2.cmd(b'EXAMINE INBOX')
assert p2.cmd(b'SEARCH ALL') == [b'* SEARCH 1 2']
print('ALL OK')
"#;

#[test]
fn utf8_accept_and_imap4rev2() {
    if !can_run("imap4rev2", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let out = python(&format!("{IMAP_SESSION}{SCRIPT}"), &[&b.imap_port.to_string()]);
    assert!(out.contains("ALL OK"), "{out}");
}
