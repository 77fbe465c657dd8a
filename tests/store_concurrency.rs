//! Two sessions on one mailbox with interleaved STORE, EXPUNGE and
//! APPEND, and a third in IDLE: each view follows RFC 3501/7162 — no
//! EXPUNGE during FETCH/STORE/SEARCH (held to the next NOOP), EXPUNGE
//! before the EXISTS that follows it, flag changes pushed as FETCH (with
//! MODSEQ under CONDSTORE, VANISHED under QRESYNC), UIDs never reused.

mod harness;
use harness::*;

const SCRIPT: &str = r#"
import socket, sys, time, re
port = int(sys.argv[1])

class S:
    def __init__(self, user):
        self.s = socket.create_connection(('127.0.0.1', port)); self.buf = b''; self.n = 0
        self.line(10)
        self.cmd('LOGIN %s testpw' % user)
    def line(self, secs):
        # One line, or None after `secs` without one.
        self.s.settimeout(secs)
        while b'\r\n' not in self.buf:
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return None
            if not d: raise EOFError
            self.buf += d
        l, self.buf = self.buf.split(b'\r\n', 1)
        return l.decode()
    def cmd(self, text):
        self.n += 1; tag = 't%d' % self.n
        self.s.sendall(('%s %s\r\n' % (tag, text)).encode())
        out = []
        while True:
            l = self.line(10)
            assert l is not None, ('no answer', text)
            if l.startswith(tag + ' '):
                assert ' OK' in l, (text, l)
                return out
            out.append(l)
    def lines_for(self, secs):
        out = []
        while True:
            l = self.line(secs)
            if l is None: return out
            out.append(l)

def app(sess, text):
    sess.cmd('APPEND INBOX {%d+}\r\n%s' % (len(text), text))

def untagged(lines, word):
    return [l for l in lines if re.match(r'\* \d+ ' + word, l) or (word == 'VANISHED' and l.startswith('* VANISHED'))]

A = S('u7'); B = S('u7'); C = S('u7')
A.cmd('ENABLE CONDSTORE')
for i in range(3):
    A.cmd('APPEND INBOX {%d+}\r\nSubject: m%d\r\n\r\nx\r\n' % (len('Subject: m%d\r\n\r\nx\r\n' % i), i))
A.cmd('SELECT INBOX (CONDSTORE)'); B.cmd('SELECT INBOX')
C.cmd('ENABLE QRESYNC'); C.cmd('SELECT INBOX')
C.s.sendall(b'i1 IDLE\r\n'); assert C.line(10).startswith('+')

# B appends: A sees EXISTS at NOOP, C at once in IDLE.
app(B, 'Subject: m3\r\n\r\nx\r\n')
a1 = A.cmd('NOOP'); c = C.lines_for(2.5)
print('A1', a1); print('C1', c)
assert '* 4 EXISTS' in a1 and '* 4 EXISTS' in c

# A flags message 1: B sees FETCH FLAGS, A's own STORE answers with MODSEQ.
a = A.cmd('STORE 1 +FLAGS (\\Flagged)')
assert any('FLAGS (\\Flagged) MODSEQ' in l or ('MODSEQ' in l and '\\Flagged' in l) for l in a), a
b = B.cmd('NOOP'); c = C.lines_for(2.5)
print('B2', b); print('C2', c)
assert any(l.startswith('* 1 FETCH') and '\\Flagged' in l for l in b), b
assert any(l.startswith('* 1 FETCH') and '\\Flagged' in l and 'MODSEQ' in l for l in c), c

# B expunges message 2 and appends another.  A, in the middle of a FETCH,
# gets no EXPUNGE (its sequence numbers hold) ...
B.cmd('STORE 2 +FLAGS (\\Deleted)'); e = B.cmd('EXPUNGE')
assert '* 2 EXPUNGE' in e, e
app(B, 'Subject: m4\r\n\r\nx\r\n')
a3 = A.cmd('FETCH 1:4 (UID FLAGS)')
print('A3', a3)
assert not untagged(a3, 'EXPUNGE'), a3
assert any(l.startswith('* 2 FETCH') and 'UID 2' in l for l in a3), a3
# ... then at NOOP the EXPUNGE.  Across everything A was told, EXISTS
# never shrinks (only EXPUNGE lowers the count) and every FETCH names a
# message that exists.
a4 = A.cmd('NOOP')
print('A4', a4)
assert '* 2 EXPUNGE' in a4, a4
n = 3
for l in a1 + a3 + a4:
    m = re.match(r'\* (\d+) (EXISTS|EXPUNGE|FETCH)', l)
    if not m: continue
    k = int(m.group(1))
    if m.group(2) == 'EXISTS':
        assert k >= n, ('EXISTS shrank', l); n = k
    elif m.group(2) == 'EXPUNGE':
        assert k <= n, l; n -= 1
    else:
        assert k <= n, ('FETCH beyond EXISTS', l)
assert n == 4, n
# C (QRESYNC) in IDLE sees VANISHED for UID 2, then the new message.
c = C.lines_for(2.5)
print('C3', c)
assert any(l.startswith('* VANISHED') and ' 2' in l for l in c), c
assert '* 4 EXISTS' in c, c
C.s.sendall(b'DONE\r\n'); assert C.line(10).startswith('i1 OK')

# UIDs are never reused: the new message has UID 5, the expunged UID 2 is gone.
f = A.cmd('UID FETCH 1:* (UID)')
uids = [int(re.search(r'UID (\d+)', l).group(1)) for l in f if 'FETCH' in l]
print('UIDS', uids)
assert uids == [1, 3, 4, 5], uids
# CONDSTORE: CHANGEDSINCE finds only the flag change and the appends.
hm = int(re.search(r'HIGHESTMODSEQ (\d+)', ' '.join(B.cmd('STATUS INBOX (HIGHESTMODSEQ)'))).group(1))
ch = A.cmd('FETCH 1:* (FLAGS) (CHANGEDSINCE %d)' % (hm - 1))
print('CH', ch, hm)
assert len([l for l in ch if 'FETCH' in l]) == 1, ch
print('ALL OK')
"#;

#[test]
fn two_sessions_and_idle_follow_the_rules() {
    if !can_run("concurrent sessions", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let out = python(SCRIPT, &[&b.imap_port.to_string()]);
    assert!(out.contains("ALL OK"), "{out}");
}
