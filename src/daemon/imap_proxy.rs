//! proxyd after login: each client command goes to the back end that
//! holds the mailbox it names (Cyrus's imapd as a front end), bytes
//! unchanged.  The session starts on the user's INBOX back end; a
//! command naming a mailbox elsewhere (SELECT of another user's or a
//! shared folder, STATUS, APPEND, CREATE under a parent there, ACL and
//! quota commands, RENAME, XFER) goes to that back end, over a second
//! connection logged in for the same user; SELECT and EXAMINE move the
//! session there (the previous back end gets UNSELECT), other commands
//! come back.  Subscriptions and LIST go to the INBOX's back end.
//!
//! Commands are streamed, not buffered: only a command's first line is
//! held to route it, and only while the back end in use still owes
//! replies (a switch waits for them, so replies never interleave).
//! Literals pass through as they come; the back end that receives a
//! command answers its literal continuations.

use super::front::{Front, BACKEND_TIMEOUT};
use super::peer_tls::PeerIo;
use crate::proto::imap::stream::{head_words, Arg, ClientScan, NameLiteral, Piece, ServerScan};
use crate::store::murder::State;
use crate::store::names::Namespace;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One logged-in back-end connection.
struct Back {
    s: PeerIo,
    sent: u64,
    scan: ServerScan,
    /// A mailbox is selected there.
    selected: bool,
    /// Only commands that leave no session state (`backend_pool`) went
    /// here: at LOGOUT it may be kept for the user's next session.
    reusable: bool,
    /// What the client sent for this back end since the last flush: the
    /// pieces of one read (a command line, its literal, the line's end)
    /// go out in one write, so the back end wakes once for them.
    out: Vec<u8>,
}

impl Back {
    fn fresh(s: PeerIo, reusable: bool) -> Back {
        Back {
            s,
            sent: 0,
            scan: ServerScan::default(),
            selected: false,
            reusable,
            out: Vec::new(),
        }
    }

    fn quiet(&self) -> bool {
        self.scan.tagged >= self.sent
    }

    /// Bytes to the back end, flushed (over TLS a record goes out now),
    /// after anything queued.
    async fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.out.extend_from_slice(data);
        self.flush_out().await
    }

    /// Sends what is queued.
    async fn flush_out(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.s.write_all(&self.out).await?;
        self.out.clear();
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        self.s.flush().await
    }
}

/// Where a command goes.
#[derive(Default)]
struct Route {
    server: String,
    select: bool,
    /// LIST: the back ends whose answers are merged (the INBOX's
    /// last); None when the INBOX's back end answers alone.
    merge: Option<Vec<String>>,
    /// COPY/MOVE into a mailbox on another back end.
    copy: Option<CrossCopy>,
    /// The line to send instead of the client's.
    rewrite: Option<Vec<u8>>,
    /// Answered here, not sent on (a referral); `select`: the selected
    /// mailbox is closed first.
    answer: Option<String>,
    /// LOGOUT: the client is answered here at once, then the back ends
    /// are logged out (one wait fewer than relaying a back end's answer).
    logout: bool,
}

/// A COPY or MOVE whose target is on another back end than the selected
/// mailbox: FETCH there, APPEND here (Cyrus's proxy_copy).
struct CrossCopy {
    tag: String,
    uid: bool,
    moving: bool,
    set: String,
    dest: String,
}

pub struct Router {
    front: Arc<Front>,
    user: String,
    /// Who the back ends log in (see `new`).
    login_as: String,
    /// Logged in as `user+`: LIST is the INBOX back end's alone.
    subscribed_only: bool,
    ns: Namespace,
    home: String,
    /// The back end of the selected mailbox (or home).
    sel: String,
    /// The back end the stream goes to now.
    cur: String,
    conns: HashMap<String, Back>,
    /// ENABLEd extensions, replayed on each new back-end connection.
    enabled: Vec<String>,
    n: u32,
    /// The client has used RLIST or RLSUB (RFC 2193): it follows
    /// referrals, so SELECT and EXAMINE (and STATUS with
    /// `proxyd_allow_status_referral`) refer it to the back end.
    referrals: bool,
    /// `proxyd_disable_mailbox_referrals` is off.
    may_refer: bool,
    status_referral: bool,
    /// The user is one of `admins`.
    admin: bool,
}

/// A command routed by the mailbox its argument names, when that name
/// is a short literal ending the first line.
fn name_literal(line: &[u8]) -> Option<NameLiteral> {
    let h = head_words(line, 0)?;
    let pos = match h.name.as_str() {
        "SELECT" | "EXAMINE" | "STATUS" | "APPEND" | "DELETE" | "RENAME" | "CREATE" | "GETACL" | "SETACL" | "DELETEACL" | "LISTRIGHTS"
        | "MYRIGHTS" | "GETQUOTAROOT" | "GETQUOTA" | "SETQUOTA" | "SETMETADATA" | "GETMETADATA" | "XFER" | "LOCALDELETE"
        | "MUPDATEPUSH" | "RECONSTRUCT" => 0,
        "COPY" | "MOVE" | "XMOVE" => 1,
        _ => return None,
    };
    NameLiteral::start(line, pos)
}

