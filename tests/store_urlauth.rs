//! URLAUTH (RFC 4467) between two users over raw sockets: the owner
//! authorizes URLs to a message of theirs, another user fetches what the
//! access identifiers allow (anonymous, authuser, user+them) and gets NIL
//! for the rest (user+someone-else, submit+ without being a submit
//! server, an expired URL, a forged token); a submit server may resolve
//! submit+; RESETKEY voids every URL made under the key. CATENATE (RFC
//! 4469) across mailboxes and the TOOBIG limit. The answers of a single
//! session are compared with the real Cyrus in store_vs_cyrus.rs.

mod harness;
use harness::*;

const SCRIPT: &str = r#"
import socket, sys, re
port = int(sys.argv[1])

owner = S(b'u7')
caps = b' '.join(owner.cmd(b'CAPABILITY')) + b' '
for c in [b' URLAUTH ', b' URLAUTH=BINARY ', b' CATENATE ', b' THREAD=REFS ', b' LIST-METADATA ', b' X-QUOTA=STORAGE ', b' X-QUOTA=MESSAGE ']:
    assert c in caps, (c, caps)
body = b'Subject: secret\r\nFrom: u7@example.test\r\n\r\nthe attachment\r\n'
owner.cmd(b'APPEND INBOX {%d+}\r\n' % len(body) + body)
sel = owner.cmd(b'SELECT INBOX')
assert b'* OK [URLMECH INTERNAL] Ok' in sel, sel
base = b'imap://u7@backend1/INBOX/;UID=1'
rumps = [base + b';URLAUTH=anonymous', base + b'/;SECTION=TEXT;URLAUTH=authuser', base + b';URLAUTH=user+yes1',
         base + b';URLAUTH=user+u7', base + b';URLAUTH=submit+yes1',
         base + b';EXPIRE=2000-01-01T00:00:00Z;URLAUTH=anonymous', base + b';EXPIRE=2999-01-01T00:00:00Z;URLAUTH=anonymous']
g = owner.cmd(b'GENURLAUTH ' + b' '.join(b'"' + r + b'" INTERNAL' for r in rumps))
urls = re.findall(rb'"([^"]+)"', g[0])
assert len(urls) == len(rumps) and all(u.startswith(r + b':internal:') for u, r in zip(urls, rumps)), g
# Another user's session: what each access identifier allows.
other = S(b'yes1')
forged = urls[0][:-6] + (b'000000' if not urls[0].endswith(b'000000') else b'111111')
f = other.cmd(b'URLFETCH ' + b' '.join(b'"' + u + b'"' for u in urls + [forged]))
assert len(f) == 1, f
got = f[0]
def value(u):
    i = got.index(b'"' + u + b'" ') + len(u) + 3
    if got[i:i+3] == b'NIL': return None
    m = re.match(rb'\{(\d+)\}\r\n', got[i:])
    return got[i + m.end(): i + m.end() + int(m.group(1))]
assert value(urls[0]) == body, got
assert value(urls[1]) == b'the attachment\r\n', got
assert value(urls[2]) == body, got
assert value(urls[3]) is None, 'user+u7 is for u7 only'
assert value(urls[4]) is None, 'yes1 is not a submit server'
assert value(urls[5]) is None, 'expired'
assert value(urls[6]) == body, got
assert value(forged) is None, 'forged token'
# A URL does not name another user's mailbox: yes1 cannot authorize u7's.
other.cmd(b'GENURLAUTH "imap://u7@backend1/INBOX/;UID=1;URLAUTH=anonymous" INTERNAL', ok=False)
# md5u is a submit server (submitservers): submit+yes1 resolves for it.
sub = S(b'md5u')
assert body in sub.cmd(b'URLFETCH "' + urls[4] + b'"')[0]
# RESETKEY: every URL made under the old key is void.
owner.cmd(b'RESETKEY INBOX')
assert other.cmd(b'URLFETCH "' + urls[0] + b'"') == [b'* URLFETCH "' + urls[0] + b'" NIL']
g2 = owner.cmd(b'GENURLAUTH "' + rumps[0] + b'" INTERNAL')
new = re.findall(rb'"([^"]+)"', g2[0])[0]
assert new != urls[0]
assert body in other.cmd(b'URLFETCH "' + new + b'"')[0]
owner.cmd(b'RESETKEY')
assert other.cmd(b'URLFETCH "' + new + b'"') == [b'* URLFETCH "' + new + b'" NIL']
# CATENATE: text and a part of a message in another mailbox.
owner.cmd(b'CREATE Drafts')
t = b'Subject: fwd\r\n\r\n'
owner.cmd(b'APPEND Drafts CATENATE (TEXT {%d+}\r\n' % len(t) + t + b' URL "/INBOX/;UID=1/;SECTION=TEXT")')
assert owner.last.startswith(b't') and b'[APPENDUID ' in owner.last, owner.last
owner.cmd(b'EXAMINE Drafts')
f = owner.cmd(b'FETCH 1 BODY.PEEK[]')
assert f[0].endswith(t + b'the attachment\r\n)'), f
# yes1 has no right on u7's INBOX: the URL is refused as a missing mailbox.
other.cmd(b'APPEND INBOX CATENATE (URL "/Other%20Users/u7/;UID=1")', ok=False)
assert b'[BADURL ' in other.last, other.last
# The whole message is bounded by maxmessagesize.
big = b'x' * 3000
owner.cmd(b'APPEND Drafts CATENATE (URL "/INBOX/;UID=1" TEXT {%d+}\r\n' % len(big) + big + b')', ok=False)
assert owner.last.endswith(b'NO [TOOBIG] Message size exceeds fixed limit'), owner.last
print('ALL OK')
"#;

#[test]
fn urlauth_between_users_and_catenate() {
    if !can_run("urlauth", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "submitservers: md5u\nmaxmessagesize: 2048\n");
    let out = python(&format!("{IMAP_SESSION}{SCRIPT}"), &[&b.imap_port.to_string()]);
    assert!(out.contains("ALL OK"), "{out}");
}
