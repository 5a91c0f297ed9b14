//! The IMAP4rev1 service (SPEC §9): the sans-IO core
//! (`proto::imap::server`), driven by `net::driver`, joined to the login
//! glue shared with SMTP and POP3 (`auth::login`) and the mailbox store.
//! The core answers what needs no store; every other command comes here
//! ([`ImapSession`]): folders (SELECT, CREATE, LIST, STATUS, APPEND, ...)
//! and, on the selected folder's [`view::View`], FETCH, SEARCH, STORE,
//! COPY, MOVE and EXPUNGE. FETCH items are rendered and SEARCH keys
//! evaluated by [`fetch`] and [`search`], pure functions over a folder's
//! listing and a [`fetch::Source`] of bytes and cached parses; [`flags`]
//! converts between the store's flags and the protocol's.
//!
//! Store calls block, so they run in `spawn_blocking`. A FETCH streams:
//! it writes until the core's output is at its high-water mark, then
//! returns [`Next::Continue`] so the driver sends that before the rest is
//! made. What other sessions and deliveries change reaches a session
//! through the store's change notifications: at the end of each command
//! (EXPUNGE only after commands other than FETCH, STORE and SEARCH, RFC
//! 3501 §7.4.1), and at once while IDLE ([`Session::notified`]).

pub mod fetch;
pub mod flags;
pub mod list;
pub mod search;
pub mod view;

use crate::auth::Gate;
use crate::config::{TlsMode, VirtualServer};
use crate::mailbox::{
    blocking, Change, ChangeKind, Flag as StoreFlag, FlagChange, MailboxError, MailboxStore, MessageInfo,
};
use crate::net::{ConnInfo, Next, Service, Session, SessionEnd};
use crate::proto::imap::command::{Command, CommandKind, FetchAttr, SearchKey, StoreMode};
use crate::proto::imap::reader::Limits;
use crate::proto::imap::response::{self, Code, Data, FetchItem, Status};
use crate::proto::imap::server::{replies, Event, ServerSession, Settings};
use crate::proto::imap::types::{Flag, Mailbox, SequenceSet, StatusItem};
use crate::proto::sasl::Credentials;
use crate::proto::session::{AuthEvent, LineCore};
use crate::service::Conn;
use crate::tls::TlsInfo;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::TryRecvError};
use view::{RecentBook, View};

/// After this many `BAD`s a session is closed.
const MAX_ERRORS: u32 = 20;
/// RFC 3501 §5.4: an authenticated (or IDLE) session may be quiet this long.
const AUTHENTICATED_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Literals of commands other than APPEND (SPEC §9).
const MAX_LITERAL: u64 = 64 * 1024;
/// The most output buffer a session keeps between commands.
const IDLE_BUFFER: usize = 4096;
/// Messages whose FETCH needs the store are made this many at a time.
const FETCH_BATCH: usize = 64;

pub struct ImapService {
    gate: Gate,
    mailboxes: Arc<MailboxStore>,
    vs: Arc<VirtualServer>,
    settings: Settings,
    recent: RecentBook,
}

impl ImapService {
    pub fn new(hostname: &str, gate: Gate, mailboxes: Arc<MailboxStore>, vs: Arc<VirtualServer>) -> ImapService {
        let limits =
            Limits { max_literal: MAX_LITERAL, max_append_literal: vs.max_message_size.0, ..Limits::default() };
        let settings = Settings {
            hostname: hostname.to_string(),
            starttls: vs.tls == TlsMode::Starttls,
            require_tls: vs.require_tls,
            allow_plaintext_auth: vs.allow_plaintext_auth,
            max_errors: MAX_ERRORS,
            limits,
        };
        ImapService { gate, mailboxes, vs, settings, recent: RecentBook::default() }
    }
}

impl Service for ImapService {
    type Session = ImapSession;

    fn session(&self, conn: &ConnInfo) -> ImapSession {
        ImapSession {
            store: self.mailboxes.clone(),
            core: ServerSession::new(self.settings.clone(), conn.implicit_tls),
            conn: Conn::new(&self.vs, conn, &self.gate),
            recent: self.recent.clone(),
            changes: None,
            dirty: false,
            view: None,
            job: None,
            fetched: 0,
            appended: 0,
        }
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"* BYE Too many connections, try again later\r\n"
    }
}

/// A FETCH part way through: what is left to write.
struct FetchJob {
    uid: bool,
    attrs: Arc<Vec<FetchAttr>>,
    /// View indices still to write, in order.
    indices: Vec<usize>,
    next: usize,
    modseq: bool,
}

pub struct ImapSession {
    store: Arc<MailboxStore>,
    core: ServerSession,
    conn: Conn,
    recent: RecentBook,
    /// The user's change notifications, from login on.
    changes: Option<broadcast::Receiver<Change>>,
    /// A change to the selected folder is not yet looked at.
    dirty: bool,
    view: Option<View>,
    job: Option<FetchJob>,
    fetched: u64,
    appended: u64,
}

