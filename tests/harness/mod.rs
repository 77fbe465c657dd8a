//! Test harness: real servers and real clients on loopback in temp dirs
//! (Cassandane style).  Daemons that need private system files (shadow,
//! PAM) run in a private mount namespace (`unshare -m`) with bind mounts,
//! so the machine's own /etc is never changed.
#![allow(dead_code)]

pub mod dovecot;
pub mod murder;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Our program `name`: the debug build for tests, the release build when
/// a benchmark sets `MUMAIL_PROFILE=release`.
pub fn bin(name: &str) -> PathBuf {
    let profile = std::env::var("MUMAIL_PROFILE").unwrap_or_else(|_| "debug".into());
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join(profile).join(name)
}

/// Whether a test that needs root and real tools can run; in CI it must.
pub fn can_run(what: &str, tools: &[&str]) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let missing: Vec<&&str> = tools.iter().filter(|t| !Path::new(t).exists()).collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if !root {
        "not root".to_string()
    } else {
        format!("missing {missing:?}")
    };
    if std::env::var("CI").is_ok() {
        panic!("{what}: cannot run in CI: {why} (tests/tools/test.sh installs the packages)");
    }
    eprintln!("{what}: skipped: {why}");
    false
}

/// A process killed (TERM, then KILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        // Own process group: the real saslauthd signals its whole group.
        let child = cmd
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// A TCP port that no other test of this process has been given and that
/// is free on loopback now.  It comes from below the kernel's ephemeral
/// range (32768-60999), so that neither another test's free_port nor an
/// outgoing connection's local port can take it before the daemon binds
/// it: a daemon that found its port taken left wait_tcp talking to another
/// test's daemon (two tests of one binary then saw each other's mail).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Test binaries run one after another; each starts somewhere else.
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(k < SPAN, "no free test port left");
        let port = (LOW + (start + k) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn wait_tcp(port: u16) {
    wait_for(&format!("127.0.0.1:{port}"), Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// A command run in a private mount namespace after `binds` (src, dst).
pub fn in_namespace(binds: &[(PathBuf, &str)], program: &Path, args: &[&str]) -> Command {
    let mut script = String::from("set -e\n");
    for (src, dst) in binds {
        script.push_str(&format!("mount --bind '{}' '{}'\n", src.display(), dst));
    }
    script.push_str("exec \"$@\"\n");
    let mut c = Command::new("unshare");
    c.arg("-m")
        .arg("--propagation")
        .arg("private")
        .arg("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(program)
        .args(args);
    c
}

/// One raw mux request; the counted reply.
pub fn mux(path: &Path, login: &[u8], password: &[u8], service: &[u8], realm: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&mumail::proto::saslauthd::encode_request(login, password, service, realm))
        .unwrap();
    // Read the counted reply, then close.
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    while mumail::proto::saslauthd::decode_reply(&out).is_none() {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    out
}

pub fn reply_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(&mumail::proto::saslauthd::decode_reply(raw).unwrap_or_default()).into_owned()
}

/// Private passwd/shadow/group files with test users (password `testpw`
/// in SHA-512, yescrypt and MD5 crypt; `locked` has `!`).
pub fn private_accounts(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let mut shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let users = [
        (
            "u7",
            "$6$saltsalt$VBFFeVHdeQeT5fvFaHfOXzT9tShDx.GqV.MDHnrJOLfAZnXxHf0bKmtUZoIftgtgMXLdzhaVh7Tzf2TQjufJz0",
        ),
        ("yes1", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$VenyQ/qDW5Xn.MprYXtgDx22lRcn07mCRXnZXj7jdB5"),
        ("md5u", "$1$saltsalt$XBF9f0dels9PmAf924c2l."),
        ("locked", "!"),
    ];
    for (i, (u, h)) in users.iter().enumerate() {
        passwd.push_str(&format!("{u}:x:{}:{}::/nonexistent:/usr/sbin/nologin\n", 30000 + i, 30000 + i));
        shadow.push_str(&format!("{u}:{h}:19000:0:99999:7:::\n"));
    }
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    std::fs::write(dir.join("shadow"), shadow).unwrap();
    vec![(dir.join("passwd"), "/etc/passwd"), (dir.join("shadow"), "/etc/shadow")]
}

/// Starts a saslauthd (ours or the real one) in the foreground (`-d`).
pub fn saslauthd(program: &Path, binds: &[(PathBuf, &str)], run: &Path, args: &[&str], env: &[(&str, String)], log: &Path) -> Proc {
    let mut cmd = saslauthd_command(program, binds, run, true, args, env);
    let f = std::fs::File::create(log).unwrap();
    cmd.stdout(f.try_clone().unwrap()).stderr(f);
    let p = Proc::spawn(&program.display().to_string(), &mut cmd);
    wait_mux(run);
    p
}

/// saslauthd (ours or the real one) on `<run>/mux` in a private mount
/// namespace with `binds`; in the foreground with `-d` when `debug`.
pub fn saslauthd_command(
    program: &Path,
    binds: &[(PathBuf, &str)],
    run: &Path,
    debug: bool,
    args: &[&str],
    env: &[(&str, String)],
) -> Command {
    std::fs::create_dir_all(run).unwrap();
    let mut all = vec!["-m", run.to_str().unwrap()];
    if debug {
        all.push("-d");
    }
    all.extend_from_slice(args);
    let mut cmd = in_namespace(binds, program, &all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits until saslauthd accepts on `<run>/mux`.
pub fn wait_mux(run: &Path) {
    let mux = run.join("mux");
    wait_for("saslauthd mux", Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&mux).is_ok()
    });
}

/// OpenLDAP slapd in a temp dir (the Active Directory stand-in): RFC 2307
/// users `u1..u5` (`posixAccount`, password `testpw`) under
/// `ou=people,dc=mumail,dc=test`, and a service account
/// `cn=saslauthd,ou=services,dc=mumail,dc=test` (password `bindpw`).
pub struct Slapd {
    pub proc: Option<Proc>,
    pub port: u16,
    pub dir: PathBuf,
    /// ldaps:// port when started with TLS.
    pub tls_port: Option<u16>,
}

pub const LDAP_BASE: &str = "dc=mumail,dc=test";

impl Slapd {
    pub fn start(dir: &Path) -> Slapd {
        Slapd::start_tls(dir, None)
    }

    /// With `tls` (certificate, key): StartTLS on the ldap:// port and an
    /// ldaps:// listener too.
    pub fn start_tls(dir: &Path, tls: Option<(&Path, &Path)>) -> Slapd {
        Slapd::start_with(dir, tls, "")
    }

    /// As `start_tls`, with `extra` global slapd.conf lines
    /// (`TLSVerifyClient demand`, …).
    pub fn start_with(dir: &Path, tls: Option<(&Path, &Path)>, extra: &str) -> Slapd {
        Slapd::start_full(dir, tls, extra, "")
    }

    /// As `start_with`, with `db_extra` lines in the database section
    /// (`index mail eq`, …).
    pub fn start_full(dir: &Path, tls: Option<(&Path, &Path)>, extra: &str, db_extra: &str) -> Slapd {
        let port = free_port();
        let db = dir.join("db");
        std::fs::create_dir_all(&db).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\ninclude /etc/ldap/schema/nis.schema\ninclude /etc/ldap/schema/inetorgperson.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {d}/slapd.pid\n{tls}\
             database mdb\nmaxsize 10485760\nsuffix \"{LDAP_BASE}\"\nrootdn \"cn=admin,{LDAP_BASE}\"\nrootpw adminpw\ndirectory {db}\n{db_extra}\
             access to attrs=userPassword by anonymous auth by self read by * none\naccess to * by * read\n",
            d = dir.display(),
            db = db.display(),
            tls = tls.map(|(c, k)| format!("TLSCertificateFile {}\nTLSCertificateKeyFile {}\n{extra}", c.display(), k.display())).unwrap_or_default()
        );
        std::fs::write(dir.join("slapd.conf"), conf).unwrap();
        let mut ldif = format!("dn: {LDAP_BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: mumail\no: mumail\n\ndn: ou=people,{LDAP_BASE}\nobjectClass: organizationalUnit\nou: people\n\ndn: ou=services,{LDAP_BASE}\nobjectClass: organizationalUnit\nou: services\n\ndn: cn=saslauthd,ou=services,{LDAP_BASE}\nobjectClass: person\ncn: saslauthd\nsn: saslauthd\nuserPassword: bindpw\n\n");
        for i in 1..=5 {
            ldif.push_str(&format!(
                "dn: uid=u{i},ou=people,{LDAP_BASE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: u{i}\ncn: User {i}\nsn: {i}\nmail: u{i}@mumail.test\nuidNumber: {}\ngidNumber: 10000\nhomeDirectory: /nonexistent\nuserPassword: testpw\n\n",
                10000 + i
            ));
        }
        std::fs::write(dir.join("init.ldif"), ldif).unwrap();
        let st = std::process::Command::new("/usr/sbin/slapadd")
            .args([
                "-f",
                dir.join("slapd.conf").to_str().unwrap(),
                "-l",
                dir.join("init.ldif").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(st.status.success(), "slapadd: {}", String::from_utf8_lossy(&st.stderr));
        let mut s = Slapd {
            proc: None,
            port,
            dir: dir.to_path_buf(),
            tls_port: tls.map(|_| free_port()),
        };
        s.resume();
        s
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    pub fn resume(&mut self) {
        let mut cmd = std::process::Command::new("/usr/sbin/slapd");
        let mut urls = self.url();
        if let Some(p) = self.tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        cmd.args(["-d", "0", "-f", self.dir.join("slapd.conf").to_str().unwrap(), "-h", &urls])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.proc = Some(Proc::spawn("slapd", &mut cmd));
        wait_tcp(self.port);
    }
}

/// MariaDB in a temp dir (the site's central settings database): TCP
/// on 127.0.0.1 and a UNIX socket, root over the socket without a
/// password; `sql` runs statements with the real `mariadb` client.
pub struct Mariadb {
    pub proc: Option<Proc>,
    pub dir: PathBuf,
    pub port: u16,
    pub socket: PathBuf,
}

impl Mariadb {
    pub fn start(dir: &Path) -> Mariadb {
        std::fs::create_dir_all(dir).unwrap();
        let data = dir.join("data");
        let out = Command::new("/usr/bin/mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                &format!("--datadir={}", data.display()),
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        let mut m = Mariadb {
            proc: None,
            dir: dir.to_path_buf(),
            port: free_port(),
            socket: dir.join("mysqld.sock"),
        };
        m.resume();
        m
    }

    pub fn resume(&mut self) {
        let d = &self.dir;
        let mut cmd = Command::new("/usr/sbin/mariadbd");
        cmd.args([
            "--no-defaults",
            "--user=root",
            &format!("--datadir={}", d.join("data").display()),
            &format!("--socket={}", self.socket.display()),
            &format!("--port={}", self.port),
            "--bind-address=127.0.0.1",
            &format!("--pid-file={}", d.join("mariadbd.pid").display()),
            &format!("--log-error={}", d.join("error.log").display()),
            "--skip-log-bin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.proc = Some(Proc::spawn("mariadbd", &mut cmd));
        wait_tcp(self.port);
        let sock = self.socket.clone();
        wait_for("mariadb socket", Duration::from_secs(30), || sock.exists());
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    pub fn sql(&self, statements: &str) {
        let mut child = Command::new("/usr/bin/mariadb")
            .args(["--no-defaults", "-S", self.socket.to_str().unwrap(), "-u", "root"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(statements.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "mariadb: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// An MIT Kerberos KDC for realm MUMAIL.TEST in a temp dir, configured
/// only through `KRB5_CONFIG` / `KRB5_KDC_PROFILE`: principals `u1..u3`
/// (password `testpw`) and `host/<hostname>` exported to `krb5.keytab`.
pub struct Kdc {
    pub proc: Option<Proc>,
    pub dir: PathBuf,
    pub port: u16,
    pub host: String,
}

pub const REALM: &str = "MUMAIL.TEST";

impl Kdc {
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KRB5_CONFIG", self.dir.join("krb5.conf").display().to_string()),
            ("KRB5_KDC_PROFILE", self.dir.join("kdc.conf").display().to_string()),
        ]
    }

    pub fn kadmin(&self, q: &str) {
        let out = std::process::Command::new("/usr/sbin/kadmin.local")
            .args(["-r", REALM, "-q", q])
            .envs(self.env())
            .output()
            .unwrap();
        assert!(out.status.success(), "kadmin.local {q}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn start(dir: &Path) -> Kdc {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap().to_ascii_lowercase();
        let d = dir.display();
        std::fs::write(
            dir.join("krb5.conf"),
            format!("[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n dns_canonicalize_hostname = false\n rdns = false\n udp_preference_limit = 1\n\n[realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("kdc.conf"),
            format!("[kdcdefaults]\n kdc_ports = {port}\n kdc_tcp_ports = {port}\n kdc_listen = 127.0.0.1:{port}\n kdc_tcp_listen = 127.0.0.1:{port}\n\n[realms]\n {REALM} = {{\n  database_name = {d}/principal\n  key_stash_file = {d}/stash\n  acl_file = {d}/kadm5.acl\n }}\n\n[logging]\n kdc = FILE:{d}/kdc.log\n"),
        )
        .unwrap();
        std::fs::write(dir.join("kadm5.acl"), "").unwrap();
        let mut k = Kdc {
            proc: None,
            dir: dir.to_path_buf(),
            port,
            host,
        };
        let out = std::process::Command::new("/usr/sbin/kdb5_util")
            .args(["-r", REALM, "-P", "masterpw", "create", "-s"])
            .envs(k.env())
            .output()
            .unwrap();
        assert!(out.status.success(), "kdb5_util: {}", String::from_utf8_lossy(&out.stderr));
        for u in ["u1", "u2", "u3"] {
            k.kadmin(&format!("addprinc -pw testpw {u}"));
        }
        k.kadmin(&format!("addprinc -randkey host/{}", k.host));
        k.kadmin(&format!("ktadd -k {d}/krb5.keytab host/{}", k.host));
        k.resume();
        k
    }

    pub fn resume(&mut self) {
        let mut cmd = std::process::Command::new("/usr/sbin/krb5kdc");
        cmd.args(["-n", "-r", REALM])
            .envs(self.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.proc = Some(Proc::spawn("krb5kdc", &mut cmd));
        wait_tcp(self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}

/// Our back end in a temp dir: saslauthd (shadow, private accounts: users
/// `u7`, `yes1`, `md5u` with password `testpw`; `md5u` is an admin),
/// lmtpd on `<dir>/conf/socket/lmtp` and TCP, imapd on TCP.
pub struct Backend {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub imap_port: u16,
    pub lmtp_port: u16,
    pub lmtp_sock: PathBuf,
    pub sasl: Option<Proc>,
    pub lmtpd: Option<Proc>,
    pub imapd: Option<Proc>,
    /// Other daemons started for a test (pop3d).
    pub extra: Vec<Proc>,
}

/// imapd.conf text: `base` with `extra` after it, the options `extra`
/// sets taken out of `base` (a duplicate option is fatal).
pub fn merge_conf(base: &str, extra: &str) -> String {
    let keys: Vec<&str> = extra.lines().filter_map(|l| l.split(':').next()).collect();
    let mut text: String = base
        .lines()
        .filter(|l| !keys.contains(&l.split(':').next().unwrap_or("")))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(extra);
    text
}

impl Backend {
    pub fn start(dir: &Path, extra_conf: &str) -> Backend {
        std::fs::create_dir_all(dir).unwrap();
        let binds = private_accounts(dir);
        let run = dir.join("sasl");
        let sasl = saslauthd(&bin("saslauthd"), &binds, &run, &["-a", "shadow"], &[], &dir.join("saslauthd.log"));
        let conf = dir.join("imapd.conf");
        let d = dir.display();
        let base = format!(
            "configdirectory: {d}/conf\npartition-default: {d}/spool\nservername: backend1\nhashimapspool: yes\n\
             allowplaintext: yes\nsasl_pwcheck_method: saslauthd\nsasl_saslauthd_path: {}\nadmins: md5u\n\
             lmtpsocket: {d}/conf/socket/lmtp\nautocreate_quota: 0\nsievedir: {d}/sieve\n",
            run.join("mux").display()
        );
        std::fs::write(&conf, merge_conf(&base, extra_conf)).unwrap();
        let mut b = Backend {
            dir: dir.to_path_buf(),
            conf,
            imap_port: free_port(),
            lmtp_port: free_port(),
            lmtp_sock: dir.join("conf/socket/lmtp"),
            sasl: Some(sasl),
            lmtpd: None,
            imapd: None,
            extra: Vec::new(),
        };
        b.start_lmtpd();
        b.start_imapd();
        b
    }

    pub fn start_lmtpd(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("lmtpd.log"))
            .unwrap();
        let mut cmd = Command::new(bin("lmtpd"));
        cmd.args([
            "-C",
            self.conf.to_str().unwrap(),
            "-L",
            self.lmtp_sock.to_str().unwrap(),
            "-L",
            &format!("127.0.0.1:{}", self.lmtp_port),
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        self.lmtpd = Some(Proc::spawn("lmtpd", &mut cmd));
        wait_tcp(self.lmtp_port);
    }

    pub fn start_imapd(&mut self) {
        self.imapd = Some(self.spawn_imapd(self.imap_port, &[]));
    }

    /// pop3d on a new port (kept until the backend is dropped); the port.
    pub fn start_pop3d(&mut self) -> u16 {
        self.start_daemon("pop3d")
    }

    /// timsieved (ManageSieve) on a new port; the port.
    pub fn start_timsieved(&mut self) -> u16 {
        self.start_daemon("timsieved")
    }

    /// One of our daemons on a new port, logging to `<prog>.log` (kept
    /// until the backend is dropped); the port.
    pub fn start_daemon(&mut self, prog: &str) -> u16 {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{prog}.log")))
            .unwrap();
        let mut cmd = Command::new(bin(prog));
        cmd.args(["-C", self.conf.to_str().unwrap(), "-L", &format!("127.0.0.1:{port}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.extra.push(Proc::spawn(prog, &mut cmd));
        wait_tcp(port);
        port
    }

    /// Another imapd on `port` with extra flags (`-s` for imaps).
    pub fn spawn_imapd(&self, port: u16, flags: &[&str]) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("imapd.log"))
            .unwrap();
        let mut cmd = Command::new(bin("imapd"));
        cmd.args(["-C", self.conf.to_str().unwrap(), "-L", &format!("127.0.0.1:{port}")])
            .args(flags)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let p = Proc::spawn("imapd", &mut cmd);
        wait_tcp(port);
        p
    }
}

/// Runs a Python script with `args`; panics with its output on failure.
/// A raw-socket IMAP session for test scripts (prepend to a script that
/// sets `port`): `S(user)` logs in (password `testpw`); `cmd(text, ok)`
/// sends one tagged command, checks OK or not, keeps the tagged line in
/// `last` and returns the untagged lines, literals inline.
pub const IMAP_SESSION: &str = r#"
import socket, re
class S:
    def __init__(self, user=b'u7'):
        self.s = socket.create_connection(('127.0.0.1', port)); self.s.settimeout(10)
        self.buf = b''; self.n = 0
        self.greeting = self.line()
        self.cmd(b'LOGIN ' + user + b' testpw')
    def line(self):
        while b'\r\n' not in self.buf:
            d = self.s.recv(65536)
            if not d: raise EOFError
            self.buf += d
        l, self.buf = self.buf.split(b'\r\n', 1)
        # A literal at the end of the line: take its bytes too.
        m = re.search(rb'\{(\d+)\}$', l)
        if m:
            k = int(m.group(1))
            while len(self.buf) < k: self.buf += self.s.recv(65536)
            l += b'\r\n' + self.buf[:k]; self.buf = self.buf[k:]
            l += self.line()
        return l
    def cmd(self, text, ok=True):
        self.n += 1; tag = b't%d' % self.n
        self.s.sendall(tag + b' ' + text + b'\r\n')
        out = []
        while True:
            l = self.line()
            if l.startswith(tag + b' '):
                assert (b' OK' in l) == ok, (text, l)
                self.last = l
                return out
            out.append(l)
"#;

pub fn python(script: &str, args: &[&str]) -> String {
    let o = Command::new("python3").arg("-c").arg(script).args(args).output().unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "python failed:\n{out}");
    out
}

/// A CA and a server certificate for `localhost`/127.0.0.1–3 made with
/// openssl in `dir`: (ca.pem, server.pem, server.key).
pub fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mumail test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    // The Murder fixtures' back ends listen on 127.0.0.2 and 127.0.0.3.
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

/// The real Cyrus IMAP 3.6 (Debian's master, imapd, lmtpd) in `dir`,
/// checking passwords through the saslauthd at `mux`; imapd on a TCP port
/// and lmtpd on `<dir>/run/lmtp.sock`.  `extra` is added to imapd.conf.
pub struct CyrusServer {
    pub master: Proc,
    pub imap_port: u16,
    pub pop3_port: u16,
    pub lmtp_sock: PathBuf,
    /// lmtpd on TCP too (clients must authenticate there).
    pub lmtp_port: u16,
    /// timsieved (ManageSieve).
    pub sieve_port: u16,
}

pub const CYRUS_MASTER: &str = "/usr/lib/cyrus/bin/master";

impl CyrusServer {
    pub fn start(dir: &Path, mux: &Path, extra: &str) -> CyrusServer {
        use std::os::unix::fs::PermissionsExt;
        for sub in ["", "config", "config/sieve", "run", "run/proc", "run/lock", "spool"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            let _ = Command::new("chown").args(["cyrus", dir.join(sub).to_str().unwrap()]).status();
            std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let iport = free_port();
        let pport = free_port();
        let lport = free_port();
        let sport = free_port();
        let c = dir.display();
        std::fs::write(
            dir.join("imapd.conf"),
            format!(
                "servername: backend1\nconfigdirectory: {c}/config\nproc_path: {c}/run/proc\nmboxname_lockpath: {c}/run/lock\ndefaultpartition: default\npartition-default: {c}/spool\n\
                 sievedir: {c}/config/sieve\nlmtpsocket: {c}/run/lmtp.sock\nidlesocket: {c}/run/idle.sock\nnotifysocket: {c}/run/notify.sock\nhashimapspool: yes\n\
                 admins: md5u\nallowplaintext: yes\nsasl_pwcheck_method: saslauthd\nsasl_saslauthd_path: {}\nsasl_mech_list: PLAIN LOGIN\nautocreate_quota: 0\n{extra}",
                mux.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("cyrus.conf"),
            format!(
                "START {{\n  recover cmd=\"ctl_cyrusdb -C {c}/imapd.conf -r\"\n}}\nSERVICES {{\n  imap cmd=\"imapd -C {c}/imapd.conf\" listen=\"127.0.0.1:{iport}\" prefork=0 maxchild=20000\n  \
                 lmtpunix cmd=\"lmtpd -C {c}/imapd.conf\" listen=\"{c}/run/lmtp.sock\" prefork=0 maxchild=100\n  \
                 pop3 cmd=\"pop3d -C {c}/imapd.conf\" listen=\"127.0.0.1:{pport}\" prefork=0 maxchild=100\n  \
                 lmtp cmd=\"lmtpd -C {c}/imapd.conf\" listen=\"127.0.0.1:{lport}\" prefork=0 maxchild=100\n  \
                 sieve cmd=\"timsieved -C {c}/imapd.conf\" listen=\"127.0.0.1:{sport}\" prefork=0 maxchild=100\n  \
                 notify cmd=\"notifyd -C {c}/imapd.conf\" listen=\"{c}/run/notify.sock\" proto=\"udp\" prefork=1\n}}\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(CYRUS_MASTER);
        cmd.args([
            "-C",
            dir.join("imapd.conf").to_str().unwrap(),
            "-M",
            dir.join("cyrus.conf").to_str().unwrap(),
            "-p",
            dir.join("master.pid").to_str().unwrap(),
            "-D",
        ]);
        let master = Proc::spawn("cyrus master", &mut cmd);
        wait_tcp(iport);
        wait_tcp(pport);
        wait_tcp(lport);
        wait_tcp(sport);
        let lmtp_sock = dir.join("run/lmtp.sock");
        wait_for("cyrus lmtp socket", Duration::from_secs(20), || lmtp_sock.exists());
        CyrusServer {
            master,
            imap_port: iport,
            pop3_port: pport,
            lmtp_sock,
            lmtp_port: lport,
            sieve_port: sport,
        }
    }
}

/// Runs `cmd` with `input` on its standard input: (stdout, stderr, exit
/// status, -1 when killed by a signal).
pub fn run_with_input(cmd: &mut Command, input: &str) -> (String, String, i32) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // (A program that exits before reading it all closes the pipe.)
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let o = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// Runs a client program (imtest, lmtptest, ...), feeding `input` on its
/// stdin; returns stdout and stderr together.
pub fn run_client(prog: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub const POSTFIX: &str = "/usr/sbin/postfix";

/// A real Postfix instance started with `postfix -c <dir> start` and
/// stopped when dropped.
pub struct PostfixInstance(pub PathBuf);

impl PostfixInstance {
    /// Lays out a Postfix config/queue dir `dir` (world-traversable, data
    /// owned by postfix) with RHEL's stock master.cf whose smtpd listens
    /// on a free loopback port; returns the port.  main.cf is the caller's.
    pub fn prepare(dir: &Path) -> u16 {
        use std::os::unix::fs::PermissionsExt;
        for sub in ["", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let _ = Command::new("chown").args(["postfix", dir.join("data").to_str().unwrap()]).status();
        let port = free_port();
        let master = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/postfix/rhel8-stock/master.cf")).unwrap();
        let master = master.replace(
            "smtp      inet  n       -       n       -       -       smtpd",
            &format!("127.0.0.1:{port} inet n - n - - smtpd"),
        );
        std::fs::write(dir.join("master.cf"), master).unwrap();
        port
    }

    pub fn start(dir: &Path) -> PostfixInstance {
        let st = Command::new(POSTFIX).args(["-c", dir.to_str().unwrap(), "start"]).output().unwrap();
        assert!(st.status.success(), "postfix start: {}", String::from_utf8_lossy(&st.stderr));
        PostfixInstance(dir.to_path_buf())
    }
}

/// dnsmasq, authoritative for `.test`, on `server`:53 with `records`
/// (dnsmasq options such as `--mx-host=...`); waits until it answers.
pub fn dnsmasq(dir: &Path, server: &str, records: &[&str]) -> Proc {
    let mut cmd = Command::new("/usr/sbin/dnsmasq");
    cmd.args([
        "-k".to_string(),
        "--port=53".into(),
        format!("--listen-address={server}"),
        "--bind-interfaces".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--local=/test/".into(),
        "--user=root".into(),
        format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
    ])
    .args(records)
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(dir.join("dnsmasq.err")).unwrap());
    let p = Proc::spawn("dnsmasq", &mut cmd);
    wait_for("dnsmasq", Duration::from_secs(10), || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| {
                s.set_read_timeout(Some(Duration::from_millis(300)))?;
                // An A query for probe.test: any answer means it listens.
                let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05probe\x04test\x00\x00\x01\x00\x01";
                s.send_to(q, (server, 53))?;
                let mut buf = [0u8; 512];
                s.recv_from(&mut buf).map(|_| ())
            })
            .is_ok()
    });
    p
}

/// Our postfix-master on the configuration in `dir` (stdout and stderr
/// to `dir`/stderr); with `dns`, resolving through that server.
pub fn spawn_postfix_master(dir: &Path, dns: Option<&str>) -> Proc {
    let mut cmd = Command::new(bin("postfix-master"));
    let log = std::fs::File::create(dir.join("stderr")).unwrap();
    cmd.args(["-c", dir.to_str().unwrap()]).stdout(log.try_clone().unwrap()).stderr(log);
    if let Some(server) = dns {
        cmd.env("MUMAIL_DNS_SERVERS", format!("{server}:53"));
    }
    Proc::spawn("postfix-master", &mut cmd)
}

/// Waits until a log file stops growing (postlogd writes from
/// datagrams), at most 5 s.
pub fn settle(log: &Path) {
    let size = || std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let (mut last, mut same) = (size(), 0);
    let t0 = std::time::Instant::now();
    while same < 3 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        let now = size();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
}

impl PostfixInstance {
    /// Starts the Postfix laid out in `dir`; with `dns`, in its own mount
    /// namespace whose /etc/resolv.conf (written in `tmp`) names that
    /// server.
    pub fn start_with_dns(dir: &Path, dns: Option<&str>, tmp: &Path) -> PostfixInstance {
        let Some(server) = dns else {
            return PostfixInstance::start(dir);
        };
        let resolv = tmp.join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {server}\noptions timeout:2 attempts:1\n")).unwrap();
        let st = in_namespace(
            &[(resolv, "/etc/resolv.conf")],
            Path::new(POSTFIX),
            &["-c", dir.to_str().unwrap(), "start"],
        )
        .output()
        .unwrap();
        assert!(st.status.success(), "postfix start: {}", String::from_utf8_lossy(&st.stderr));
        PostfixInstance(dir.to_path_buf())
    }
}

impl Drop for PostfixInstance {
    fn drop(&mut self) {
        let _ = Command::new(POSTFIX).args(["-c", self.0.to_str().unwrap(), "stop"]).output();
    }
}

/// A minimal IMAP client for benchmarks: a command and its tagged reply.
pub struct Imap {
    pub r: std::io::BufReader<Box<dyn ReadWrite>>,
    pub n: usize,
}
pub trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

impl Imap {
    pub fn connect(port: u16) -> Imap {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut i = Imap {
            r: std::io::BufReader::new(Box::new(s)),
            n: 0,
        };
        let mut l = String::new();
        std::io::BufRead::read_line(&mut i.r, &mut l).unwrap();
        i
    }
    /// Sends a command and reads to its tagged reply; returns bytes read.
    pub fn cmd(&mut self, c: &str) -> usize {
        self.n += 1;
        let tag = format!("b{}", self.n);
        std::io::Write::write_all(self.r.get_mut(), format!("{tag} {c}\r\n").as_bytes()).unwrap();
        let mut total = 0;
        loop {
            let mut l = Vec::new();
            let n = std::io::BufRead::read_until(&mut self.r, b'\n', &mut l).unwrap();
            assert!(n > 0, "closed during {c}");
            total += n;
            // Literals: {n}\r\n then n bytes.
            if let Some(p) = l.iter().rposition(|&b| b == b'{') {
                if l.ends_with(b"}\r\n") {
                    if let Ok(k) = std::str::from_utf8(&l[p + 1..l.len() - 3]).unwrap_or("x").parse::<usize>() {
                        let mut buf = vec![0; k];
                        std::io::Read::read_exact(&mut self.r, &mut buf).unwrap();
                        total += k;
                        continue;
                    }
                }
            }
            if l.starts_with(tag.as_bytes()) {
                assert!(l[tag.len()..].starts_with(b" OK"), "{c}: {}", String::from_utf8_lossy(&l));
                return total;
            }
        }
    }
}
