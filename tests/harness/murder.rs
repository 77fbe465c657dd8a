//! Murder fixtures shared by the Murder tests: our mupdate nodes, raw
//! MUPDATE sessions, real Cyrus nodes in temp dirs, and a whole murder on
//! loopback (our master, two back ends, a front end).

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const MUPDATETEST: &str = "/usr/lib/cyrus/bin/mupdatetest";
pub const CYRUS_MUPDATE: &str = "/usr/lib/cyrus/bin/mupdate";

/// Our mupdate (master with `-m`) in `dir`, checking passwords with the
/// saslauthd at `mux` (private accounts; `md5u` is the admin).
pub struct Node {
    pub proc: Option<Proc>,
    pub port: u16,
    pub conf: PathBuf,
    pub dir: PathBuf,
    pub flags: Vec<String>,
}

impl Node {
    pub fn start(dir: &Path, mux: &Path, master: bool, extra: &str) -> Node {
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        let conf = dir.join("imapd.conf");
        let base = format!(
            "configdirectory: {}/conf\nservername: {}\nadmins: md5u\nallowplaintext: yes\n\
             sasl_pwcheck_method: saslauthd\nsasl_saslauthd_path: {}\nfailedloginpause: 0\n",
            dir.display(),
            if master { "mupdate-master" } else { "frontend" },
            mux.display()
        );
        std::fs::write(&conf, merge_conf(&base, extra)).unwrap();
        let mut n = Node {
            proc: None,
            port: free_port(),
            conf,
            dir: dir.to_path_buf(),
            flags: if master { vec!["-m".into()] } else { vec![] },
        };
        n.restart();
        n
    }

    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mupdate.log"))
            .unwrap();
        let mut cmd = Command::new(bin("mupdate"));
        cmd.arg("-C")
            .arg(&self.conf)
            .args(&self.flags)
            .args(["-L", &format!("127.0.0.1:{}", self.port)])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.proc = Some(Proc::spawn("mupdate", &mut cmd));
        wait_tcp(self.port);
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mupdate.log")).unwrap_or_default()
    }
}

pub fn sasl(dir: &Path) -> (Proc, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let binds = private_accounts(dir);
    let run = dir.join("sasl");
    let p = saslauthd(&bin("saslauthd"), &binds, &run, &["-a", "shadow"], &[], &dir.join("saslauthd.log"));
    (p, run.join("mux"))
}

/// A raw MUPDATE session.
pub struct Raw {
    pub s: TcpStream,
    pub got: Vec<u8>,
    pub banner: String,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut r = Raw {
            s,
            got: Vec::new(),
            banner: String::new(),
        };
        r.banner = r.until("* OK MUPDATE");
        r
    }

    pub fn login(port: u16, user: &str) -> Raw {
        let mut r = Raw::connect(port);
        let b64 = mumail::util::base64_encode(format!("\0{user}\0testpw").as_bytes());
        r.send(&format!("A01 AUTHENTICATE \"PLAIN\" {{{}+}}\r\n{b64}\r\n", b64.len()));
        let out = r.until("A01 ");
        assert!(out.contains("A01 OK \"Authenticated\""), "{out}");
        r
    }

    pub fn send(&mut self, s: &str) {
        self.s.write_all(s.as_bytes()).unwrap();
    }

    /// Everything up to and including the line holding `what`.
    pub fn until(&mut self, what: &str) -> String {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let text = String::from_utf8_lossy(&self.got).into_owned();
            if let Some(i) = text.find(what) {
                let e = i + what.len();
                let nl = text[e..].find('\n').map(|n| e + n + 1);
                if let Some(nl) = nl {
                    self.got.drain(..nl);
                    return text[..nl].to_string();
                }
            }
            assert!(Instant::now() < end, "no {what:?} in {text:?}");
            let mut b = [0u8; 65536];
            match self.s.read(&mut b) {
                Ok(0) => {
                    assert!(text.contains(what), "closed before {what:?}: {text:?}");
                }
                Ok(n) => self.got.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
        }
    }

    pub fn call(&mut self, tag: &str, cmd: &str) -> String {
        self.send(&format!("{tag} {cmd}\r\n"));
        self.until(&format!("{tag} OK"))
    }
}