/// The METADATA entry naming a mailbox's back end (Cyrus's
/// `annotation_get_server`, answered by front ends only).
pub const SERVER_ENTRY: &str = "/shared/vendor/cmu/cyrus-imapd/server";

/// `GETMETADATA mailbox entry` or `(entry)` asking for SERVER_ENTRY alone.
fn asks_server_entry(line: &[u8]) -> bool {
    let t = String::from_utf8_lossy(line).trim_end().to_ascii_lowercase();
    t.ends_with(&format!(" {SERVER_ENTRY}")) || t.ends_with(&format!(" ({SERVER_ENTRY})"))
}

/// An IMAP URL (RFC 5092) for a mailbox on `server`, as Cyrus's
/// imapurl_toURL writes it: `imap://;AUTH=*@server/name`, the name in
/// UTF-8 with unsafe bytes %-encoded.
pub fn referral_url(server: &str, ext: &str) -> String {
    let name = crate::store::names::mutf7_to_utf8(ext).unwrap_or_else(|| ext.to_string());
    let mut url = format!("imap://;AUTH=*@{server}/");
    for &b in name.as_bytes() {
        if !(0x21..0x7f).contains(&b) || b" \"#%&+:;<=>?@[\\]^`{|}".contains(&b) {
            url.push_str(&format!("%{b:02X}"));
        } else {
            url.push(b as char);
        }
    }
    url
}

impl Router {
    /// `user`'s session, with `home` (their INBOX's back end) logged in
    /// on `backend`; the other back ends are logged in as `login_as` (the
    /// user, or the `user+detail` an `imapmagicplus` login gave).
    pub fn new(front: Arc<Front>, user: &str, login_as: &str, home: &str, backend: PeerIo) -> Router {
        let c = &front.conf;
        let virtdomains = !matches!(c.get("virtdomains"), Some("off") | Some("no") | None);
        let alt = c.get_switch("altnamespace") && !c.get("admins").unwrap_or("").split_whitespace().any(|a| a == user);
        let ns = Namespace::new(
            c.get_switch("unixhierarchysep"),
            alt,
            user,
            virtdomains,
            c.get("defaultdomain").unwrap_or(""),
        )
        .with_prefixes(c.get("userprefix"), c.get("sharedprefix"));
        let may_refer = !c.get_switch("proxyd_disable_mailbox_referrals");
        let status_referral = c.get_switch("proxyd_allow_status_referral");
        let admin = c.get("admins").unwrap_or("").split_whitespace().any(|a| a == user);
        let mut conns = HashMap::new();
        conns.insert(home.to_string(), Back::fresh(backend, true));
        // `imapmagicplus` with nothing after the plus: LIST shows the
        // subscribed mailboxes, which live with the INBOX.
        let subscribed_only = login_as != user && login_as.split('@').next().is_some_and(|l| l.ends_with('+'));
        Router {
            front,
            user: user.to_string(),
            login_as: login_as.to_string(),
            subscribed_only,
            ns,
            home: home.to_string(),
            sel: home.to_string(),
            cur: home.to_string(),
            conns,
            enabled: Vec::new(),
            n: 0,
            referrals: false,
            may_refer,
            status_referral,
            admin,
        }
    }

    /// The server holding an external mailbox name, None when unknown.
    async fn server_of(&self, ext: &str) -> Option<String> {
        let internal = self.ns.to_internal(ext).ok()?;
        match self.front.locate(&internal).await {
            Ok(Some((State::Active, s))) => Some(s),
            _ => None,
        }
    }

    /// The server of an active mailbox the user may look up (admins, the
    /// owner, or `l` for the user or anyone in its ACL; groups are the
    /// back ends' to resolve, so those are left to them).
    async fn visible_server(&self, ext: &str) -> Option<String> {
        let internal = self.ns.to_internal(ext).ok()?;
        let e = self.front.entry(&internal).await.ok()??;
        use crate::daemon::imapd::mailboxes::{mailbox_owner, rights_of};
        // The owner holds `implicit_owner_rights` (lkxan) whatever the ACL.
        let implicit_l = self.front.conf.get("implicit_owner_rights").unwrap_or("lkxan").contains('l');
        let may = self.admin
            || (implicit_l && mailbox_owner(&internal).as_deref() == Some(self.user.as_str()))
            || rights_of(&e.acl, &[&self.user, "anyone"]).contains('l');
        (e.state == State::Active && may).then(|| crate::store::murder::server_of(&e.location).to_string())
    }

    /// The server of the mailbox an IMAP URL names (URLAUTH): the URL's
    /// owner's namespace, else the user's.
    async fn url_server(&self, url: &str) -> Option<String> {
        let u = crate::proto::imap::url::parse(url).ok()?;
        let ext = crate::store::names::utf8_to_mutf7(&u.mailbox);
        let internal = match u.user.as_deref() {
            Some(owner) if owner != self.user => {
                let vd = !self.ns.domain.is_empty() || owner.contains('@');
                Namespace::new(self.ns.sep == '/', self.ns.alt, owner, vd, &self.ns.domain)
                    .with_prefixes(Some(&self.ns.other_users), Some(&self.ns.shared))
                    .to_internal(&ext)
                    .ok()?
            }
            _ => self.ns.to_internal(&ext).ok()?,
        };
        match self.front.locate(&internal).await {
            Ok(Some((State::Active, s))) => Some(s),
            _ => None,
        }
    }

