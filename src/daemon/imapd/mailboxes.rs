//! Mailbox-level commands: CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST,
//! LSUB, STATUS, APPEND and ACL queries (quota: `quota.rs`; ACL strings: `acl.rs`; METADATA:
//! `metadata.rs`; special use:
//! `specialuse.rs`); name translation and rights checks.

use super::{Res, Session};
use crate::proto::imap::command::AppendMsg;
use crate::proto::imap::render;
use crate::store::names::NameError;
use crate::store::{Cached, MailboxEntry, NewMessage, StoreError};

use super::acl::acl_entry;
pub use super::acl::{acl_with, canonical_rights, mailbox_owner, rights_of};
use super::metadata::{meta_entry_ok, metadata_line};
use super::specialuse::special_use_list;
pub use super::specialuse::SPECIAL_USES;

/// STATUS items, in the order Cyrus 3.6 answers them (whatever the
/// order asked).
const STATUS_ITEMS: [&str; 10] = [
    "MESSAGES",
    "RECENT",
    "UIDNEXT",
    "UIDVALIDITY",
    "MAILBOXID",
    "UNSEEN",
    "SIZE",
    // Cyrus's X-CREATEDMODSEQ.
    "CREATEDMODSEQ",
    "HIGHESTMODSEQ",
    // IMAP4rev2 (RFC 9051 6.3.11): messages with \Deleted.
    "DELETED",
];

/// Store errors as Cyrus words them.
/// Which implicit rights `Session::rights_with` adds to the ACL's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Implicit {
    /// The ACL as written (Cyrus's check for APPEND, COPY's target and
    /// SUBSCRIBE).
    None,
    /// An admin's `l` and `a`: every other command.
    Admin,
    /// Those and the owner's `implicit_owner_rights`: MYRIGHTS, GETACL,
    /// LISTRIGHTS, and whether DELETE sees the mailbox.
    AclView,
}

pub fn store_err(e: &StoreError) -> String {
    match e {
        StoreError::NotFound => "NO Mailbox does not exist".into(),
        StoreError::Exists => "NO Mailbox already exists".into(),
        StoreError::OverQuota => "NO [OVERQUOTA] Over quota".into(),
        StoreError::Invalid(_) => "NO Invalid mailbox name".into(),
        StoreError::Murder(t) => format!("NO {t}"),
        _ => "NO [SERVERBUG] System I/O error".into(),
    }
}

fn name_err(e: NameError) -> &'static str {
    match e {
        NameError::Invalid | NameError::TooLong => "NO Invalid mailbox name",
        NameError::Permission => "NO Permission denied",
    }
}

/// `*` and `%` matching over external names (RFC 3501 6.3.8).
pub fn wild_match(pat: &[u8], name: &[u8], sep: u8) -> bool {
    match pat.first() {
        None => name.is_empty(),
        Some(b'*') => (0..=name.len()).any(|i| wild_match(&pat[1..], &name[i..], sep)),
        Some(b'%') => {
            for i in 0..=name.len() {
                if wild_match(&pat[1..], &name[i..], sep) {
                    return true;
                }
                if i < name.len() && name[i] == sep {
                    return false;
                }
            }
            false
        }
        Some(&c) => !name.is_empty() && name[0] == c && wild_match(&pat[1..], &name[1..], sep),
    }
}