pub fn mailbox(tag: &str, name: &str, loc: &str, acl: &str) -> String {
    format!(
        "{tag} MAILBOX {{{}+}}\r\n{name} {{{}+}}\r\n{loc} {{{}+}}\r\n{acl}\r\n",
        name.len(),
        loc.len(),
        acl.len()
    )
}

pub fn mupdatetest(port: u16, user: &str, input: &str) -> String {
    run_client(
        MUPDATETEST,
        &[
            "-a",
            user,
            "-u",
            user,
            "-w",
            "testpw",
            "-m",
            "PLAIN",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ],
        input,
    )
}

/// A temp dir the cyrus user can traverse.
pub fn cyrus_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// A real Cyrus node in `dir` (Debian's master) with `services` in its
/// cyrus.conf and `extra` in imapd.conf; passwords through `mux`.
pub fn cyrus_node(dir: &Path, mux: &Path, servername: &str, extra: &str, services: &str) -> Proc {
    cyrus_node_in(dir, mux, servername, extra, services, &[])
}

/// `cyrus_node` with private files bound into its mount namespace (an
/// /etc/services naming the back ends' ports).
pub fn cyrus_node_in(dir: &Path, mux: &Path, servername: &str, extra: &str, services: &str, binds: &[(PathBuf, &str)]) -> Proc {
    use std::os::unix::fs::PermissionsExt;
    for sub in ["", "config", "config/socket", "run", "run/proc", "run/lock", "spool"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        let _ = Command::new("chown").args(["cyrus", dir.join(sub).to_str().unwrap()]).status();
        std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let c = dir.display();
    std::fs::write(
        dir.join("imapd.conf"),
        format!(
            "servername: {servername}\nconfigdirectory: {c}/config\nproc_path: {c}/run/proc\nmboxname_lockpath: {c}/run/lock\n\
             defaultpartition: default\npartition-default: {c}/spool\nlmtpsocket: {c}/run/lmtp.sock\nidlesocket: {c}/run/idle.sock\n\
             notifysocket: {c}/run/notify.sock\nunixhierarchysep: no\nadmins: md5u\nallowplaintext: yes\nsasl_pwcheck_method: saslauthd\n\
             sasl_saslauthd_path: {}\nsasl_mech_list: PLAIN LOGIN\nautocreate_quota: 0\n{extra}",
            mux.display()
        ),
    )
    .unwrap();
    let conf = dir.join("imapd.conf");
    let services = services.replace("CONF", conf.to_str().unwrap());
    std::fs::write(
        dir.join("cyrus.conf"),
        format!(
            "START {{\n  recover cmd=\"ctl_cyrusdb -C {} -r\"\n}}\nSERVICES {{\n{services}}}\n",
            conf.display()
        ),
    )
    .unwrap();
    let (cc, pid) = (dir.join("cyrus.conf"), dir.join("master.pid"));
    let args = [
        "-C",
        conf.to_str().unwrap(),
        "-M",
        cc.to_str().unwrap(),
        "-p",
        pid.to_str().unwrap(),
        "-D",
    ];
    let mut cmd = if binds.is_empty() {
        let mut c = Command::new(CYRUS_MASTER);
        c.args(args);
        c
    } else {
        in_namespace(binds, Path::new(CYRUS_MASTER), &args)
    };
    Proc::spawn("cyrus master", &mut cmd)
}

pub fn imap_admin(port: u16, cmds: &[&str]) -> String {
    imap_admin_at("127.0.0.1", port, cmds)
}

/// Admin commands (as `md5u`) on `host:port`; each with its result.
pub fn imap_admin_at(host: &str, port: u16, cmds: &[&str]) -> String {
    // STARTTLS first where passwords need TLS (the test CA is not checked).
    let script = "import imaplib,ssl,sys\nM=imaplib.IMAP4(sys.argv[1],int(sys.argv[2]))\n\
                  if 'LOGINDISABLED' in M.capabilities: M.starttls(ssl._create_unverified_context())\nM.login('md5u','testpw')\n\
                  out=[]\nfor c in sys.argv[3:]:\n    imaplib.Commands.setdefault(c.split(' ')[0], ('AUTH', 'SELECTED'))\n\
                  \x20   typ,data=M._simple_command(*c.split(' ',1)) if ' ' in c else M._simple_command(c)\n    out.append(c+' -> '+typ+' '+repr(data))\nM.logout()\nprint('\\n'.join(out))\n";
    let mut args = vec![host.to_string(), port.to_string()];
    args.extend(cmds.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    python(script, &a)
}

/// Talks LMTP on `port`: each command line and the reply lines it got.
pub fn lmtp_session(port: u16, script: &[&str], data: &str, replies_after_data: usize) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut out = String::new();
    let mut read_reply = |out: &mut String| {
        use std::io::BufRead;
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                out.push_str("<closed>\n");
                return;
            }
            out.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    };
    read_reply(&mut out);
    for c in script {
        s.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        out.push_str(&format!("C: {c}\n"));
        read_reply(&mut out);
        if *c == "DATA" && out.contains("354") {
            s.write_all(data.as_bytes()).unwrap();
            s.write_all(b".\r\n").unwrap();
            for _ in 0..replies_after_data {
                read_reply(&mut out);
            }
        }
    }
    out
}