    /// The server of the closest existing mailbox at or above `ext`.
    async fn parent_server(&self, ext: &str) -> Option<String> {
        let mut internal = self.ns.to_internal(ext).ok()?;
        loop {
            if let Ok(Some((State::Active, s))) = self.front.locate(&internal).await {
                return Some(s);
            }
            internal = crate::store::names::parent(&internal)?.to_string();
        }
    }

    async fn route(&mut self, line: &[u8]) -> Route {
        let stay = |s: &str| Route {
            server: s.to_string(),
            ..Route::default()
        };
        let Some(h) = head_words(line, 3) else {
            return stay(&self.sel);
        };
        let first_str = |i: usize| match h.args.get(i) {
            Some(Arg::Str(s)) => Some(s.clone()),
            _ => None,
        };
        if matches!(h.name.as_str(), "RLIST" | "RLSUB") && self.may_refer {
            self.referrals = true;
        }
        if h.name == "LOGOUT" {
            return Route {
                server: self.cur.clone(),
                answer: Some(format!("* BYE LOGOUT received\r\n{} OK Completed\r\n", h.tag)),
                logout: true,
                ..Route::default()
            };
        }
        // A client that follows referrals is sent to the back end itself.
        let refer = matches!(h.name.as_str(), "SELECT" | "EXAMINE") || (h.name == "STATUS" && self.status_referral);
        if refer && self.referrals {
            if let Some(m) = first_str(0) {
                if let Some(server) = self.server_of(&m).await {
                    return Route {
                        server: self.cur.clone(),
                        select: h.name != "STATUS",
                        answer: Some(format!("{} NO [REFERRAL {}] Remote mailbox.\r\n", h.tag, referral_url(&server, &m))),
                        ..Route::default()
                    };
                }
            }
        }
        match h.name.as_str() {
            "SELECT" | "EXAMINE" => {
                let server = match first_str(0) {
                    Some(m) => self.server_of(&m).await.unwrap_or_else(|| self.home.clone()),
                    None => self.sel.clone(),
                };
                Route {
                    server,
                    select: true,
                    ..Route::default()
                }
            }
            // RENAME to another server!partition is a move: XFER at the
            // back end holding the mailbox (as Cyrus's front ends send it).
            "RENAME" if matches!((first_str(0), first_str(1), first_str(2)), (Some(a), Some(b), Some(l)) if a == b && l.contains('!')) => {
                let (Some(m), Some(loc)) = (first_str(0), first_str(2)) else {
                    return stay(&self.sel);
                };
                let server = self.server_of(&m).await.unwrap_or_else(|| self.sel.clone());
                let (dest, part) = loc.split_once('!').unwrap_or((loc.as_str(), ""));
                let mut line = format!("{} XFER {} {dest}", h.tag, quote(&m));
                if !part.is_empty() {
                    line.push_str(&format!(" {part}"));
                }
                line.push_str("\r\n");
                Route {
                    server,
                    rewrite: Some(line.into_bytes()),
                    ..Route::default()
                }
            }
            "STATUS" | "APPEND" | "DELETE" | "RENAME" | "GETACL" | "SETACL" | "DELETEACL" | "LISTRIGHTS" | "MYRIGHTS" | "GETQUOTAROOT"
            | "GETQUOTA" | "SETQUOTA" | "SETMETADATA" | "XFER" | "LOCALDELETE" | "MUPDATEPUSH" | "RECONSTRUCT" => match first_str(0) {
                Some(m) => stay(&self.server_of(&m).await.unwrap_or_else(|| self.sel.clone())),
                None => stay(&self.sel),
            },
            // URLAUTH: where the (first) URL's mailbox is; RESETKEY where
            // its mailbox is, or (all keys) at the INBOX's back end.
            "GENURLAUTH" | "URLFETCH" => match first_str(0) {
                Some(u) => stay(&self.url_server(&u).await.unwrap_or_else(|| self.home.clone())),
                None => stay(&self.home),
            },
            "RESETKEY" => match first_str(0) {
                Some(m) => stay(&self.server_of(&m).await.unwrap_or_else(|| self.home.clone())),
                None => stay(&self.home),
            },
            "GETMETADATA" => {
                // Cyrus's front ends answer the mailbox's server themselves
                // (a proxy-only entry), to admins and to users with the
                // `l` right, from the MUPDATE copy.
                if h.args.len() == 2 {
                    if let (Some(m), true) = (first_str(0), asks_server_entry(line)) {
                        if let Some(server) = self.visible_server(&m).await {
                            let mut out = b"* METADATA ".to_vec();
                            crate::daemon::imapd::mailboxes::astring(&mut out, m.as_bytes());
                            out.extend_from_slice(format!(" (\"{SERVER_ENTRY}\" ").as_bytes());
                            crate::proto::imap::render::string(&mut out, server.as_bytes());
                            out.extend_from_slice(format!(")\r\n{} OK Completed\r\n", h.tag).as_bytes());
                            return Route {
                                server: self.cur.clone(),
                                answer: Some(String::from_utf8_lossy(&out).into_owned()),
                                ..Route::default()
                            };
                        }
                    }
                }
                let m = h.args.iter().find_map(|a| match a {
                    Arg::Str(s) => Some(s.clone()),
                    _ => None,
                });
                match m {
                    Some(m) => stay(&self.server_of(&m).await.unwrap_or_else(|| self.sel.clone())),
                    None => stay(&self.sel),
                }
            }
            // Under a parent: the parent's back end.  Without one (a new
            // user, a new top-level folder): the one Cyrus's front end
            // picks (`defaultserver`, else the freest of `serverlist`).
            "CREATE" => match first_str(0) {
                Some(m) => match self.parent_server(&m).await {
                    Some(s) => stay(&s),
                    None => stay(&self.front.new_mailbox_server().await.unwrap_or_else(|| self.home.clone())),
                },
                None => stay(&self.home),
            },
            // The INBOX's back end answers, with what the others hold of
            // the pattern merged in; subscriptions live with the INBOX.
            // (Not for the hierarchy delimiter, `LIST "" ""`: the INBOX's
            // back end says it once.)
            // A user who may see mailboxes on the INBOX's back end only
            // gets its answer as it comes (it is in Cyrus's order already).
            "LIST" | "XLIST" | "RLIST" => {
                let mut merge = None;
                if !self.subscribed_only && first_str(1).is_none_or(|p| !p.is_empty()) {
                    let mut servers = self.front.list_servers(&self.user).await;
                    servers.retain(|s| *s != self.home);
                    if !servers.is_empty() {
                        servers.push(self.home.clone());
                        merge = Some(servers);
                    }
                }
                Route {
                    server: self.home.clone(),
                    merge,
                    ..Route::default()
                }
            }
            // SCAN: what the INBOX's back end holds (not merged).
            "LSUB" | "RLSUB" | "SUBSCRIBE" | "UNSUBSCRIBE" | "NAMESPACE" | "SCAN" => stay(&self.home),
            "COPY" | "MOVE" | "XMOVE" => {
                let (Some(set), Some(dest)) = (first_str(0), first_str(1)) else {
                    return stay(&self.sel);
                };
                match self.server_of(&dest).await {
                    Some(server) if server != self.sel => Route {
                        server: self.sel.clone(),
                        copy: Some(CrossCopy {
                            tag: h.tag.clone(),
                            uid: h.uid,
                            moving: h.name != "COPY",
                            set,
                            dest,
                        }),
                        ..Route::default()
                    },
                    _ => stay(&self.sel),
                }
            }
            "ENABLE" => {
                for a in &h.args {
                    if let Arg::Str(s) = a {
                        if !self.enabled.iter().any(|e| e.eq_ignore_ascii_case(s)) {
                            self.enabled.push(s.clone());
                        }
                    }
                }
                stay(&self.sel)
            }
            _ => stay(&self.sel),
        }
    }