/// The response code and words for a store failure.
fn refusal(e: &MailboxError) -> (Option<Code>, &'static str) {
    match e {
        MailboxError::NoSuchFolder { .. } => (Some(Code::Nonexistent), "No such mailbox"),
        MailboxError::FolderExists { .. } => (Some(Code::AlreadyExists), "The mailbox already exists"),
        MailboxError::InvalidFolderName(..) => (Some(Code::Cannot), "Invalid mailbox name"),
        MailboxError::NoSuchMessage { .. } => (Some(Code::Expunged), "Some messages were expunged"),
        MailboxError::UidsExhausted(_) => (Some(Code::Limit), "The mailbox has used up its UIDs"),
        _ => (Some(Code::ServerBug), "Internal error, try again later"),
    }
}

fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq { .. } => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(ks) => ks.iter().any(uses_modseq),
        _ => false,
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The server's offset from UTC in seconds, for SEARCH dates. Postern runs
/// its dates in UTC (as its `Received:` lines do).
const TZ_OFFSET: i32 = 0;

impl ImapSession {
    fn user(&self) -> String {
        self.core.user().unwrap_or("-").to_string()
    }

    fn tagged(&mut self, status: Status, code: Option<Code>, text: &str) {
        let tag = self.core.tag().to_string();
        response::tagged(self.core.out(), &tag, status, code.as_ref(), text);
        if status == Status::Bad {
            self.core.count_error();
        }
    }

    fn failed(&mut self, what: &str, e: &MailboxError) {
        let (code, text) = refusal(e);
        if code == Some(Code::ServerBug) {
            tracing::error!(server = %self.conn.vs.name, user = %self.user(), "{what}: {e}");
        }
        self.tagged(Status::No, code, text);
    }

    fn on_auth(&mut self) {
        let slot = self.conn.login.slot("AUTHENTICATE", replies::AUTH_THROTTLED);
        self.core.auth_begin(slot);
    }

    async fn log_in(&mut self, creds: Credentials, method: &'static str) {
        let user = match self.conn.login.verify(creds).await {
            Ok(user) => user,
            Err(refused) => {
                self.core.login_done(Err(refused.reply(replies::AUTH_THROTTLED, replies::AUTH_FAILED)));
                return;
            }
        };
        // the default folders exist from the first login on
        let store = self.store.clone();
        let u = user.clone();
        let ready = blocking(move || store.ensure_user(&u)).await;
        match ready.and_then(|()| self.store.subscribe(&user)) {
            Ok(rx) => {
                tracing::info!(server = %self.conn.vs.name, peer = %self.conn.peer, user = %user, method, "logged in");
                self.changes = Some(rx);
                self.core.login_done(Ok(user));
            }
            Err(e) => {
                tracing::error!(server = %self.conn.vs.name, user = %user, "cannot open the mailbox: {e}");
                self.core.login_done(Err(replies::LOGIN_UNAVAILABLE));
            }
        }
    }

    /// Take in the notifications so far: whether the selected folder changed.
    fn poll_changes(&mut self) {
        self.absorb(None);
    }