pub fn inbox_count(imap_port: u16, mailbox: &str) -> String {
    python(ADMIN_EXAMINE, &[&imap_port.to_string(), mailbox])
}

/// As the admin md5u, EXAMINE a mailbox and print the result: an admin
/// reads only what the ACL grants (as in Cyrus), so md5u gives itself
/// `lr` for the EXAMINE and puts the ACL back after.
pub const ADMIN_EXAMINE: &str = r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('md5u', 'testpw')
mb = sys.argv[2]
typ, acl = M.getacl(mb)
had = None
if typ == 'OK':
    f = acl[0].decode().split()[1:]
    had = dict(zip(f[0::2], f[1::2])).get('md5u')
    M.setacl(mb, 'md5u', 'lr' + (had or ''))
print(M.select(mb, readonly=True))
if typ == 'OK':
    if had is None:
        M.deleteacl(mb, 'md5u')
    else:
        M.setacl(mb, 'md5u', had)
"#;

/// A murder on loopback: our master, two of our back ends named
/// 127.0.0.2 and 127.0.0.3 (IMAP, POP3 and LMTP on the same three ports
/// of each, as Cyrus reaches back ends by name and service), `user.alice`
/// and `user.u7` on the first, `user.bob` and `user.yes1` on the second,
/// a front end with its replica; front-end daemons run in a namespace
/// whose /etc/services names those ports.
pub struct Murder {
    pub _sasl: Proc,
    pub _master: Node,
    pub backs: Vec<Backend>,
    pub fe: Node,
    pub services: PathBuf,
    /// The back ends' IMAP, POP3 and LMTP ports.
    pub ports: (u16, u16, u16),
    /// The back ends' ManageSieve port (timsieved).
    pub sieve_port: u16,
}

pub const BACK_IPS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

impl Murder {
    pub fn start(t: &Path) -> Murder {
        Murder::start_with(
            t,
            "proxyservers: md5u\nproxy_authname: md5u\nproxy_password: testpw\n",
            "proxy_authname: md5u\nproxy_password: testpw\n",
        )
    }

    /// As `start`, with the back ends' and the front end's proxy login
    /// settings (`proxyservers`, `proxy_authname`, passwords, keytabs).
    pub fn start_with(t: &Path, back_auth: &str, fe_auth: &str) -> Murder {
        Murder::start_full(t, back_auth, fe_auth, "")
    }