    /// Opens (or finds) the connection to `server`, logged in for the
    /// user, with the session's ENABLEd extensions.
    async fn open(&mut self, server: &str) -> Result<(), String> {
        if self.conns.contains_key(server) {
            return Ok(());
        }
        let (ok, mut b) = self.front.imap_session(server, &self.login_as).await?;
        self.front.pool.note_login(server, &ok);
        let reusable = self.enabled.is_empty();
        if !self.enabled.is_empty() {
            self.n += 1;
            let tag = format!("PROXY{}", self.n);
            super::front::write_line(&mut b, &format!("{tag} ENABLE {}", self.enabled.join(" "))).await?;
            until_tagged(&mut b, &tag).await?;
        }
        self.conns.insert(server.to_string(), Back::fresh(b.into_inner(), reusable));
        Ok(())
    }

    /// UNSELECT on the back end that had the selected mailbox (its
    /// replies are the proxy's, not the client's).
    async fn unselect(&mut self, server: &str) {
        let Some(b) = self.conns.get_mut(server) else { return };
        if !b.selected {
            return;
        }
        b.selected = false;
        self.n += 1;
        let tag = format!("PROXY{}", self.n);
        let mut r = tokio::io::BufReader::new(&mut b.s);
        if super::front::write_line(&mut r, &format!("{tag} UNSELECT")).await.is_ok() {
            let _ = until_tagged(&mut r, &tag).await;
        }
    }