impl Session {
    /// A client's name in internal form; after ENABLE UTF8=ACCEPT the
    /// client's names are UTF-8 (stored, as Cyrus does, in mUTF-7).
    pub fn internal(&self, ext: &str) -> Result<String, &'static str> {
        let ns = self.ns.as_ref().ok_or("NO Please login first")?;
        if self.utf8 {
            return ns.to_internal(&crate::store::names::utf8_to_mutf7(ext)).map_err(name_err);
        }
        ns.to_internal(ext).map_err(name_err)
    }

    pub fn external(&self, int: &str) -> Option<String> {
        let e = self.ns.as_ref()?.to_external(int)?;
        if self.utf8 {
            return Some(crate::store::names::mutf7_to_utf8(&e).unwrap_or(e));
        }
        Some(e)
    }

    /// The logged-in user's rights on a mailbox: the ACL's and an
    /// admin's implicit `l` and `a` (an admin reads, writes or deletes
    /// only what the ACL grants, as in Cyrus: `sam user/fred cyrus x`
    /// before `dm`).  Mailboxes kept by a delayed DELETE are for admins
    /// only.
    pub fn rights(&self, e: &MailboxEntry) -> String {
        self.rights_with(e, Implicit::Admin)
    }

    pub fn rights_with(&self, e: &MailboxEntry, implicit: Implicit) -> String {
        let user = self.user.as_deref().unwrap_or("");
        let admin = self.ctx.is_admin(user);
        if !admin && self.ctx.store.cfg.is_deleted(&e.name) {
            return String::new();
        }
        let mut ids: Vec<&str> = vec![user, "anyone"];
        ids.extend(self.groups.iter().map(String::as_str));
        let mut rights = rights_of(&e.acl, &ids);
        // The owner's `implicit_owner_rights` count where the ACL lacks
        // them (a folder an admin moved from another user) only for
        // MYRIGHTS, GETACL and LISTRIGHTS, as in Cyrus 3.6; SETACL and
        // DELETEACL keep them in the ACL itself.
        if implicit == Implicit::AclView && mailbox_owner(&e.name).as_deref() == Some(user) {
            rights.push_str(&self.ctx.implicit_rights);
        }
        if admin && implicit != Implicit::None {
            rights.push_str("la");
        }
        canonical_rights(&rights).unwrap_or(rights)
    }

    /// Looks a mailbox up and checks a right; Cyrus answers "Mailbox does
    /// not exist" when even `l` is missing, so as not to leak names.
    pub async fn lookup_with(&self, ext: &str, right: char) -> Result<MailboxEntry, String> {
        self.lookup_checked(ext, right, Implicit::Admin).await.map_err(|(t, _)| t)
    }

    /// `lookup_with`, with the implicit rights `implicit` says
    /// (`rights_with`); an error says whether the mailbox exists.
    pub async fn lookup_checked(&self, ext: &str, right: char, implicit: Implicit) -> Result<MailboxEntry, (String, bool)> {
        let no = |t: &str| (t.to_string(), false);
        // As Cyrus: a trailing separator is dropped, and a name that
        // cannot be a mailbox is one that does not exist.
        let sep = self.ns.as_ref().map_or('/', |n| n.sep);
        let ext = if ext.len() > 1 { ext.strip_suffix(sep).unwrap_or(ext) } else { ext };
        let int = match self.internal(ext) {
            Err(e) if e == name_err(NameError::Invalid) => return Err(no("NO Mailbox does not exist")),
            Err(e) => return Err(no(e)),
            Ok(i) => i,
        };
        let store = self.ctx.store.clone();
        let e = tokio::task::spawn_blocking(move || store.lookup(&int))
            .await
            .map_err(|_| no("NO [SERVERBUG] System I/O error"))?
            .map_err(|e| no(&store_err(&e)))?
            .ok_or_else(|| no("NO Mailbox does not exist"))?;
        let r = self.rights_with(&e, implicit);
        if !r.contains(right) {
            // Logged, so that an admin can see who tried what.
            self.ctx.log.info(&format!(
                "{} {}: permission denied: right '{right}' on {} (has '{r}')",
                self.host.get().await,
                self.user.as_deref().unwrap_or(""),
                e.name
            ));
            if !r.contains('l') {
                return Err(("NO Mailbox does not exist".into(), true));
            }
            return Err(("NO Permission denied".into(), true));
        }
        Ok(e)
    }

    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.ctx.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|_| "NO [SERVERBUG] System I/O error".to_string())?
            .map_err(|e| {
                if let StoreError::Io(_) | StoreError::Db(_) = e {
                    self_log_store(&e);
                }
                store_err(&e)
            })
    }

    /// Users create under their own hierarchy; the nearest existing
    /// parent's `k` right (or being admin) allows others.
    async fn may_create(&self, int: &str) -> bool {
        let user = self.user.clone().unwrap_or_default();
        if self.ctx.is_admin(&user) {
            return true;
        }
        let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
        if int == inbox || int.starts_with(&format!("{inbox}.")) {
            return true;
        }
        // The nearest existing level above, as Cyrus: the levels between
        // are made with the mailbox.
        let p = int.to_string();
        let store = self.ctx.store.clone();
        let pe = tokio::task::spawn_blocking(move || store.nearest_parent(&p))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        pe.is_some_and(|pe| self.rights(&pe).contains('k'))
    }

    pub async fn create(&mut self, tag: &str, ext: &str, partition: Option<String>, uses: Vec<String>) -> Res {
        let ext = ext.trim_end_matches(self.ns.as_ref().map_or('/', |n| n.sep)).to_string();
        let int = match self.internal(&ext) {
            Ok(i) => i,
            Err(e) => return self.tagged(tag, e).await,
        };
        if !self.may_create(&int).await || self.nochildren_refused(&int).await {
            return self.tagged(tag, "NO Permission denied").await;
        }
        // A folder of a user who has no INBOX (no such user) is not made,
        // even by an admin (Cyrus's mboxlist_create_namecheck).
        if let Some(root) = crate::store::names::user_root(&int).filter(|r| *r != int) {
            if self.blocking(move |s| s.lookup(&root)).await.is_ok_and(|r| r.is_none()) {
                return self.tagged(tag, "NO Permission denied").await;
            }
        }
        if let Some(p) = &partition {
            // Only admins place mailboxes, as in Cyrus.
            if !self.ctx.is_admin(self.user.as_deref().unwrap_or("")) {
                return self.tagged(tag, "NO Permission denied").await;
            }
            if self.ctx.store.cfg.partition_root(p).is_none() {
                return self.tagged(tag, "NO Invalid partition name").await;
            }
        }
        let uses = match special_use_list(&uses, self.ctx.conf.get("specialuse_extra").unwrap_or("")) {
            Ok(u) => u,
            Err(t) => return self.tagged(tag, t).await,
        };
        if self.special_use_conflict(&int, &uses).await {
            return self.tagged(tag, "NO [USEATTR] SPECIAL-USE flag conflict").await;
        }
        let r = self
            .blocking(move |s| {
                let e = s.create_path(&int, partition.as_deref())?;
                if !uses.is_empty() {
                    s.set_special_use(&int, &uses)?;
                }
                Ok(e)
            })
            .await;
        match r {
            Ok(e) => self.tagged(tag, &format!("OK [MAILBOXID ({})] Completed", e.uniqueid)).await,
            // Cyrus's CREATE gives no response code for X-NUM-FOLDERS.
            Err(e) => {
                self.tagged(tag, e.strip_prefix("NO [OVERQUOTA] ").map_or(&e, |_| "NO Over quota"))
                    .await
            }
        }
    }

    pub async fn delete(&mut self, tag: &str, ext: &str) -> Res {
        // An admin needs `x` too, as in Cyrus, but hears of children first.
        // The owner sees their mailbox whatever its ACL, as Cyrus 3.6, but
        // deletes it only with `x` in the ACL.
        let admin = self.ctx.is_admin(self.user.as_deref().unwrap_or(""));
        let e = match self.lookup_checked(ext, if admin { 'l' } else { 'x' }, Implicit::AclView).await {
            Ok(e) => e,
            Err((t, _)) => return self.tagged(tag, &t).await,
        };
        if !admin && !self.rights(&e).contains('x') {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
        if e.name == inbox && !admin {
            return self.tagged(tag, "NO Operation is not supported on mailbox").await;
        }
        // specialuse_protect: a mailbox with one of those uses stays.
        let protect = self.ctx.conf.get("specialuse_protect").unwrap_or("").to_string();
        let name = e.name.clone();
        let looked = name.clone();
        let uses = self.blocking(move |s| s.special_use(&looked)).await.unwrap_or_default();
        if let Some(u) = uses {
            if u.split(' ').any(|x| protect.split_whitespace().any(|p| p.eq_ignore_ascii_case(x))) {
                return self.tagged(tag, "NO SPECIAL-USE flag conflict").await;
            }
        }
        // An admin deleting a user's INBOX deletes the user: every
        // mailbox of theirs, and their subscriptions and seen state.
        let whole_user = e.name == crate::store::names::user_root(&e.name).unwrap_or_default();
        // With delayed delete (Cyrus 3.x's default), any other mailbox
        // with mailboxes under it stays, as the real Cyrus 3.6 answers.
        if !whole_user && self.ctx.store.cfg.delete_mode == crate::store::DeleteMode::Delayed {
            let under = format!("{name}.");
            if self.blocking(move |s| s.list_prefix(&under)).await.is_ok_and(|v| !v.is_empty()) {
                return self.tagged(tag, "NO [HASCHILDREN] Mailbox has inferior hierarchical names").await;
            }
        }
        if admin && !self.rights(&e).contains('x') {
            return self.tagged(tag, "NO Permission denied").await;
        }
        match self
            .blocking(move |s| {
                if whole_user {
                    let mut all: Vec<String> = s
                        .list_prefix(&name)?
                        .into_iter()
                        .map(|c| c.name)
                        .filter(|n| n.len() > name.len() && n.as_bytes()[name.len()] == b'.' && n.starts_with(&name))
                        .collect();
                    all.sort();
                    for c in all.iter().rev() {
                        s.delete(c)?;
                    }
                    s.delete_user_data(&name)?;
                }
                s.delete(&name)
            })
            .await
        {
            Ok(()) => {
                // A deleted user's Sieve scripts go too (Cyrus's
                // user_deletedata), or a new user of that name would run them.
                if whole_user {
                    let dir = self.ctx.conf.path_option("sievedir").unwrap_or_else(|| "/usr/sieve".into());
                    let scripts = crate::store::sievedir::Scripts::of(std::path::Path::new(&dir), &e.name, self.ctx.store.cfg.fulldirhash);
                    if let Err(err) = std::fs::remove_dir_all(scripts.dir()) {
                        if err.kind() != std::io::ErrorKind::NotFound {
                            self.ctx
                                .log
                                .error(&format!("DELETE {}: {}: {err}", e.name, scripts.dir().display()));
                        }
                    }
                }
                // Deleting the selected mailbox expunges its messages from
                // this session's view first, as Cyrus reports it.
                if let Some(sel) = self.sel.take_if(|s| s.name == e.name) {
                    self.deleted_selected = true;
                    for _ in 0..sel.msgs.len() {
                        self.out("* 1 EXPUNGE\r\n").await?;
                    }
                }
                // `delete_unsubscribe`: the deleting user's subscription
                // to it goes too, as Cyrus's (not other users', not its
                // children's), where that user's INBOX is.
                if self.ctx.conf.get_switch("delete_unsubscribe") {
                    let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
                    let gone = e.name.clone();
                    let _ = self
                        .blocking(move |s| match s.lookup(&inbox)? {
                            Some(_) => s.subscribe(&inbox, &gone, false),
                            None => Ok(()),
                        })
                        .await;
                }
                self.tagged(tag, "OK Completed").await
            }
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    pub async fn rename(&mut self, tag: &str, from: &str, to: &str) -> Res {
        // Admins rename what they can see, as in Cyrus.
        let admin = self.ctx.is_admin(self.user.as_deref().unwrap_or(""));
        let e = match self.lookup_with(from, if admin { 'l' } else { 'x' }).await {
            Ok(e) => e,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let to_int = match self.internal(to) {
            Ok(i) => i,
            Err(t) => return self.tagged(tag, t).await,
        };
        if !self.may_create(&to_int).await {
            return self.tagged(tag, "NO Permission denied").await;
        }
        // (Cyrus's words for a user's rename onto the same name.)
        let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
        if to_int == e.name && e.name != inbox && !self.ctx.is_admin(self.user.as_deref().unwrap_or("")) {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let to_probe = to_int.clone();
        if self.blocking(move |s| s.lookup(&to_probe)).await.is_ok_and(|t| t.is_some()) {
            return self.tagged(tag, "NO Mailbox already exists").await;
        }
        if self.nochildren_refused(&to_int).await {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let from_int = e.name.clone();
        if e.name == inbox {
            // RFC 3501 6.3.5: renaming INBOX moves its messages.
            return match self
                .blocking(move |s| {
                    s.create_parents(&to_int, None)?;
                    s.rename_inbox(&from_int, &to_int)
                })
                .await
            {
                Ok(()) => {
                    self.out_bytes(format!("* OK rename {from} {to}\r\n").as_bytes()).await?;
                    self.tagged(tag, "OK Completed").await
                }
                Err(t) => self.tagged(tag, &t).await,
            };
        }
        let (fo, tow) = (crate::store::names::owner_of(&from_int), crate::store::names::owner_of(&to_int));
        if (fo.0 != tow.0 || fo.1 != tow.1 || fo.2 != tow.2) && !admin {
            return self.tagged(tag, "NO Permission denied").await;
        }
        // A user's top (user.a) moves only with allowusermoves, as Cyrus.
        let is_top = |n: &str| {
            let bare = n.split_once('!').map_or(n, |(_, r)| r);
            bare.strip_prefix("user.").is_some_and(|u| !u.contains('.'))
        };
        if (is_top(&from_int) || is_top(&to_int)) && !self.ctx.conf.get_switch("allowusermoves") {
            return self.tagged(tag, "NO Operation is not supported on mailbox").await;
        }
        if self.sel.as_ref().is_some_and(|s| s.name == from_int) {
            self.sel = None;
        }
        let under = format!("{from_int}.");
        let mut children: Vec<String> = self
            .blocking(move |s| s.list_prefix(&under))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        children.sort_by(|a, b| a.replace('.', "\x1f").cmp(&b.replace('.', "\x1f")));
        let (old_top, new_top) = (from_int.clone(), to_int.clone());
        // The levels missing above the new name are made first (not when
        // renaming into itself, which fails).
        let into_itself = to_int.starts_with(&format!("{from_int}."));
        match self
            .blocking(move |s| {
                if !into_itself {
                    s.create_parents(&to_int, None)?;
                }
                s.rename(&from_int, &to_int)
            })
            .await
        {
            Ok(()) => {
                // Cyrus reports each rename before completing: the
                // mailbox, then every one under it.
                let mut lines = format!("* OK rename {from} {to}\r\n");
                for c in &children {
                    let moved = format!("{new_top}{}", &c[old_top.len()..]);
                    if let (Some(a), Some(b)) = (self.external(c), self.external(&moved)) {
                        lines.push_str(&format!("* OK rename {a} {b}\r\n"));
                    }
                }
                self.out_bytes(lines.as_bytes()).await?;
                self.tagged(tag, "OK Completed").await
            }
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    pub async fn subscribe(&mut self, tag: &str, ext: &str, on: bool) -> Res {
        let int = match self.internal(ext) {
            Ok(i) => i,
            Err(t) => return self.tagged(tag, t).await,
        };
        if on && !self.remote_subscriptions() {
            if let Err((t, _)) = self.lookup_checked(ext, 'l', Implicit::None).await {
                // Cyrus names the command in this one.
                let t = t.replace("NO Mailbox does not exist", "NO Subscribe: Mailbox does not exist");
                return self.tagged(tag, &t).await;
            }
        }
        let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
        match self.blocking(move |s| s.subscribe(&inbox, &int, on)).await {
            Ok(()) => self.tagged(tag, "OK Completed").await,
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    /// Whether subscriptions may name mailboxes this server does not
    /// hold: `allowallsubscribe`, or a Murder back end (the front end
    /// sends every SUBSCRIBE and LSUB to the INBOX's back end, and the
    /// user's folders on other back ends are not in this server's list).
    fn remote_subscriptions(&self) -> bool {
        let c = &self.ctx.conf;
        c.get_switch("allowallsubscribe") || c.get("mupdate_server").is_some_and(|v| !v.is_empty() && v != "(null)")
    }

    /// Mailboxes the user may see, as (external name, entry).
    async fn visible(&self) -> Result<Vec<(String, MailboxEntry)>, String> {
        let dom = self.ns.as_ref().map(|n| n.domain.clone()).unwrap_or_default();
        let prefix = if dom.is_empty() { String::new() } else { format!("{dom}!") };
        let user = self.user.clone().unwrap_or_default();
        // An admin may see every mailbox; anyone else only those whose
        // ACL names them, `anyone` or one of their groups.
        let all = if self.ctx.is_admin(&user) {
            self.blocking(move |s| s.list_prefix(&prefix)).await?
        } else {
            let mut ids = vec![user, "anyone".to_string()];
            ids.extend(self.groups.iter().cloned());
            self.blocking(move |s| {
                let v = s.list_naming(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
                Ok(v.into_iter().filter(|e| e.name.starts_with(&prefix)).collect())
            })
            .await?
        };
        Ok(all
            .into_iter()
            .filter(|e| dom.is_empty() != e.name.contains('!'))
            .filter(|e| self.rights(e).contains('l'))
            .filter_map(|e| self.external(&e.name).map(|x| (x, e)))
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    /// LIST, LSUB, XLIST, and Cyrus's SCAN (`scan`: only the mailboxes
    /// the user may read with a message whose text has it; all of them
    /// for an empty text).
    #[allow(clippy::too_many_arguments)]
    pub async fn list(
        &mut self,
        tag: &str,
        reference: &str,
        patterns: &[String],
        select: &[String],
        ret: &[String],
        lsub: bool,
        scan: Option<String>,
    ) -> Res {
        let sep = self.ns.as_ref().map_or('/', |n| n.sep);
        // XLIST (the pre-RFC 6154 Gmail form, still sent by old clients):
        // LIST with the special uses and \Inbox, as Cyrus answers it.
        let xlist = ret.iter().any(|r| r == "XLIST");
        let cmd = if lsub {
            "LSUB"
        } else if xlist {
            "XLIST"
        } else {
            "LIST"
        };
        if patterns.len() == 1 && patterns[0].is_empty() {
            // RFC 3501 6.3.8: the hierarchy delimiter.
            self.out(&format!("* {cmd} (\\Noselect) \"{sep}\" \"\"\r\n")).await?;
            return self.tagged(tag, "OK Completed").await;
        }
        let vis = match self.visible().await {
            Ok(v) => v,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let subscribed_only = select.iter().any(|s| s == "SUBSCRIBED");
        let subs: Vec<String> = if subscribed_only || ret.iter().any(|r| r == "SUBSCRIBED") {
            let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
            self.blocking(move |s| s.subscriptions(&inbox)).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        let names: Vec<&str> = vis.iter().map(|(x, _)| x.as_str()).collect();
        // RFC 6154: with specialusealways (Cyrus 3.6's default) every LIST
        // shows them, and LSUB too (as the real Cyrus 3.6 answers); else
        // RETURN (SPECIAL-USE) or the selection option.
        let special_only = select.iter().any(|s| s == "SPECIAL-USE");
        let show_special = xlist || special_only || ret.iter().any(|r| r == "SPECIAL-USE") || self.ctx.conf.get_switch("specialusealways");
        let uses = if show_special {
            // Those of the mailboxes this LIST can name, not the server's.
            let asked: Vec<String> = vis.iter().map(|(_, e)| e.name.clone()).chain(subs.iter().cloned()).collect();
            self.blocking(move |s| s.special_uses_of(&asked.iter().map(String::as_str).collect::<Vec<_>>()))
                .await
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let mut out: Vec<(String, Vec<&str>)> = Vec::new();
        // RECURSIVEMATCH (with SUBSCRIBED): parents the pattern matches
        // of subscribed mailboxes it does not, with CHILDINFO.
        let recursive = subscribed_only && select.iter().any(|s| s == "RECURSIVEMATCH");
        let mut with_childinfo: Vec<String> = Vec::new();
        // The subscriptions by external name, sorted: LSUB's unsubscribed
        // parents and the children that count are found among these.
        let mut subs_all: Vec<String> = subs.iter().filter_map(|s| self.external(s)).collect();
        subs_all.sort_unstable();
        let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
        let own = |int: &str| !inbox.is_empty() && (int == inbox || int.strip_prefix(inbox.as_str()).is_some_and(|r| r.starts_with('.')));
        for pat in patterns {
            let full = format!("{reference}{pat}");
            let fb = full.as_bytes();
            // Names and their ancestors (ancestors that match only as
            // \Noselect placeholders, as Cyrus shows "Other Users").
            let mut cands: Vec<(String, bool)> = names.iter().map(|n| (n.to_string(), true)).collect();
            for n in &names {
                let mut acc = String::new();
                for (i, comp) in n.split(sep).enumerate() {
                    if i > 0 {
                        acc.push(sep);
                    }
                    acc.push_str(comp);
                    if acc.len() < n.len() && !names.contains(&acc.as_str()) && !cands.iter().any(|(c, _)| *c == acc) {
                        cands.push((acc.clone(), false));
                    }
                }
            }
            if !subs.is_empty() && (lsub || subscribed_only) && self.remote_subscriptions() {
                // Subscriptions to mailboxes held elsewhere in the Murder.
                for int in &subs {
                    if let Some(x) = self.external(int) {
                        if !cands.iter().any(|(c, _)| *c == x) {
                            cands.push((x, true));
                        }
                    }
                }
            } else if subscribed_only && !lsub {
                // RFC 5258 3.1: subscribed mailboxes that do not exist (any
                // more: a DELETE or RENAME keeps the subscription, as
                // Cyrus's default `delete_unsubscribe: no`) are listed
                // \NonExistent.
                for int in &subs {
                    if let Some(x) = self.external(int) {
                        if !cands.iter().any(|(c, _)| *c == x) {
                            cands.push((x, false));
                        }
                    }
                }
            }
            for (n, exists) in cands {
                let m = if n == "INBOX" {
                    wild_match(&fb.to_ascii_uppercase(), b"INBOX", sep as u8) || wild_match(fb, b"INBOX", sep as u8)
                } else {
                    wild_match(fb, n.as_bytes(), sep as u8)
                };
                if !m || out.iter().any(|(x, _)| *x == n) {
                    continue;
                }
                let int = self.internal(&n).unwrap_or_default();
                let is_sub = subs.contains(&int);
                // RFC 3501 6.3.8: levels of hierarchy that are not
                // mailboxes come back for `%`; for `*` Cyrus lists none
                // outside the user's own (the other users' and shared
                // prefixes, another user's root).
                if !exists && fb.contains(&b'*') && !own(&int) && !(subscribed_only && is_sub) {
                    continue;
                }
                let child_prefix = format!("{n}{sep}");
                // The subscribed mailboxes below this one; whether one of
                // them is out of the pattern's reach (LSUB's \Noselect
                // parents, RECURSIVEMATCH's CHILDINFO).
                let from = subs_all.partition_point(|x| x.as_str() < child_prefix.as_str());
                let mut subs_below = subs_all[from..].iter().take_while(|x| x.starts_with(&child_prefix)).peekable();
                let has_sub_below = subs_below.peek().is_some();
                let sub_below_unmatched = subs_below.any(|x| !wild_match(fb, x.as_bytes(), sep as u8));
                if lsub && !is_sub {
                    // RFC 3501 6.3.9: `foo/bar` subscribed and `foo` not, a
                    // `%` that stops at foo returns foo as \Noselect (Cyrus
                    // adds \HasChildren).
                    if sub_below_unmatched {
                        out.push((n, vec!["\\Noselect", "\\HasChildren"]));
                    }
                    continue;
                }
                let childinfo = recursive && sub_below_unmatched;
                if subscribed_only && !is_sub && !childinfo {
                    continue;
                }
                if childinfo {
                    with_childinfo.push(n.clone());
                }
                // Under SUBSCRIBED, subscribed children count as children
                // (as Cyrus answers); in LSUB only those do, and only
                // \HasChildren is said (Cyrus 3.6).
                let has_children =
                    (!lsub && names.iter().any(|x| x.starts_with(&child_prefix))) || ((lsub || subscribed_only) && has_sub_below);
                let mut attrs = Vec::new();
                if !exists {
                    if lsub {
                        continue;
                    }
                    // (Cyrus says \NonExistent in any LIST of RFC 5258's
                    // extended syntax, \Noselect in a plain one.)
                    let extended = subscribed_only || ret.iter().any(|r| r == "EXTENDED");
                    attrs.push(if extended { "\\NonExistent" } else { "\\Noselect" });
                }
                if is_sub && (ret.iter().any(|r| r == "SUBSCRIBED") || (subscribed_only && !lsub)) {
                    attrs.push("\\Subscribed");
                }
                if !lsub {
                    attrs.push(if has_children { "\\HasChildren" } else { "\\HasNoChildren" });
                } else if has_children {
                    attrs.push("\\HasChildren");
                }
                let special = uses.get(&int).map(String::as_str).unwrap_or("");
                if special_only && special.is_empty() {
                    continue;
                }
                attrs.extend(special.split(' ').filter(|u| !u.is_empty()));
                if xlist && n == "INBOX" {
                    attrs.push("\\Inbox");
                }
                out.push((n, attrs));
            }
        }
        out.sort_by(|a, b| crate::store::names::list_order(&a.0, &b.0, self.ns.as_ref()));
        // LIST-STATUS (RFC 5819): RETURN (STATUS (items)).
        let status_items: Option<Vec<String>> = ret.iter().find_map(|r| {
            r.strip_prefix("STATUS").map(|x| {
                x.trim()
                    .trim_matches(|c| c == '(' || c == ')')
                    .split_whitespace()
                    .map(String::from)
                    .collect()
            })
        });
        if let Some(bad) = status_items.iter().flatten().find(|i| !STATUS_ITEMS.contains(&i.as_str())) {
            return self
                .tagged(tag, &format!("BAD Invalid Status attributes {}", bad.to_lowercase()))
                .await;
        }
        // LIST-METADATA (RFC 9590): RETURN (METADATA (entries)), each
        // option's entries together. Cyrus's answers: an empty list is an
        // error; an entry not under /shared or /private, or a METADATA
        // option given options of its own, gets no METADATA responses.
        if ret.iter().any(|r| r.starts_with('(')) {
            return self.tagged(tag, "BAD Invalid syntax in List command").await;
        }
        let mut meta: Option<Vec<String>> = None;
        for r in ret {
            if let Some(x) = r.strip_prefix("METADATA") {
                let list = meta.get_or_insert_with(Vec::new);
                let inner = x.trim().trim_start_matches('(').trim_end_matches(')');
                let before = list.len();
                list.extend(inner.split_whitespace().map(|e| e.trim_matches('"').to_ascii_lowercase()));
                if list.len() == before {
                    return self.tagged(tag, "BAD Missing metadata entry").await;
                }
            }
        }
        let meta = meta.filter(|m| m.iter().all(|e| meta_entry_ok(e)));
        let lines: Vec<(Vec<u8>, Option<(String, MailboxEntry)>)> = out
            .iter()
            .map(|(n, attrs)| {
                let mut line = format!("* {cmd} ({}) \"{sep}\" ", attrs.join(" ")).into_bytes();
                astring(&mut line, n.as_bytes());
                if with_childinfo.contains(n) {
                    line.extend_from_slice(b" (CHILDINFO (\"SUBSCRIBED\"))");
                }
                line.extend_from_slice(b"\r\n");
                let entry = vis.iter().find(|(x, _)| x == n).map(|(x, e)| (x.clone(), e.clone()));
                (line, entry.filter(|_| !attrs.contains(&"\\Noselect")))
            })
            .collect();
        let n = out.len();
        drop(out);
        let myrights = ret.iter().any(|r| r == "MYRIGHTS");
        for (line, entry) in lines {
            if let Some(text) = &scan {
                let Some((_, e)) = entry.as_ref() else { continue };
                if !self.rights(e).contains('r') || !self.scan_hit(e, text).await {
                    continue;
                }
            }
            self.out_bytes(&line).await?;
            let myrights_entry = entry.clone();
            if let (Some((ext, e)), Some(items)) = (entry, &status_items) {
                if self.rights(&e).contains('r') {
                    match self.status_line(&e, &ext, items).await {
                        Ok(l) => self.out_bytes(&l).await?,
                        Err(t) if t.starts_with("BAD") => return self.tagged(tag, &t).await,
                        Err(_) => {}
                    }
                }
            }
            // LIST-MYRIGHTS (RFC 8440): RETURN (MYRIGHTS).
            if let (true, Some((ext, e))) = (myrights, myrights_entry.as_ref()) {
                let mut l = b"* MYRIGHTS ".to_vec();
                astring(&mut l, ext.as_bytes());
                l.push(b' ');
                astring(&mut l, self.rights(e).as_bytes());
                l.extend_from_slice(b"\r\n");
                self.out_bytes(&l).await?;
            }
            if let (Some(entries), Some((ext, e))) = (&meta, myrights_entry) {
                if let Ok(values) = self.metadata_values(Some(e), entries, "0").await {
                    if let (Some(l), _) = metadata_line(&ext, &values, None) {
                        self.out_bytes(&l).await?;
                    }
                }
            }
        }
        self.tagged(tag, &format!("OK Completed (0.000 secs {} calls)", n + 1)).await
    }

    /// Whether a message of `e` has `text` (SEARCH TEXT's matching).
    async fn scan_hit(&mut self, e: &MailboxEntry, text: &str) -> bool {
        if text.is_empty() {
            return true;
        }
        let q = super::search::HitQuery {
            name: e.name.clone(),
            partition: e.partition.clone(),
            uids: Vec::new(),
            recent_above: u32::MAX,
            saved: Vec::new(),
            seen: None,
            user: self.user.clone().unwrap_or_default(),
        };
        let key = crate::proto::imap::command::SearchKey::Text(text.to_string());
        self.blocking(move |s| {
            let mut q = q;
            q.uids = s.index(&q.name)?.1.into_iter().map(|r| r.0).collect();
            Ok(!q.hits(s, &key, true)?.1.is_empty())
        })
        .await
        .unwrap_or(false)
    }

    pub async fn status(&mut self, tag: &str, ext: &str, items: &[String]) -> Res {
        let e = match self.lookup_with(ext, 'r').await {
            Ok(e) => e,
            Err(t) => return self.tagged(tag, &t).await,
        };
        match self.status_line(&e, ext, items).await {
            Ok(line) => {
                self.out_bytes(&line).await?;
                self.tagged(tag, "OK Completed").await
            }
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    /// `* STATUS name (...)` for a mailbox (STATUS, LIST-STATUS).
    async fn status_line(&self, e: &MailboxEntry, ext: &str, items: &[String]) -> Result<Vec<u8>, String> {
        let name = e.name.clone();
        let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
        let reader = (!super::selected::owns(&inbox, &e.name) && items.iter().any(|i| i == "UNSEEN")).then(|| (inbox, e.uniqueid.clone()));
        let want_deleted = items.iter().any(|i| i == "DELETED");
        let (st, unseen, recent, deleted) = self
            .blocking(move |s| {
                let (st, unseen, recent) = s.counts(&name)?;
                // A reader's UNSEEN counts against their own seen set.
                let unseen = match reader {
                    Some((who, id)) => s.unseen_for(&name, &s.seen_get(&who, &id)?)?,
                    None => unseen,
                };
                let deleted = if want_deleted {
                    s.index(&name)?.1.iter().filter(|r| r.1 & crate::store::FLAG_DELETED != 0).count()
                } else {
                    0
                };
                Ok((st, unseen, recent, deleted))
            })
            .await?;
        // The selected mailbox's \Recent are this session's, as Cyrus
        // answers from the open index (the database has already passed
        // them to this session).
        let recent = match self.sel.as_ref().filter(|s| s.name == e.name) {
            Some(sel) => sel.msgs.iter().filter(|m| m.uid > sel.recent_above).count() as u32,
            None => recent,
        };
        if let Some(bad) = items.iter().find(|i| !STATUS_ITEMS.contains(&i.as_str())) {
            return Err(format!("BAD Invalid Status attributes {}", bad.to_lowercase()));
        }
        // In Cyrus's fixed order, whatever the order asked.
        let mut parts = Vec::new();
        for i in STATUS_ITEMS.iter().filter(|i| items.iter().any(|x| x == *i)) {
            match *i {
                "MESSAGES" => parts.push(format!("MESSAGES {}", st.exists)),
                "RECENT" if !self.rev2 => parts.push(format!("RECENT {recent}")),
                "RECENT" => {}
                "UIDNEXT" => parts.push(format!("UIDNEXT {}", st.uidnext)),
                "UIDVALIDITY" => parts.push(format!("UIDVALIDITY {}", st.uidvalidity)),
                "UNSEEN" => parts.push(format!("UNSEEN {unseen}")),
                "CREATEDMODSEQ" => parts.push(format!("CREATEDMODSEQ {}", st.createdmodseq)),
                "HIGHESTMODSEQ" => parts.push(format!("HIGHESTMODSEQ {}", st.highestmodseq)),
                "SIZE" => parts.push(format!("SIZE {}", st.size)),
                "DELETED" => parts.push(format!("DELETED {deleted}")),
                _ => parts.push(format!("MAILBOXID ({})", st.uniqueid)),
            }
        }
        let mut line = b"* STATUS ".to_vec();
        astring(&mut line, ext.as_bytes());
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        Ok(line)
    }

    pub async fn append(&mut self, tag: &str, ext: &str, msgs: Vec<AppendMsg>) -> Res {
        let e = match self.lookup_checked(ext, 'i', Implicit::None).await {
            Ok(e) => e,
            Err((t, false)) if t == "NO Mailbox does not exist" => return self.tagged(tag, "NO [TRYCREATE] Mailbox does not exist").await,
            Err((t, _)) => return self.tagged(tag, &t).await,
        };
        // CATENATE (RFC 4469): the message put together first.
        let mut msgs = msgs;
        for m in &mut msgs {
            if !m.catenate.is_empty() {
                match self.catenate(&m.catenate).await {
                    Ok(d) => m.data = d,
                    Err(t) => return self.tagged(tag, &t).await,
                }
            }
        }
        // Cyrus refuses bare newlines and NULs in appended messages.
        for m in &msgs {
            if has_bare_newline(&m.data) {
                return self.tagged(tag, "NO Message contains bare newlines").await;
            }
            if m.data.contains(&0) {
                return self.tagged(tag, "NO Message contains NUL characters").await;
            }
            // A CATENATE's message is taken as its parts make it, as
            // Cyrus does (a part may well end inside a header).
            if m.catenate.is_empty() {
                if let Err(t) = crate::mail::mime::strict_check(&m.data) {
                    return self.tagged(tag, &format!("NO {t}")).await;
                }
            }
        }
        if self.ctx.conf.get_switch("reject8bit") {
            if msgs
                .iter()
                .any(|m| m.data[..crate::mail::mime::header_end(&m.data).0].iter().any(|&c| c >= 0x80))
            {
                return self.tagged(tag, "NO Message contains non-ASCII characters in headers").await;
            }
        } else if self.ctx.conf.get_switch("munge8bit") {
            for m in &mut msgs {
                crate::mail::mime::munge_8bit_header(&mut m.data);
            }
        }
        // ANNOTATION (RFC 5257): checked before anything is written.
        let mut annotations = Vec::new();
        if msgs.iter().any(|m| !m.annotations.is_empty()) {
            let rights = self.rights(&e);
            let user = self.user.clone().unwrap_or_default();
            for m in &msgs {
                match super::annotate::writes(&m.annotations, &user, &rights) {
                    Ok(w) => annotations.push(w),
                    Err(super::annotate::Refused::Permission) => return self.tagged(tag, "NO Permission denied").await,
                    Err(super::annotate::Refused::TooBig) => {
                        return self.tagged(tag, "NO [ANNOTATE TOOBIG] Annotation value too large").await
                    }
                }
            }
        }
        let name = e.name.clone();
        let partition = e.partition.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let res = self
            .blocking(move |s| {
                let datas: Vec<&[u8]> = msgs.iter().map(|m| m.data.as_slice()).collect();
                let staged = s.stage_many(&partition, &datas)?;
                let mut cached = Vec::new();
                for m in &msgs {
                    let (env, bs, body) = render::cache_items(&m.data);
                    cached.push(Cached {
                        envelope: env,
                        bodystructure: bs,
                        body,
                    });
                }
                let news: Vec<NewMessage> = msgs
                    .iter()
                    .zip(staged.iter())
                    .zip(cached.iter())
                    .map(|((m, st), c)| {
                        let (flags, kw) = super::selected::parse_flags(&m.flags);
                        let (t, tz) = m.date.unwrap_or((now, 0));
                        NewMessage {
                            staged: st,
                            flags,
                            keywords: kw.join(" "),
                            internaldate: t,
                            tz,
                            cached: c,
                        }
                    })
                    .collect();
                let (uv, uids) = s.append(&name, &news, false)?;
                // The annotations right after their messages (a crash in
                // between leaves the messages without them).
                for (uid, w) in uids.iter().zip(&annotations) {
                    if !w.is_empty() {
                        s.store_msg_annotations(&name, &[*uid], w, None)?;
                    }
                }
                Ok((uv, uids))
            })
            .await;
        match res {
            Ok((uv, uids)) => {
                let set = uid_set(&uids);
                if self.sel.as_ref().is_some_and(|s| s.name == e.name) {
                    self.sync(false).await?;
                }
                self.tagged(tag, &format!("OK [APPENDUID {uv} {set}] Completed")).await
            }
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    pub async fn getacl(&mut self, tag: &str, ext: &str) -> Res {
        let e = match self.lookup_checked(ext, 'a', Implicit::AclView).await.map_err(|(t, _)| t) {
            Ok(e) => e,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let mut line = b"* ACL ".to_vec();
        astring(&mut line, ext.as_bytes());
        let mut it = e.acl.split('\t');
        while let (Some(id), Some(r)) = (it.next(), it.next()) {
            line.push(b' ');
            astring(&mut line, id.as_bytes());
            line.push(b' ');
            astring(&mut line, r.as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        self.out_bytes(&line).await?;
        self.tagged(tag, "OK Completed").await
    }

    /// SETACL / DELETEACL (RFC 4314): needs `a`; `+`/`-` prefixes add to
    /// or take from the identifier's rights; empty rights remove it.
    /// `allowsetacl: no` disallows both at all; `anyoneuseracl: no`
    /// leaves `anyone` to admins.
    pub async fn setacl(&mut self, tag: &str, ext: &str, id: &str, rights: Option<&str>) -> Res {
        if !self.ctx.conf.get_switch("allowsetacl") {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let e = match self.lookup_with(ext, 'a').await {
            Ok(e) => e,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let admin = self.user.as_deref().is_some_and(|u| self.ctx.is_admin(u));
        if !admin && id.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("anyone")) && !self.ctx.conf.get_switch("anyoneuseracl") {
            return self.tagged(tag, "NO Permission denied").await;
        }
        if id.is_empty() || id.contains(['\t', '\r', '\n', '\0']) || id == "-" {
            return self.tagged(tag, "NO Invalid identifier").await;
        }
        // `group:` names a group of the directory (auth_mech: pts) or of
        // the system (auth_unix): it must exist.
        if let Some(g) = id.trim_start_matches('-').strip_prefix("group:") {
            match self.ctx.group_exists(g).await {
                Ok(true) => {}
                Ok(false) => return self.tagged(tag, "NO Invalid identifier").await,
                Err(_) => return self.tagged(tag, "NO [UNAVAILABLE] Group lookup failed, try again later").await,
            }
        }
        let id = if id.eq_ignore_ascii_case("anyone") {
            "anyone".to_string()
        } else if id.eq_ignore_ascii_case("-anyone") {
            "-anyone".to_string()
        } else if self.ctx.pts.is_some() && id.trim_start_matches('-').starts_with("group:") {
            // Directory group names are compared lower-cased (ptloader's).
            id.to_lowercase()
        } else {
            id.to_string()
        };
        let new = match rights {
            None => None,
            Some(r) => {
                let (mode, letters) = match r.as_bytes().first() {
                    Some(b'+') => ('+', &r[1..]),
                    Some(b'-') => ('-', &r[1..]),
                    _ => ('=', r),
                };
                let given = match canonical_rights(letters) {
                    Ok(g) => g,
                    Err(c) => return self.tagged(tag, &format!("BAD The {c} right is not supported")).await,
                };
                let old = acl_entry(&e.acl, &id).unwrap_or("");
                let merged = match mode {
                    '+' => canonical_rights(&format!("{old}{given}")).unwrap_or_default(),
                    '-' => {
                        let keep: String = old.chars().filter(|c| !given.contains(*c)).collect();
                        canonical_rights(&keep).unwrap_or_default()
                    }
                    _ => given,
                };
                (!merged.is_empty()).then_some(merged)
            }
        };
        // The owner's own entry on their mailboxes keeps the implicit
        // rights: a user may not take them away (Cyrus's "Permission
        // denied"); an admin's change keeps them.
        let new = if mailbox_owner(&e.name).as_deref() == Some(id.as_str()) {
            let implicit = &self.ctx.implicit_rights;
            let has = new.unwrap_or_default();
            if !admin && !implicit.chars().all(|c| has.contains(c)) {
                return self.tagged(tag, "NO Permission denied").await;
            }
            canonical_rights(&format!("{has}{implicit}")).ok()
        } else {
            new
        };
        let acl = acl_with(&e.acl, &id, new.as_deref());
        let name = e.name.clone();
        match self.blocking(move |s| s.set_acl(&name, &acl)).await {
            Ok(()) => self.tagged(tag, "OK Completed").await,
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    /// Cyrus's RECONSTRUCT (cyradm's `reconstruct`): rebuilds the index
    /// of a mailbox (and its children with RECURSIVE) from its message
    /// files; admins only.
    pub async fn reconstruct(&mut self, tag: &str, ext: &str, recursive: bool) -> Res {
        if !self.ctx.is_admin(self.user.as_deref().unwrap_or("")) {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let e = match self.lookup_with(ext, 'a').await {
            Ok(e) => e,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let name = e.name.clone();
        let res = self
            .blocking(move |s| {
                let mut names = vec![name.clone()];
                if recursive {
                    let child = format!("{name}.");
                    names.extend(s.list_prefix(&child)?.into_iter().map(|e| e.name));
                }
                let parse = |d: &[u8]| {
                    let (envelope, bodystructure, body) = crate::proto::imap::render::cache_items(d);
                    crate::store::Cached {
                        envelope,
                        bodystructure,
                        body,
                    }
                };
                let mut repaired = Vec::new();
                for n in names {
                    for r in s.reconstruct(&n, false, &parse)? {
                        if r.is_repair() {
                            repaired.push(format!("{n}: {r}"));
                        }
                    }
                }
                Ok(repaired)
            })
            .await;
        match res {
            Ok(repaired) => {
                for r in repaired {
                    self.ctx.log.warning(&format!("reconstruct: {r}"));
                }
                self.tagged(tag, "OK Completed").await
            }
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    /// LISTRIGHTS: the rights always granted, then each optional one.
    pub async fn listrights(&mut self, tag: &str, ext: &str, id: &str) -> Res {
        let e = match self.lookup_checked(ext, 'a', Implicit::AclView).await.map_err(|(t, _)| t) {
            Ok(e) => e,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let (owner, _, is_user) = crate::store::names::owner_of(&e.name);
        let is_inbox = is_user && e.name.rsplit('!').next() == Some(format!("user.{owner}").as_str());
        // The owner always holds `implicit_owner_rights` (l, k, x, a and
        // n), as Cyrus; an admin's implicit rights are not listed.  And
        // anyone else may post to a user's INBOX (Cyrus lists p as
        // granted).
        let implicit = if mailbox_owner(&e.name).as_deref() == Some(id) {
            self.ctx.implicit_rights.clone()
        } else if is_inbox {
            "p".into()
        } else {
            String::new()
        };
        let all = "lrswipkxtecdan0123456789";
        let mut line = b"* LISTRIGHTS ".to_vec();
        astring(&mut line, ext.as_bytes());
        line.push(b' ');
        astring(&mut line, id.as_bytes());
        line.push(b' ');
        if implicit.is_empty() {
            line.extend_from_slice(b"\"\"");
        } else {
            line.extend_from_slice(implicit.as_bytes());
        }
        for c in all.chars().filter(|c| !implicit.contains(*c)) {
            line.push(b' ');
            line.push(c as u8);
        }
        line.extend_from_slice(b"\r\n");
        self.out_bytes(&line).await?;
        self.tagged(tag, "OK Completed").await
    }

    pub async fn myrights(&mut self, tag: &str, ext: &str) -> Res {
        let e = match self.lookup_checked(ext, 'l', Implicit::AclView).await {
            Ok(e) => e,
            Err((t, _)) => return self.tagged(tag, &t).await,
        };
        let r = self.rights_with(&e, Implicit::AclView);
        let mut line = b"* MYRIGHTS ".to_vec();
        astring(&mut line, ext.as_bytes());
        line.push(b' ');
        astring(&mut line, r.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.out_bytes(&line).await?;
        self.tagged(tag, "OK Completed").await
    }
}

fn self_log_store(e: &StoreError) {
    // Store failures that are not the client's fault go to stderr too, so
    // a daemon run by hand shows them.
    eprintln!("IOERROR: {e}");
}

/// An atom when possible, else a quoted string or literal.
pub fn astring(out: &mut Vec<u8>, s: &[u8]) {
    let atom = !s.is_empty() && s.iter().all(|&c| c > b' ' && c < 0x7f && !b"(){%*\"\\]".contains(&c));
    if atom && !s.eq_ignore_ascii_case(b"NIL") {
        out.extend_from_slice(s);
    } else {
        render::string(out, s);
    }
}

pub fn has_bare_newline(d: &[u8]) -> bool {
    d.iter()
        .enumerate()
        .any(|(i, &c)| (c == b'\n' && (i == 0 || d[i - 1] != b'\r')) || (c == b'\r' && d.get(i + 1) != Some(&b'\n')))
}

/// `1:3,5` from a sorted list of UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let st = uids[i];
        let mut en = st;
        while i + 1 < uids.len() && uids[i + 1] == en + 1 {
            i += 1;
            en = uids[i];
        }
        out.push(if st == en { st.to_string() } else { format!("{st}:{en}") });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wild_match(b"*", b"a/b", b'/'));
        assert!(wild_match(b"%", b"a", b'/'));
        assert!(!wild_match(b"%", b"a/b", b'/'));
        assert!(wild_match(b"a/%", b"a/b", b'/'));
        assert!(wild_match(b"Other Users/*", b"Other Users/bob/x", b'/'));
    }

    #[test]
    fn acl_rights() {
        let acl = "fred\tlrswipkxtecdan\tanyone\tlrs\t-anyone\ts\t";
        assert_eq!(rights_of(acl, &["fred", "anyone"]), "lrwipkxtecdan");
        assert_eq!(rights_of(acl, &["bob", "anyone"]), "lr");
    }

    #[test]
    fn sets_and_strings() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        let mut o = Vec::new();
        astring(&mut o, b"Other Users");
        assert_eq!(o, b"\"Other Users\"");
        assert!(has_bare_newline(b"a\nb"));
        assert!(!has_bare_newline(b"a\r\nb\r\n"));
    }
}