    /// As `start_with`, with more options for the master.
    pub fn start_full(t: &Path, back_auth: &str, fe_auth: &str, master_extra: &str) -> Murder {
        let (sasl, mux) = sasl(&t.join("sasl"));
        let m = Node::start(&t.join("master"), &mux, true, master_extra);
        let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\n";
        let (iport, pport, lport, sport) = (free_port(), free_port(), free_port(), free_port());
        // The ports by service name, as every node finds its peers (the
        // front end its back ends, a back end the target of an XFER).
        let services = t.join("services");
        std::fs::write(
            &services,
            format!("imap {iport}/tcp\npop3 {pport}/tcp\nlmtp {lport}/tcp\nsieve {sport}/tcp\nmupdate 3905/tcp\n"),
        )
        .unwrap();
        let mut backs = Vec::new();
        for (i, ip) in BACK_IPS.iter().enumerate() {
            let mut b = Backend::start(
                &t.join(format!("b{}", i + 1)),
                &format!(
                    "servername: {ip}\nunixhierarchysep: no\nmupdate_server: 127.0.0.1:{}\n{creds}{back_auth}",
                    m.port
                ),
            );
            Murder::serve_back(&mut b, ip, (iport, pport, lport), sport);
            backs.push(b);
        }
        assert!(!imap_admin(backs[0].imap_port, &["CREATE user.alice", "CREATE user.u7"]).contains("-> NO"));
        assert!(!imap_admin(backs[1].imap_port, &["CREATE user.bob", "CREATE user.yes1"]).contains("-> NO"));
        let fe = Node::start(
            &t.join("fe"),
            &mux,
            false,
            &format!(
                "mupdate_server: 127.0.0.1:{}\n{creds}{fe_auth}mupdate_retry_delay: 1\n\
                 unixhierarchysep: no\n",
                m.port
            ),
        );
        Murder {
            _sasl: sasl,
            _master: m,
            backs,
            fe,
            services,
            ports: (iport, pport, lport),
            sieve_port: sport,
        }
    }

    /// A back end's IMAP, POP3, LMTP and ManageSieve on its own address.
    pub fn serve_back(b: &mut Backend, ip: &str, (iport, pport, lport): (u16, u16, u16), sport: u16) {
        for (prog, port) in [("lmtpd", lport), ("imapd", iport), ("pop3d", pport), ("timsieved", sport)] {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(b.dir.join(format!("{prog}-fe.log")))
                .unwrap();
            let mut cmd = Command::new(bin(prog));
            cmd.arg("-C")
                .arg(&b.conf)
                .args(["-L", &format!("{ip}:{port}")])
                .env("MUMAIL_SERVICES", b.dir.parent().unwrap().join("services"))
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            b.extra.push(Proc::spawn(prog, &mut cmd));
        }
    }

    /// Back end `i` (0 or 1) comes back.
    pub fn restart_back(&mut self, i: usize) {
        let ports = self.ports;
        Murder::serve_back(&mut self.backs[i], BACK_IPS[i], ports, self.sieve_port);
    }

    /// One of our store daemons started on the front end's config (so it
    /// proxies) on a new port.
    pub fn front(&self, prog: &str, flags: &[&str]) -> (Proc, u16) {
        let port = free_port();
        let log = std::fs::File::create(self.fe.dir.join(format!("{prog}.log"))).unwrap();
        let mut args = vec!["-C", self.fe.conf.to_str().unwrap()];
        args.extend_from_slice(flags);
        let l = format!("127.0.0.1:{port}");
        args.extend_from_slice(&["-L", &l]);
        let mut cmd = in_namespace(&[(self.services.clone(), "/etc/services")], &bin(prog), &args);
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        let p = Proc::spawn(prog, &mut cmd);
        wait_tcp(port);
        (p, port)
    }
}

/// A raw IMAP session: each argument is a command (tagged t0, t1, ...);
/// prints the greeting and every line until each tagged reply.
const RAW_SESSION: &str = r#"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
print(f.readline().decode().rstrip())
for i, c in enumerate(sys.argv[2:]):
    tag = 't%d' % i
    s.sendall(('%s %s\r\n' % (tag, c)).encode())
    while True:
        l = f.readline().decode()
        print(l.rstrip())
        if not l or l.startswith(tag + ' '):
            break
"#;

pub fn imap_raw(port: u16, cmds: &[&str]) -> String {
    let mut args = vec![port.to_string()];
    args.extend(cmds.iter().map(|c| c.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    python(RAW_SESSION, &a)
}