    /// Take in the notifications so far, where `own` is the change this
    /// session just made to the selected folder (the store announces it
    /// before the call returns): its own notice is skipped, so that a STORE
    /// or EXPUNGE does not cost a re-read of the whole folder.
    fn absorb(&mut self, mut own: Option<ChangeKind>) {
        let Some(rx) = self.changes.as_mut() else { return };
        loop {
            match rx.try_recv() {
                Ok(c) => {
                    if !self.view.as_ref().is_some_and(|v| concerns(v, &c)) {
                        continue;
                    }
                    if own.as_ref().is_some_and(|o| is_own(o, &c.kind)) {
                        own = None;
                        continue;
                    }
                    self.dirty = true;
                }
                Err(TryRecvError::Lagged(_)) => self.dirty = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// Tell the client what changed in the selected folder (RFC 3501 §7.4.1).
    async fn report(&mut self, expunges_allowed: bool) {
        self.poll_changes();
        let Some(v) = self.view.as_ref() else { return };
        if !self.dirty {
            if expunges_allowed {
                let out = self.core.out();
                if let Some(v) = self.view.as_mut() {
                    v.refresh_expunges(out);
                }
            }
            return;
        }
        self.dirty = false;
        let (store, user, folder) = (self.store.clone(), self.user(), v.folder.clone());
        match blocking(move || store.listing(&user, &folder)).await {
            Ok(listing) => {
                let condstore = self.core.condstore();
                if let Some(v) = self.view.as_mut() {
                    v.refresh(listing, expunges_allowed, condstore, self.core.out());
                }
            }
            Err(e) => {
                tracing::info!(server = %self.conn.vs.name, user = %self.user(), "cannot re-read the selected mailbox: {e}")
            }
        }
    }

    async fn finish(&mut self, expunges_allowed: bool, text: &str) {
        self.report(expunges_allowed).await;
        self.tagged(Status::Ok, None, text);
        self.core.done();
    }

    async fn command(&mut self, c: Command) {
        let user = self.user();
        let store = self.store.clone();
        use CommandKind as K;
        match c.kind {
            K::Noop => self.finish(true, "NOOP completed").await,
            K::Check => self.finish(true, "CHECK completed").await,
            K::Select { mailbox, condstore } => self.select(mailbox, condstore, false).await,
            K::Examine { mailbox, condstore } => self.select(mailbox, condstore, true).await,
            K::Create(mb) => {
                let name = mb.as_str().to_string();
                let r = blocking(move || create_with_parents(&store, &user, &name)).await;
                self.simple(r, "CREATE").await
            }
            K::Delete(mb) => {
                if mb.is_inbox() {
                    self.tagged(Status::No, Some(Code::Cannot), "INBOX cannot be deleted");
                    return self.core.done();
                }
                let name = mb.as_str().to_string();
                let r = blocking(move || store.delete_folder(&user, &name)).await;
                self.simple(r, "DELETE").await
            }
            K::Rename { from, to } => {
                let (f, t) = (from.as_str().to_string(), to.as_str().to_string());
                let inbox = from.is_inbox();
                let r =
                    blocking(
                        move || if inbox { store.rename_inbox(&user, &t) } else { store.rename_folder(&user, &f, &t) },
                    )
                    .await;
                self.simple(r, "RENAME").await
            }
            K::Subscribe(mb) => {
                let name = mb.as_str().to_string();
                let r = blocking(move || store.set_subscribed(&user, &name, true)).await;
                self.simple(r, "SUBSCRIBE").await
            }
            K::Unsubscribe(mb) => {
                let name = mb.as_str().to_string();
                let r = blocking(move || store.set_subscribed(&user, &name, false)).await;
                self.simple(r, "UNSUBSCRIBE").await
            }
            K::List { selection, reference, patterns, returns } => {
                let subscribed_only = selection.subscribed;
                let show_subscribed = returns.subscribed || subscribed_only;
                self.list(reference, patterns, false, subscribed_only, show_subscribed, selection.special_use).await
            }
            K::Lsub { reference, pattern } => self.list(reference, vec![pattern], true, true, false, false).await,
            K::Status { mailbox, items } => self.status(mailbox, items).await,
            K::Append { mailbox, flags, date, message } => {
                let name = mailbox.as_str().to_string();
                let flags = match flags::to_store(&flags) {
                    Ok(f) => f,
                    Err(e) => {
                        self.tagged(Status::Bad, None, &e.to_string());
                        return self.core.done();
                    }
                };
                let date = date.map_or_else(now_unix, |d| d.unix_timestamp().max(0) as u64);
                let r = blocking(move || store.append(&user, &name, &message, date, &flags)).await;
                match r {
                    Ok(a) => {
                        self.appended += 1;
                        self.report(true).await;
                        let code = Code::AppendUid { validity: a.uidvalidity, uid: a.uid };
                        self.tagged(Status::Ok, Some(code), "APPEND completed");
                    }
                    Err(MailboxError::NoSuchFolder { .. }) => {
                        self.tagged(Status::No, Some(Code::TryCreate), "No such mailbox");
                    }
                    Err(e) => self.failed("APPEND", &e),
                }
                self.core.done();
            }
            K::Close => {
                if let Some(v) = self.view.take() {
                    if !v.read_only {
                        let deleted = deleted_uids(&v.messages, |_| true);
                        let folder = v.folder.clone();
                        if !deleted.is_empty() {
                            if let Err(e) = blocking(move || store.expunge(&user, &folder, &deleted)).await {
                                tracing::error!(server = %self.conn.vs.name, "CLOSE cannot expunge: {e}");
                            }
                        }
                    }
                }
                self.core.deselect();
                self.tagged(Status::Ok, None, "CLOSE completed");
                self.core.done();
            }
            K::Unselect => {
                self.view = None;
                self.core.deselect();
                self.tagged(Status::Ok, None, "UNSELECT completed");
                self.core.done();
            }
            K::Expunge => self.expunge(None).await,
            K::UidExpunge(set) => self.expunge(Some(set)).await,
            K::Search { uid, criteria, .. } => self.search(uid, criteria).await,
            K::Fetch { uid, set, items, changed_since } => self.fetch(uid, set, items, changed_since).await,
            K::Store { uid, set, unchanged_since, mode, silent, flags } => {
                self.store_flags(uid, set, unchanged_since, mode, silent, flags).await
            }
            K::Copy { uid, set, mailbox } => self.copy(uid, set, mailbox, false).await,
            K::Move { uid, set, mailbox } => self.copy(uid, set, mailbox, true).await,
            // the core answers the rest itself
            _ => {
                self.tagged(Status::Bad, None, "Unexpected command");
                self.core.done();
            }
        }
    }

    async fn simple(&mut self, r: Result<(), MailboxError>, what: &str) {
        match r {
            Ok(()) => {
                self.report(true).await;
                self.tagged(Status::Ok, None, &format!("{what} completed"));
            }
            Err(e) => self.failed(what, &e),
        }
        self.core.done();
    }

    async fn select(&mut self, mailbox: Mailbox, condstore: bool, read_only: bool) {
        if self.view.take().is_some() {
            self.core.deselect();
            if self.core.condstore() {
                // RFC 7162 §3.2.11: the previous mailbox is closed
                response::untagged(self.core.out(), Status::Ok, Some(&Code::Closed), "Previous mailbox closed");
            }
        }
        if condstore {
            self.core.enable_condstore();
        }
        // what was heard before the listing is in it
        self.poll_changes();
        self.dirty = false;
        let (store, user, name) = (self.store.clone(), self.user(), mailbox.as_str().to_string());
        let listing = match blocking(move || store.listing(&user, &name)).await {
            Ok(l) => l,
            Err(e) => {
                self.failed("SELECT", &e);
                return self.core.done();
            }
        };
        let v = View::new(&self.user(), mailbox.as_str(), listing, read_only, &self.recent);
        let out = self.core.out();
        let system = [Flag::Answered, Flag::Flagged, Flag::Deleted, Flag::Seen, Flag::Draft];
        response::data(out, &Data::Flags(&system));
        let mut permanent = system.to_vec();
        permanent.push(Flag::Wildcard);
        let permanent = if read_only { Vec::new() } else { permanent };
        response::untagged(out, Status::Ok, Some(&Code::PermanentFlags(permanent)), "Flags permitted");
        response::data(out, &Data::Exists(v.exists()));
        response::data(out, &Data::Recent(v.recent.len() as u32));
        if let Some(i) = v.messages.iter().position(|m| !m.flags.contains(&StoreFlag::Seen)) {
            response::untagged(out, Status::Ok, Some(&Code::Unseen(i as u32 + 1)), "First unseen");
        }
        response::untagged(out, Status::Ok, Some(&Code::UidValidity(v.uidvalidity)), "UIDs valid");
        response::untagged(out, Status::Ok, Some(&Code::UidNext(v.uidnext)), "Predicted next UID");
        response::untagged(out, Status::Ok, Some(&Code::HighestModSeq(v.highestmodseq)), "Highest");
        let (code, text) =
            if read_only { (Code::ReadOnly, "EXAMINE completed") } else { (Code::ReadWrite, "SELECT completed") };
        self.view = Some(v);
        self.core.select(read_only);
        self.tagged(Status::Ok, Some(code), text);
        self.core.done();
    }

    #[allow(clippy::too_many_arguments)]
    async fn list(
        &mut self,
        reference: String,
        patterns: Vec<String>,
        lsub: bool,
        subscribed_only: bool,
        show_subscribed: bool,
        special_only: bool,
    ) {
        let verb = if lsub { "LSUB" } else { "LIST" };
        if patterns.iter().all(String::is_empty) {
            // RFC 3501 §6.3.8: the delimiter and the root
            let attrs = vec!["\\Noselect".to_string()];
            let d = Data::List { lsub, attributes: &attrs, delimiter: Some('/'), mailbox: "" };
            response::data(self.core.out(), &d);
            self.tagged(Status::Ok, None, &format!("{verb} completed"));
            return self.core.done();
        }
        let (store, user) = (self.store.clone(), self.user());
        let entries = match blocking(move || store.list(&user)).await {
            Ok(e) => e,
            Err(e) => {
                self.failed(verb, &e);
                return self.core.done();
            }
        };
        let patterns: Vec<String> = patterns.iter().map(|p| list::join(&reference, p)).collect();
        for e in &entries {
            if !patterns.iter().any(|p| list::matches(p, &e.name)) || (subscribed_only && !e.subscribed) {
                continue;
            }
            let special = e.attributes.iter().any(|a| matches!(*a, "\\Sent" | "\\Drafts" | "\\Trash" | "\\Junk"));
            if special_only && !special {
                continue;
            }
            let mut attrs: Vec<String> = e.attributes.iter().map(|a| a.to_string()).collect();
            if show_subscribed && e.subscribed {
                attrs.push("\\Subscribed".into());
            }
            let d = Data::List { lsub, attributes: &attrs, delimiter: Some('/'), mailbox: &e.name };
            response::data(self.core.out(), &d);
        }
        self.finish(true, &format!("{verb} completed")).await;
    }

    async fn status(&mut self, mailbox: Mailbox, items: Vec<StatusItem>) {
        let (store, user, name) = (self.store.clone(), self.user(), mailbox.as_str().to_string());
        let want_recent = items.contains(&StatusItem::Recent);
        let r = blocking(move || {
            let info = store.folder(&user, &name)?;
            let highest = store.highestmodseq(&user, &name)?;
            // only RECENT needs the UIDs
            let uids: Vec<u32> = match want_recent {
                true => store.listing(&user, &info.name)?.messages.iter().map(|m| m.uid).collect(),
                false => Vec::new(),
            };
            Ok((info, highest, uids))
        })
        .await;
        let (info, highest, uids) = match r {
            Ok(x) => x,
            Err(e) => {
                self.failed("STATUS", &e);
                return self.core.done();
            }
        };
        let claimed = self.recent.claimed(&self.user(), &info.name, info.uidvalidity);
        let recent = uids.iter().filter(|&&u| u > claimed).count() as u64;
        let values: Vec<(StatusItem, u64)> = items
            .iter()
            .map(|&i| {
                let n = match i {
                    StatusItem::Messages => info.messages as u64,
                    StatusItem::Recent => recent,
                    StatusItem::UidNext => info.uidnext as u64,
                    StatusItem::UidValidity => info.uidvalidity as u64,
                    StatusItem::Unseen => info.unseen as u64,
                    StatusItem::HighestModSeq => highest,
                };
                (i, n)
            })
            .collect();
        if items.contains(&StatusItem::HighestModSeq) {
            self.core.enable_condstore();
        }
        response::data(self.core.out(), &Data::Status { mailbox: &info.name, items: &values });
        self.finish(true, "STATUS completed").await;
    }

    /// The view, or answer that none is selected (the core checks the state;
    /// this covers a view lost in between).
    fn no_view(&mut self) -> bool {
        if self.view.is_none() {
            self.tagged(Status::No, None, "No mailbox selected");
            self.core.done();
        }
        self.view.is_none()
    }

    /// The indices a set names; a sequence number out of range is a BAD.
    fn resolve(&mut self, set: &SequenceSet, uid: bool) -> Option<Vec<usize>> {
        let v = self.view.as_ref()?;
        if !uid && v.seq_out_of_range(set) {
            self.tagged(Status::Bad, None, "Invalid message sequence number");
            self.core.done();
            return None;
        }
        Some(v.resolve(set, uid))
    }

    async fn expunge(&mut self, only: Option<SequenceSet>) {
        if self.no_view() {
            return;
        }
        let (store, user) = (self.store.clone(), self.user());
        let Some(v) = self.view.as_ref() else { return };
        if v.read_only {
            self.tagged(Status::No, Some(Code::Cannot), "The mailbox is read-only");
            return self.core.done();
        }
        let chosen: Option<Vec<u32>> =
            only.as_ref().map(|set| v.resolve(set, true).into_iter().map(|i| v.messages[i].uid).collect());
        let deleted = deleted_uids(&v.messages, |u| chosen.as_ref().is_none_or(|c| c.contains(&u)));
        let folder = v.folder.clone();
        let r = blocking(move || store.expunge(&user, &folder, &deleted)).await;
        match r {
            Ok(gone) => {
                self.absorb(Some(ChangeKind::Expunged(gone.clone())));
                let out = self.core.out();
                if let Some(v) = self.view.as_mut() {
                    v.remove(&gone, out);
                }
                let text = if only.is_some() { "UID EXPUNGE completed" } else { "EXPUNGE completed" };
                self.finish(true, text).await;
            }
            Err(e) => {
                self.failed("EXPUNGE", &e);
                self.core.done();
            }
        }
    }

    async fn search(&mut self, uid: bool, criteria: Vec<SearchKey>) {
        if self.no_view() {
            return;
        }
        let (store, user) = (self.store.clone(), self.user());
        let Some(v) = self.view.as_ref() else { return };
        let key = match criteria.len() {
            1 => criteria.into_iter().next().unwrap_or(SearchKey::All),
            _ => SearchKey::And(criteria),
        };
        let modseq = uses_modseq(&key);
        let messages = v.messages.clone();
        let recent: Vec<u32> = v.recent.clone();
        let folder = v.folder.clone();
        let r = blocking(move || {
            let mut src = fetch::StoreSource::new(&store, &user, &folder);
            let ctx = search::Context { recent: &recent, tz_offset: TZ_OFFSET };
            let hits = search::search(&key, &messages, ctx, &mut src)?;
            let ids: Vec<u32> =
                hits.iter().filter_map(|&i| Some(if uid { messages.get(i)?.uid } else { i as u32 + 1 })).collect();
            let highest = hits.iter().filter_map(|&i| messages.get(i)).map(|m| m.modseq).max();
            Ok((ids, highest))
        })
        .await;
        match r {
            Ok((ids, highest)) => {
                if modseq {
                    self.core.enable_condstore();
                }
                let modseq = if modseq { highest } else { None };
                response::data(self.core.out(), &Data::Search { ids: &ids, modseq });
                self.finish(false, if uid { "UID SEARCH completed" } else { "SEARCH completed" }).await;
            }
            Err(e) => {
                self.failed("SEARCH", &e);
                self.core.done();
            }
        }
    }

    async fn fetch(&mut self, uid: bool, set: SequenceSet, mut attrs: Vec<FetchAttr>, changed_since: Option<u64>) {
        if self.no_view() {
            return;
        }
        let Some(mut indices) = self.resolve(&set, uid) else { return };
        if changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
            self.core.enable_condstore();
        }
        let user = self.user();
        let Some(v) = self.view.as_mut() else { return };
        if let Some(m) = changed_since {
            indices.retain(|&i| v.messages[i].modseq > m);
        }
        if fetch::sets_seen(&attrs) && !v.read_only {
            let unseen: Vec<u32> = indices
                .iter()
                .map(|&i| &v.messages[i])
                .filter(|m| !m.flags.contains(&StoreFlag::Seen))
                .map(|m| m.uid)
                .collect();
            if !attrs.contains(&FetchAttr::Flags) {
                attrs.push(FetchAttr::Flags);
            }
            if !unseen.is_empty() {
                let (store, folder) = (self.store.clone(), v.folder.clone());
                let seen: crate::mailbox::Flags = [StoreFlag::Seen].into_iter().collect();
                let r =
                    blocking(move || store.store_flags_if(&user, &folder, &unseen, FlagChange::Add, &seen, None)).await;
                match r {
                    Ok(stored) => {
                        self.absorb(Some(ChangeKind::Flags(stored.updated.iter().map(|x| x.0).collect())));
                        if let Some(v) = self.view.as_mut() {
                            for (u, f, m) in stored.updated {
                                v.set_flags(u, f, m);
                            }
                        }
                    }
                    Err(e) => {
                        self.failed("FETCH", &e);
                        return self.core.done();
                    }
                }
            }
        }
        let modseq = self.core.condstore();
        self.job = Some(FetchJob { uid, attrs: Arc::new(attrs), indices, next: 0, modseq });
        self.run_fetch().await;
    }

    /// Write the FETCH under way until it ends or the output is full.
    async fn run_fetch(&mut self) {
        while let Some(mut job) = self.job.take() {
            if self.core.output_full() {
                self.job = Some(job);
                return;
            }
            let Some(v) = self.view.as_ref() else {
                self.core.done();
                return;
            };
            if job.next >= job.indices.len() {
                self.fetched += job.indices.len() as u64;
                self.finish(false, if job.uid { "UID FETCH completed" } else { "FETCH completed" }).await;
                return;
            }
            let extra = |m: &MessageInfo| fetch::Extra { uid: job.uid, modseq: job.modseq, recent: v.is_recent(m.uid) };
            if fetch::needs(&job.attrs) == fetch::Needs::default() {
                // no store read at all: `FETCH 1:* (UID FLAGS)` is a walk over the listing
                let out = self.core.out();
                while job.next < job.indices.len() && out.len() < crate::proto::imap::server::OUTPUT_HIGH_WATER {
                    let i = job.indices[job.next];
                    let m = &v.messages[i];
                    let _ = fetch::write_fetch(out, i as u32 + 1, m, &job.attrs, extra(m), &mut NoSource);
                    job.next += 1;
                }
                self.job = Some(job);
                continue;
            }
            let end = (job.next + FETCH_BATCH).min(job.indices.len());
            let batch: Vec<(u32, MessageInfo, fetch::Extra)> = job.indices[job.next..end]
                .iter()
                .map(|&i| (i as u32 + 1, v.messages[i].clone(), extra(&v.messages[i])))
                .collect();
            let attrs = job.attrs.clone();
            let (store, user, folder) = (self.store.clone(), self.user(), v.folder.clone());
            let r = blocking(move || {
                let mut src = fetch::StoreSource::new(&store, &user, &folder);
                let mut buf = Vec::new();
                let mut done = 0;
                for (seq, m, extra) in &batch {
                    match fetch::write_fetch(&mut buf, *seq, m, &attrs, *extra, &mut src) {
                        // expunged by another session since: nothing to show
                        Ok(()) | Err(MailboxError::NoSuchMessage { .. }) => {}
                        Err(e) => return Err(e),
                    }
                    done += 1;
                    if buf.len() >= crate::proto::imap::server::OUTPUT_HIGH_WATER {
                        break;
                    }
                }
                Ok((buf, done))
            })
            .await;
            match r {
                Ok((mut buf, done)) => {
                    self.core.out().append(&mut buf);
                    job.next += done.max(1);
                    self.job = Some(job);
                }
                Err(e) => {
                    self.failed("FETCH", &e);
                    self.core.done();
                    return;
                }
            }
        }
    }

    async fn store_flags(
        &mut self,
        uid: bool,
        set: SequenceSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
    ) {
        if self.no_view() {
            return;
        }
        let Some(indices) = self.resolve(&set, uid) else { return };
        let Some(v) = self.view.as_ref() else { return };
        if v.read_only {
            self.tagged(Status::No, Some(Code::Cannot), "The mailbox is read-only");
            return self.core.done();
        }
        if unchanged_since.is_some() {
            self.core.enable_condstore();
        }
        let uids: Vec<u32> = indices.iter().map(|&i| v.messages[i].uid).collect();
        let change = match mode {
            StoreMode::Add => FlagChange::Add,
            StoreMode::Remove => FlagChange::Remove,
            StoreMode::Replace => FlagChange::Replace,
        };
        let flags = match flags::to_store(&flags) {
            Ok(f) => f,
            Err(e) => {
                self.tagged(Status::Bad, None, &e.to_string());
                return self.core.done();
            }
        };
        let (store, user, folder) = (self.store.clone(), self.user(), v.folder.clone());
        let r = blocking(move || store.store_flags_if(&user, &folder, &uids, change, &flags, unchanged_since)).await;
        let stored = match r {
            Ok(s) => s,
            Err(e) => {
                self.failed("STORE", &e);
                return self.core.done();
            }
        };
        self.absorb(Some(ChangeKind::Flags(stored.updated.iter().map(|x| x.0).collect())));
        let condstore = self.core.condstore();
        let out = self.core.out();
        let Some(v) = self.view.as_mut() else { return };
        for (u, f, m) in stored.updated {
            v.set_flags(u, f, m);
            if silent && unchanged_since.is_none() {
                continue;
            }
            let Some(seq) = v.seq_of(u) else { continue };
            let Some(info) = v.messages.get(seq as usize - 1) else { continue };
            let shown = flags::to_protocol(&info.flags, v.is_recent(u));
            let mut items = Vec::with_capacity(3);
            if !silent {
                items.push(FetchItem::Flags(&shown));
            }
            if uid {
                items.push(FetchItem::Uid(u));
            }
            if condstore {
                items.push(FetchItem::ModSeq(m));
            }
            if !items.is_empty() {
                response::fetch(out, seq, &items);
            }
        }
        let conflicts: Vec<u32> =
            if uid { stored.conflicts } else { stored.conflicts.iter().filter_map(|&u| v.seq_of(u)).collect() };
        self.report(false).await;
        let text = if uid { "UID STORE completed" } else { "STORE completed" };
        let code = (!conflicts.is_empty()).then(|| Code::Modified(SequenceSet::from_ids(&conflicts)));
        self.tagged(Status::Ok, code, text);
        self.core.done();
    }

    async fn copy(&mut self, uid: bool, set: SequenceSet, mailbox: Mailbox, moving: bool) {
        if self.no_view() {
            return;
        }
        let Some(indices) = self.resolve(&set, uid) else { return };
        let Some(v) = self.view.as_ref() else { return };
        if moving && v.read_only {
            self.tagged(Status::No, Some(Code::Cannot), "The mailbox is read-only");
            return self.core.done();
        }
        let uids: Vec<u32> = indices.iter().map(|&i| v.messages[i].uid).filter(|&u| !v.is_expunged(u)).collect();
        let (store, user, folder, to) =
            (self.store.clone(), self.user(), v.folder.clone(), mailbox.as_str().to_string());
        let r = blocking(move || {
            if moving {
                store.move_messages(&user, &folder, &uids, &to)
            } else {
                store.copy(&user, &folder, &uids, &to)
            }
        })
        .await;
        let verb = match (uid, moving) {
            (false, false) => "COPY completed",
            (true, false) => "UID COPY completed",
            (false, true) => "MOVE completed",
            (true, true) => "UID MOVE completed",
        };
        match r {
            Ok((validity, pairs)) => {
                let code = (!pairs.is_empty()).then(|| {
                    let source: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                    let dest: Vec<u32> = pairs.iter().map(|p| p.1).collect();
                    Code::CopyUid {
                        validity,
                        source: SequenceSet::from_ids(&source),
                        dest: SequenceSet::from_ids(&dest),
                    }
                });
                if moving {
                    // RFC 6851 §4.3: COPYUID comes untagged, before the expunges
                    if let Some(code) = &code {
                        response::untagged(self.core.out(), Status::Ok, Some(code), "Moved");
                    }
                    let gone: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                    self.absorb(Some(ChangeKind::Expunged(gone.clone())));
                    let out = self.core.out();
                    if let Some(v) = self.view.as_mut() {
                        v.remove(&gone, out);
                    }
                    self.finish(true, verb).await;
                } else {
                    self.report(true).await;
                    self.tagged(Status::Ok, code, verb);
                    self.core.done();
                }
            }
            Err(MailboxError::NoSuchFolder { folder, .. })
                if folder != self.view.as_ref().map_or("", |v| &v.folder) =>
            {
                self.tagged(Status::No, Some(Code::TryCreate), "No such mailbox");
                self.core.done();
            }
            Err(e) => {
                self.failed(verb, &e);
                self.core.done();
            }
        }
    }
}

/// CREATE `a/b/c`: the missing superior names are made real folders too
/// (RFC 3501 §6.3.3 SHOULD), so that they can be selected, renamed and
/// deleted like any other.
fn create_with_parents(store: &MailboxStore, user: &str, name: &str) -> Result<(), MailboxError> {
    let trimmed = name.strip_suffix(crate::mailbox::DELIMITER).unwrap_or(name);
    for (i, _) in trimmed.match_indices(crate::mailbox::DELIMITER) {
        let parent = &trimmed[..i];
        if parent.is_empty() {
            continue;
        }
        match store.create_folder(user, parent) {
            Ok(_) | Err(MailboxError::FolderExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    store.create_folder(user, name).map(|_| ())
}

/// The UIDs flagged `\Deleted` among `messages` that `chosen` takes.
fn deleted_uids(messages: &[MessageInfo], chosen: impl Fn(u32) -> bool) -> Vec<u32> {
    messages.iter().filter(|m| m.flags.contains(&StoreFlag::Deleted) && chosen(m.uid)).map(|m| m.uid).collect()
}

/// Whether `seen` is the notice of `own`, a change this session made: the
/// same expunge, or flags changed on messages it just stored.
fn is_own(own: &ChangeKind, seen: &ChangeKind) -> bool {
    match (own, seen) {
        (ChangeKind::Flags(mine), ChangeKind::Flags(theirs)) => theirs.iter().all(|u| mine.contains(u)),
        (ChangeKind::Expunged(mine), ChangeKind::Expunged(theirs)) => {
            let (mut a, mut b) = (mine.clone(), theirs.clone());
            a.sort_unstable();
            b.sort_unstable();
            a == b
        }
        _ => false,
    }
}

/// Whether a change touches the folder a view shows.
fn concerns(v: &View, c: &Change) -> bool {
    c.folder == v.folder && c.uidvalidity == v.uidvalidity && !matches!(c.kind, ChangeKind::Folders)
}

/// The source of a FETCH that reads only the listing: never asked.
struct NoSource;

impl fetch::Source for NoSource {
    fn bytes(&mut self, uid: u32) -> Result<Vec<u8>, MailboxError> {
        Err(MailboxError::NoSuchMessage { folder: String::new(), uid })
    }
    fn parsed(&mut self, uid: u32) -> Result<crate::mailbox::Parsed, MailboxError> {
        Err(MailboxError::NoSuchMessage { folder: String::new(), uid })
    }
}

impl Session for ImapSession {
    fn greeting(&mut self, out: &mut Vec<u8>) {
        Conn::greet(&mut self.core, out);
    }

    async fn handle(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Next {
        if self.job.is_some() {
            self.run_fetch().await;
        }
        loop {
            if self.job.is_some() {
                break;
            }
            if self.core.is_idle() {
                self.report(true).await;
            }
            let Some(event) = self.core.feed(input) else { break };
            match event {
                Event::StartTls => {
                    self.core.take_output(out);
                    return Next::StartTls;
                }
                Event::Logout | Event::TooManyErrors => break,
                Event::Login(creds) => self.log_in(creds, "LOGIN").await,
                Event::Auth(AuthEvent::Start { .. }) => self.on_auth(),
                Event::Auth(AuthEvent::Credentials(creds)) => self.log_in(creds, "AUTHENTICATE PLAIN").await,
                Event::Auth(AuthEvent::Failed(_)) => {
                    self.conn.login.failed().await;
                    self.core.login_done(Err(replies::AUTH_FAILED));
                }
                Event::Command(c) => self.command(c).await,
                Event::Idle => self.report(true).await,
                Event::IdleDone { .. } => self.finish(true, "IDLE terminated").await,
            }
        }
        let next = self.conn.end_turn(&mut self.core, out);
        // a big FETCH grew the core's buffer: an idle session keeps little
        if self.job.is_none() && self.core.out().capacity() > IDLE_BUFFER {
            self.core.out().shrink_to(IDLE_BUFFER);
        }
        next
    }

    fn tls_started(&mut self, info: &TlsInfo) {
        self.conn.tls_started(info);
        self.core.tls_started();
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        Conn::close(&mut self.core, &replies::IDLE_TIMEOUT, out);
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        Conn::close(&mut self.core, &replies::SHUTTING_DOWN, out);
    }

    async fn notified(&mut self) {
        if !self.core.is_idle() || self.view.is_none() {
            return std::future::pending().await;
        }
        let (Some(rx), Some(v)) = (self.changes.as_mut(), self.view.as_ref()) else {
            return std::future::pending().await;
        };
        loop {
            match rx.recv().await {
                Ok(c) if concerns(v, &c) => break,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
        }
        self.dirty = true;
    }

    fn on_notify(&mut self, _out: &mut Vec<u8>) -> Next {
        // the store is read in `handle`, off the async threads
        Next::Continue
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.core.authenticated().then_some(AUTHENTICATED_TIMEOUT)
    }

    fn finished(&mut self, end: &SessionEnd) {
        let (version, cipher) = TlsInfo::log_fields(self.conn.tls.as_ref());
        tracing::info!(
            server = %self.conn.vs.name,
            peer = %self.conn.peer,
            tls = version,
            cipher,
            user = %self.user(),
            fetched = self.fetched,
            appended = self.appended,
            outcome = %end,
            "imap session"
        );
    }
}