    /// Runs the session until either side ends.
    pub async fn run<C>(mut self, client: C, mut inq: Vec<u8>)
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut cr, mut cw) = tokio::io::split(client);
        let mut scan = ClientScan::default();
        let mut cbuf = super::front::Buf::new();
        let mut bbuf = super::front::Buf::new();
        // A routed head waiting for the current back end to finish.
        let mut held: Option<(Vec<u8>, Route)> = None;
        // Where the rest of the current command goes (None: dropped).
        let mut target: Option<String> = Some(self.cur.clone());
        // A command routed by a mailbox name sent as a literal, gathered
        // up to the end of that name's line before it is routed.
        let mut gather: Option<NameLiteral> = None;
        loop {
            // Route and forward what the client has sent.
            while held.is_none() {
                if let Some(g) = gather.as_mut().filter(|g| g.sync && !g.acked) {
                    // The client waits for a continuation before the name;
                    // it is ours to give, once the back end in use has
                    // answered everything (no interleaving).
                    if !self.conns.get(&self.cur).is_none_or(Back::quiet) {
                        break;
                    }
                    if cw.write_all(b"+ go ahead\r\n").await.is_err() || cw.flush().await.is_err() {
                        return;
                    }
                    g.acked = true;
                }
                let Some(p) = scan.next(&inq) else { break };
                match p {
                    Piece::Pass(n) if gather.is_some() => {
                        let g = gather.as_mut().expect("gathering");
                        g.bytes.extend(inq.drain(..n));
                        if g.complete(&scan) {
                            let (fwd, line) = gather.take().expect("gathering").finish();
                            let r = Box::pin(self.route(&line)).await;
                            held = Some((fwd, r));
                        } else if g.bytes.len() > crate::proto::imap::stream::MAX_HEAD {
                            // No end of line in sight: sent on unrouted,
                            // the rest following as it comes.
                            let (fwd, _) = gather.take().expect("gathering").finish();
                            let r = Route {
                                server: self.cur.clone(),
                                ..Route::default()
                            };
                            held = Some((fwd, r));
                        }
                    }
                    Piece::Pass(n) => {
                        if let Some(t) = &target {
                            let b = self.conns.get_mut(t).expect("target is connected");
                            b.out.extend_from_slice(&inq[..n]);
                        }
                        inq.drain(..n);
                    }
                    Piece::Head(n) => {
                        let line: Vec<u8> = inq.drain(..n).collect();
                        if let Some(g) = name_literal(&line) {
                            gather = Some(g);
                            continue;
                        }
                        let r = Box::pin(self.route(&line)).await;
                        held = Some((line, r));
                    }
                }
            }
            if self.flush_queued().await.is_err() {
                return Box::pin(self.lost(&mut cw)).await;
            }
            if let Some((line, r)) = held.take() {
                let line = r.rewrite.clone().unwrap_or(line);
                let quiet = self.conns.get(&self.cur).is_none_or(Back::quiet);
                if r.answer.is_some() && !quiet {
                    // Answered once what the back end owes has come (read
                    // below).
                    held = Some((line, r));
                } else if let Some(answer) = &r.answer {
                    if r.select {
                        // A SELECT that fails closes the mailbox selected.
                        let sel = self.sel.clone();
                        Box::pin(self.unselect(&sel)).await;
                    }
                    if cw.write_all(answer.as_bytes()).await.is_err() || cw.flush().await.is_err() {
                        return;
                    }
                    if r.logout {
                        let _ = cw.shutdown().await;
                        drop((cr, cw));
                        Box::pin(self.logout_backends()).await;
                        return;
                    }
                    // The rest of this command (its literals) goes nowhere.
                    target = None;
                    continue;
                } else if r.server == self.cur && r.merge.is_none() && r.copy.is_none() && (!r.select || self.sel == r.server) {
                    if let Some(b) = self.conns.get_mut(&r.server).filter(|_| r.select) {
                        b.selected = true;
                    }
                    target = Some(self.cur.clone());
                    if self.send(&line).await.is_err() {
                        return Box::pin(self.lost(&mut cw)).await;
                    }
                    continue;
                } else if !quiet {
                    held = Some((line, r));
                } else {
                    if let Some(servers) = &r.merge {
                        match Box::pin(self.merge_list(&line, servers, &mut cw)).await {
                            Merged::Answered => {
                                target = None;
                                continue;
                            }
                            Merged::Gone => return,
                            Merged::Lost => return Box::pin(self.lost(&mut cw)).await,
                            Merged::No => {}
                        }
                    }
                    if let Some(c) = &r.copy {
                        if !Box::pin(self.cross_copy(c, &mut cw)).await {
                            return Box::pin(self.lost(&mut cw)).await;
                        }
                        continue;
                    }
                    match Box::pin(self.switch(&line, &r)).await {
                        Ok(()) => {
                            target = Some(self.cur.clone());
                            if self.send(&line).await.is_err() {
                                return Box::pin(self.lost(&mut cw)).await;
                            }
                        }
                        Err(e) => {
                            self.front
                                .log
                                .error(&format!("couldn't authenticate to backend server {}: {e}", r.server));
                            let tag = head_words(&line, 0).map(|h| h.tag).unwrap_or_else(|| "*".into());
                            let reply = format!("{tag} NO [UNAVAILABLE] Server(s) unavailable to complete operation\r\n");
                            if cw.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                            let _ = cw.flush().await;
                            // The rest of this command (its literals) goes nowhere.
                            target = None;
                        }
                    }
                    continue;
                }
            }
            if target.is_none() && scan.idle() {
                target = Some(self.cur.clone());
            }
            if self.flush_queued().await.is_err() {
                return Box::pin(self.lost(&mut cw)).await;
            }
            let reading_client = held.is_none();
            let cur = self.cur.clone();
            let b = self.conns.get_mut(&cur).expect("current is connected");
            tokio::select! {
                n = cr.read(&mut cbuf.0), if reading_client => match n {
                    Ok(n) if n > 0 => {
                        inq.extend_from_slice(&cbuf.0[..n]);
                        cbuf.after_read(n);
                    }
                    _ => {
                        for b in self.conns.values_mut() {
                            let _ = b.s.shutdown().await;
                        }
                        return;
                    }
                },
                n = b.s.read(&mut bbuf.0) => match n {
                    Ok(n) if n > 0 => {
                        b.scan.feed(&bbuf.0[..n]);
                        if cw.write_all(&bbuf.0[..n]).await.is_err() || cw.flush().await.is_err() {
                            return;
                        }
                        bbuf.after_read(n);
                    }
                    _ => {
                        let bye = b.scan.bye;
                        if !bye {
                            let _ = cw.write_all(b"* BYE Lost connection to the mailbox server\r\n").await;
                        }
                        let _ = cw.flush().await;
                        let _ = cw.shutdown().await;
                        return;
                    }
                },
            }
        }
    }

    /// Answers a LIST from every back end holding mailboxes the user may
    /// see, the INBOX's last: their answers in one list, each mailbox
    /// once, in Cyrus's LIST order (as a Cyrus front end answers from its
    /// copy of the mailbox list), a LIST-STATUS answer after its
    /// mailbox's; then the INBOX's back end's tagged reply.  Other news
    /// (of the selected mailbox) goes first.
    async fn merge_list<W: AsyncWrite + Unpin>(&mut self, line: &[u8], servers: &[String], cw: &mut W) -> Merged {
        use crate::proto::imap::stream::{listed, Listed};
        let Some(h) = head_words(line, 0) else { return Merged::No };
        let rest = &line[h.tag.len()..];
        let body = rest.strip_suffix(b"\r\n").unwrap_or(rest);
        if crate::proto::imap::command::literal_marker(body).is_some() {
            return Merged::No;
        }
        let home = self.home.clone();
        // Each mailbox's LIST response with what came after it about the
        // same mailbox; responses about nothing listed.
        let mut items: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
        let mut at: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut news: Vec<Vec<u8>> = Vec::new();
        let mut status = String::new();
        for server in servers {
            let is_home = *server == home;
            if let Err(e) = tokio::time::timeout(BACKEND_TIMEOUT, self.open(server))
                .await
                .unwrap_or(Err("timed out".into()))
            {
                self.front
                    .log
                    .error(&format!("couldn't authenticate to backend server {server}: {e}"));
                if is_home {
                    status = "NO [UNAVAILABLE] Server(s) unavailable to complete operation".into();
                }
                continue;
            }
            self.n += 1;
            let tag = format!("PROXY{}", self.n);
            let Some(b) = self.conns.get_mut(server) else { continue };
            let mut cmd = tag.clone().into_bytes();
            cmd.extend_from_slice(rest);
            let got = match b.put(&cmd).await {
                Ok(()) => tokio::time::timeout(BACKEND_TIMEOUT, collect_until(&mut b.s, &tag)).await,
                Err(e) => Ok(Err(e.to_string())),
            };
            let resps = match got {
                Ok(Ok((v, st))) => {
                    if is_home {
                        status = st;
                    }
                    v
                }
                _ if is_home => return Merged::Lost,
                _ => {
                    self.conns.remove(server);
                    continue;
                }
            };
            let mut last: Option<usize> = None;
            for resp in resps {
                match listed(&resp) {
                    Some(Listed::Mailbox(name)) => match at.get(&name) {
                        // A mailbox two back ends list (a parent one of
                        // them only holds children of): its own server's
                        // answer wins over a placeholder.
                        Some(&k) => {
                            let placeholder = |r: &[u8]| {
                                let attrs = r.split(|&c| c == b')').next().unwrap_or(r).to_ascii_lowercase();
                                let has = |a: &[u8]| attrs.windows(a.len()).any(|w| w == a);
                                has(b"\\noselect") || has(b"\\nonexistent")
                            };
                            if placeholder(&items[k].1[0]) && !placeholder(&resp) {
                                items[k].1[0] = resp;
                            }
                            last = Some(k);
                        }
                        None => {
                            at.insert(name.clone(), items.len());
                            last = Some(items.len());
                            items.push((name, vec![resp]));
                        }
                    },
                    Some(Listed::Status(name)) => match at.get(&name).copied().or(last) {
                        Some(k) => items[k].1.push(resp),
                        None => news.push(resp),
                    },
                    None => news.push(resp),
                }
            }
        }
        items.sort_by(|a, b| {
            crate::store::names::list_order(&String::from_utf8_lossy(&a.0), &String::from_utf8_lossy(&b.0), Some(&self.ns))
        });
        let mut out: Vec<u8> = news.concat();
        for (_, resps) in items {
            for r in resps {
                out.extend_from_slice(&r);
            }
        }
        out.extend_from_slice(format!("{} {status}\r\n", h.tag).as_bytes());
        if cw.write_all(&out).await.is_err() || cw.flush().await.is_err() {
            return Merged::Gone;
        }
        Merged::Answered
    }

    /// COPY/MOVE to another back end: the messages are fetched from the
    /// selected mailbox's back end and appended at the target's in one
    /// MULTIAPPEND (flags and dates kept); a MOVE then expunges them at
    /// the source.  The client gets COPYUID from the target's APPENDUID.
    /// False when a back end is lost.
    async fn cross_copy<W: AsyncWrite + Unpin>(&mut self, c: &CrossCopy, cw: &mut W) -> bool {
        use crate::proto::imap::stream::fetched;
        let src = self.sel.clone();
        self.cur = src.clone();
        let uid = if c.uid { "UID " } else { "" };
        self.n += 1;
        let ftag = format!("PROXY{}", self.n);
        let Some(b) = self.conns.get_mut(&src) else { return false };
        if b.put(format!("{ftag} {uid}FETCH {} (UID FLAGS INTERNALDATE BODY.PEEK[])\r\n", c.set).as_bytes())
            .await
            .is_err()
        {
            return false;
        }
        let (resps, status) = match tokio::time::timeout(BACKEND_TIMEOUT, collect_until(&mut b.s, &ftag)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) if e == "response too large" => {
                let r = format!("{} NO inter-server COPY failed\r\n", c.tag);
                return cw.write_all(r.as_bytes()).await.is_ok();
            }
            _ => return false,
        };
        let mut msgs = Vec::new();
        for r in resps {
            match fetched(&r) {
                Some(m) => msgs.push(m),
                // Other news of the selected mailbox is the client's.
                None => {
                    if cw.write_all(&r).await.is_err() {
                        return false;
                    }
                }
            }
        }
        if !status.starts_with("OK") {
            return cw.write_all(format!("{} {status}\r\n", c.tag).as_bytes()).await.is_ok();
        }
        if msgs.is_empty() {
            return cw.write_all(format!("{} OK Completed\r\n", c.tag).as_bytes()).await.is_ok();
        }
        let dest_server = match self.server_of(&c.dest).await {
            Some(s) => s,
            None => {
                return cw
                    .write_all(format!("{} NO [TRYCREATE] Mailbox does not exist\r\n", c.tag).as_bytes())
                    .await
                    .is_ok()
            }
        };
        let opened = tokio::time::timeout(BACKEND_TIMEOUT, self.open(&dest_server))
            .await
            .unwrap_or(Err("timed out".into()));
        if let Err(e) = opened {
            self.front
                .log
                .error(&format!("couldn't authenticate to backend server {dest_server}: {e}"));
            let r = format!("{} NO [UNAVAILABLE] Server(s) unavailable to complete operation\r\n", c.tag);
            return cw.write_all(r.as_bytes()).await.is_ok();
        }
        self.n += 1;
        let atag = format!("PROXY{}", self.n);
        let mut cmd = format!("{atag} APPEND {}", quote(&c.dest)).into_bytes();
        for m in &msgs {
            cmd.extend_from_slice(format!(" ({}) \"{}\" {{{}+}}\r\n", m.flags.join(" "), m.internaldate, m.body.len()).as_bytes());
            cmd.extend_from_slice(&m.body);
        }
        cmd.extend_from_slice(b"\r\n");
        let Some(d) = self.conns.get_mut(&dest_server) else { return false };
        if d.put(&cmd).await.is_err() {
            return false;
        }
        drop(cmd);
        let status = match tokio::time::timeout(BACKEND_TIMEOUT, collect_until(&mut d.s, &atag)).await {
            Ok(Ok((_, st))) => st,
            _ => {
                self.conns.remove(&dest_server);
                let r = format!("{} NO inter-server COPY failed\r\n", c.tag);
                return cw.write_all(r.as_bytes()).await.is_ok();
            }
        };
        if !status.starts_with("OK") {
            let text = status.strip_prefix("NO ").unwrap_or("inter-server COPY failed");
            return cw.write_all(format!("{} NO {text}\r\n", c.tag).as_bytes()).await.is_ok();
        }
        // [APPENDUID uidvalidity uids] → [COPYUID uidvalidity src dst].
        let src_uids = crate::store::uid_ranges(&msgs.iter().map(|m| m.uid).collect::<Vec<_>>());
        let copyuid = status
            .split_once("[APPENDUID ")
            .and_then(|(_, r)| r.split_once(']'))
            .and_then(|(a, _)| a.split_once(' '))
            .map(|(v, dst)| format!("[COPYUID {v} {src_uids} {dst}] "))
            .unwrap_or_default();
        if !c.moving {
            return cw
                .write_all(format!("{} OK {copyuid}Completed\r\n", c.tag).as_bytes())
                .await
                .is_ok();
        }
        if cw.write_all(format!("* OK {copyuid}Completed\r\n").as_bytes()).await.is_err() {
            return false;
        }
        // The source's copies go; the EXPUNGE responses are the client's.
        self.n += 1;
        let (stag, etag) = (format!("PROXY{}", self.n), format!("PROXY{}X", self.n));
        let Some(b) = self.conns.get_mut(&src) else { return false };
        // One at a time: collect_until's reader may not read past a reply.
        let store = format!("{stag} UID STORE {src_uids} +FLAGS.SILENT (\\Deleted)\r\n");
        let expunge = format!("{etag} UID EXPUNGE {src_uids}\r\n");
        for (t, cmd) in [(&stag, store), (&etag, expunge)] {
            if b.put(cmd.as_bytes()).await.is_err() {
                return false;
            }
            match tokio::time::timeout(BACKEND_TIMEOUT, collect_until(&mut b.s, t)).await {
                Ok(Ok((resps, _))) => {
                    for r in resps {
                        if cw.write_all(&r).await.is_err() {
                            return false;
                        }
                    }
                }
                _ => return false,
            }
        }
        cw.write_all(format!("{} OK Completed\r\n", c.tag).as_bytes()).await.is_ok()
    }

    /// Moves the stream to `r.server` (the current back end is quiet).
    async fn switch(&mut self, _line: &[u8], r: &Route) -> Result<(), String> {
        tokio::time::timeout(BACKEND_TIMEOUT, self.open(&r.server))
            .await
            .map_err(|_| "timed out".to_string())??;
        if r.select {
            if self.sel != r.server {
                let old = self.sel.clone();
                self.unselect(&old).await;
            }
            self.sel = r.server.clone();
            if let Some(b) = self.conns.get_mut(&r.server) {
                b.selected = true;
            }
        }
        self.cur = r.server.clone();
        Ok(())
    }

    /// Sends a command's first line to the current back end.
    async fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        let head = head_words(line, 0);
        let b = self.conns.get_mut(&self.cur).expect("current is connected");
        if let Some(h) = &head {
            b.sent += 1;
            b.reusable &= super::backend_pool::keeps_reusable(&h.name);
            // Whether it succeeds or not, nothing is selected after.
            if matches!(h.name.as_str(), "CLOSE" | "UNSELECT") {
                b.selected = false;
            }
        }
        b.out.extend_from_slice(line);
        Ok(())
    }

    /// Sends what is queued for every back end: before anything waits on
    /// a back end's answer.
    async fn flush_queued(&mut self) -> std::io::Result<()> {
        for b in self.conns.values_mut() {
            b.flush_out().await?;
        }
        Ok(())
    }

    /// At LOGOUT: keeps each back-end connection the session left as a
    /// fresh login would (UNSELECTed first) for the user's next session;
    /// logs out of the others, as Cyrus's proxyd does (each answers and
    /// closes; a back end slower than 5 s is left).
    async fn logout_backends(&mut self) {
        let servers: Vec<String> = self.conns.keys().cloned().collect();
        for server in servers {
            let Some(mut b) = self.conns.remove(&server) else { continue };
            if b.reusable && b.quiet() && b.scan.at_line_start() {
                if b.selected {
                    self.n += 1;
                    let tag = format!("PROXY{}", self.n);
                    let mut r = tokio::io::BufReader::new(&mut b.s);
                    let unselected = async {
                        super::front::write_line(&mut r, &format!("{tag} UNSELECT")).await?;
                        until_tagged(&mut r, &tag).await?;
                        // Nothing may follow the tagged reply unread.
                        if r.buffer().is_empty() {
                            Ok(())
                        } else {
                            Err("more after UNSELECT".to_string())
                        }
                    };
                    b.reusable = tokio::time::timeout(std::time::Duration::from_secs(5), unselected)
                        .await
                        .is_ok_and(|r| r.is_ok());
                }
                if b.reusable {
                    match self.front.pool.keep(&server, &self.login_as, b.s) {
                        Ok(()) => continue,
                        Err(s) => b = Back::fresh(s, false),
                    }
                }
            }
            self.conns.insert(server, b);
        }
        for b in self.conns.values_mut() {
            let done = async {
                b.put(b"Z LOGOUT\r\n").await?;
                let mut sink = [0u8; 512];
                while b.s.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), done).await;
        }
    }

    async fn lost<W: AsyncWrite + Unpin>(&mut self, cw: &mut W) {
        let _ = cw.write_all(b"* BYE Lost connection to the mailbox server\r\n").await;
        let _ = cw.flush().await;
    }
}

/// How `merge_list` ended.
enum Merged {
    /// The client has the whole answer.
    Answered,
    /// Not merged (a literal in the command): the INBOX's back end
    /// answers alone.
    No,
    /// The client is gone.
    Gone,
    /// The INBOX's back end is lost.
    Lost,
}

/// A mailbox name as a client's IMAP string.
fn quote(s: &str) -> String {
    let mut out = Vec::new();
    crate::proto::imap::render::client_string(&mut out, s.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a back end's responses up to the one tagged `tag` (the whole
/// reply within 64 MB); a reader on the stream for this one reply.
async fn collect_until(s: &mut PeerIo, tag: &str) -> Result<(Vec<Vec<u8>>, String), String> {
    super::front::collect_tagged(&mut tokio::io::BufReader::new(s), tag, 64 << 20).await
}

/// Reads a back end's lines up to the one tagged `tag` (bounded, timed);
/// Err if it is not OK.
async fn until_tagged<R: AsyncRead + Unpin>(r: &mut tokio::io::BufReader<R>, tag: &str) -> Result<(), String> {
    loop {
        let l = super::front::backend_line(r).await?;
        if let Some(rest) = l.strip_prefix(tag).and_then(|x| x.strip_prefix(' ')) {
            return if rest.starts_with("OK") { Ok(()) } else { Err(l) };
        }
    }
}

#[cfg(test)]
mod referral_tests {
    #[test]
    fn referral_urls() {
        assert_eq!(super::referral_url("be1", "INBOX"), "imap://;AUTH=*@be1/INBOX");
        assert_eq!(
            super::referral_url("10.0.0.2", "Other Users.yes1.proj"),
            "imap://;AUTH=*@10.0.0.2/Other%20Users.yes1.proj"
        );
        // Modified UTF-7 becomes UTF-8, %-encoded; unsafe ASCII too.
        assert_eq!(
            super::referral_url("be1", "Entw&APw-rfe #1"),
            "imap://;AUTH=*@be1/Entw%C3%BCrfe%20%231"
        );
    }
}
