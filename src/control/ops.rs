//! Operator actions on the stores, shared by the control socket (inside the
//! server) and the CLI (when no server runs). Every failure is one sentence
//! naming the thing that is wrong.

use super::views::{self, MessageDetail, MessageView};
use super::{QueueFilter, Request, Response};
use crate::auth::{AccountError, Accounts};
use crate::config::Config;
use crate::news::{NewsError, NewsStore, Posting};
use crate::proto::nntp::wildmat::Wildmat;
use crate::proto::smtp::address::AddressError;
use crate::proto::smtp::Address;
use crate::queue::scheduler::{apply, ControlOp};
use crate::queue::select::{self, SelectError};
use crate::queue::{Message, QueueStore, RcptState, StoreError};
use crate::track::Tracker;

pub struct Stores<'a> {
    pub config: &'a Config,
    pub queue: &'a QueueStore,
    pub accounts: &'a Accounts,
    pub news: &'a NewsStore,
    /// Where operator actions on the queue are recorded.
    pub tracker: &'a Tracker,
}

/// Why an operator action was refused or failed; the text is what the CLI
/// prints and the control socket answers.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("delete --ndr needs the running server (it sends the NDR)")]
    NdrNeedsServer,
    #[error("reload needs the running server")]
    ReloadNeedsServer,
    #[error("{0:?} is not an address: {1}")]
    NotAnAddress(String, #[source] AddressError),
    #[error("{address}: {domain} is not a local domain (server.local_domains: {local_domains})")]
    NotLocal { address: String, domain: String, local_domains: String },
    #[error("alias target {0:?}: {1}")]
    AliasTarget(String, #[source] AddressError),
    #[error("unknown state {0:?}: use queued, delivered, failed, expired or deleted")]
    UnknownState(String),
    #[error(transparent)]
    Accounts(#[from] AccountError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    News(#[from] NewsError),
}

/// Run a request directly on the stores.
pub fn execute(s: &Stores<'_>, req: Request) -> Response {
    let r = match req {
        Request::Ping => Ok(Response::ok("pong")),
        Request::QueueSummary => queue_summary(s),
        Request::QueueList { filter, .. } => queue_list(s, &filter),
        Request::QueueShow { id } => queue_show(s, &id),
        Request::QueueRetry { select } => modify(s, ControlOp::Retry(select)),
        Request::QueueFreeze { select } => modify(s, ControlOp::Freeze(select)),
        Request::QueueThaw { select } => modify(s, ControlOp::Thaw(select)),
        Request::QueueDelete { select, ndr: false } => modify(s, ControlOp::Delete { select, ndr: false }),
        Request::QueueDelete { ndr: true, .. } => Err(OpError::NdrNeedsServer),
        Request::UserAdd { email, password } => local_address(s.config, &email)
            .and_then(|_| Ok(s.accounts.add_user(&email, &password)?))
            .map(|_| Response::ok(format!("user {} added", crate::auth::key(&email)))),
        Request::UserPasswd { email, password } => s
            .accounts
            .set_password(&email, &password)
            .map(|_| Response::ok(format!("password of {} changed", crate::auth::key(&email))))
            .map_err(OpError::from),
        Request::UserDelete { email } => s
            .accounts
            .delete_user(&email)
            .map(|_| Response::ok(format!("user {} deleted", crate::auth::key(&email))))
            .map_err(OpError::from),
        Request::UserList => s.accounts.users().map(Response::ok).map_err(OpError::from),
        Request::AliasAdd { alias, target } => local_address(s.config, &alias)
            .and_then(|_| Address::parse(&target).map_err(|e| OpError::AliasTarget(target.clone(), e)))
            .and_then(|_| Ok(s.accounts.add_alias(&alias, &target)?))
            .map(|_| Response::ok(format!("alias {} -> {}", crate::auth::key(&alias), crate::auth::key(&target)))),
        Request::AliasDelete { alias, target } => s
            .accounts
            .delete_alias(&alias, target.as_deref())
            .map(|_| Response::ok(format!("alias {} changed", crate::auth::key(&alias))))
            .map_err(OpError::from),
        Request::AliasList { alias } => s
            .accounts
            .aliases()
            .map(|all| {
                let want = alias.as_deref().map(crate::auth::key);
                Response::ok(
                    all.into_iter().filter(|a| want.as_ref().is_none_or(|w| *w == a.alias)).collect::<Vec<_>>(),
                )
            })
            .map_err(OpError::from),
        Request::GroupAdd { name, description } => s
            .news
            .add_group(&name, &description, Posting::Yes, crate::util::now_secs())
            .map(|g| Response::ok(format!("newsgroup {} added", g.name)))
            .map_err(OpError::from),
        Request::GroupDelete { name } => s
            .news
            .delete_group(&name, crate::util::now_secs())
            .map(|()| Response::ok(format!("newsgroup {name} deleted")))
            .map_err(OpError::from),
        Request::GroupList { name } => group_list(s.news, name.as_deref()),
        Request::Reload => Err(OpError::ReloadNeedsServer),
    };
    r.unwrap_or_else(Response::err)
}

/// Every newsgroup, or the one named (an error when it does not exist).
fn group_list(news: &NewsStore, name: Option<&str>) -> Result<Response, OpError> {
    let groups = match name {
        Some(n) => vec![news.group(n)?.ok_or_else(|| NewsError::NoSuchGroup(n.to_string()))?],
        None => news.groups(&Wildmat::any())?,
    };
    Ok(Response::ok(groups.into_iter().map(views::group_view).collect::<Vec<_>>()))
}

/// An address in one of our local domains.
fn local_address(config: &Config, s: &str) -> Result<Address, OpError> {
    let a = Address::parse(s).map_err(|e| OpError::NotAnAddress(s.to_string(), e))?;
    if !config.is_local_domain(&a.domain) {
        return Err(OpError::NotLocal {
            address: s.to_string(),
            domain: a.domain.clone(),
            local_domains: config.server.local_domains.join(", "),
        });
    }
    Ok(a)
}

fn queue_summary(s: &Stores<'_>) -> Result<Response, OpError> {
    Ok(Response::ok(views::summary(s.queue.tally())))
}

fn queue_list(s: &Stores<'_>, f: &QueueFilter) -> Result<Response, OpError> {
    let mut views = Vec::new();
    queue_list_each(s.queue, f, |v| {
        views.push(v);
        true
    })?;
    Ok(Response::ok(views))
}

/// `queue list`, one message at a time in id order: `each` gets every
/// message the filter matches as the walk reads it and returns false to
/// stop (its reader went away). Returns how many it was given. Memory does
/// not grow with the queue.
pub fn queue_list_each(
    queue: &QueueStore,
    f: &QueueFilter,
    mut each: impl FnMut(MessageView) -> bool,
) -> Result<usize, OpError> {
    if let Some(st) = &f.state {
        RcptState::parse(st).ok_or_else(|| OpError::UnknownState(st.clone()))?;
    }
    let mut n = 0;
    for m in queue.iter() {
        let m = m?;
        if select::matches_filter(&m, f) {
            n += 1;
            if !each(views::message_view(&m)) {
                break;
            }
        }
    }
    Ok(n)
}

/// [`queue_list_each`] onto a streamed answer (on a blocking thread: the
/// sends wait for the socket): one item line per message, then the line
/// that ends it with the count, or the error that stopped the walk.
pub fn stream_list(queue: &QueueStore, f: &QueueFilter, out: &tokio::sync::mpsc::Sender<Response>) {
    let end = queue_list_each(queue, f, |v| out.blocking_send(Response::item(v)).is_ok());
    let _ = out.blocking_send(end.map(Response::ok).unwrap_or_else(Response::err));
}

pub fn detail(queue: &QueueStore, m: &Message) -> MessageDetail {
    let headers = match queue.read_body(m) {
        Ok(body) => {
            let end = memchr::memmem::find(&body, b"\r\n\r\n").map(|p| p + 2).unwrap_or(body.len());
            String::from_utf8_lossy(&body[..end]).into_owned()
        }
        Err(e) => format!("(cannot read the message from the spool: {e})"),
    };
    MessageDetail { message: views::message_view(m), headers }
}

fn queue_show(s: &Stores<'_>, id: &str) -> Result<Response, OpError> {
    let m = select::get(s.queue, id)?;
    Ok(Response::ok(detail(s.queue, &m)))
}

/// A queue command without a running server: the same change the queue
/// manager makes, applied to the store directly.
fn modify(s: &Stores<'_>, op: ControlOp) -> Result<Response, OpError> {
    let mut ids = Vec::new();
    for id in select::select(s.queue, op.selector())? {
        let Some(mut m) = s.queue.get(&id)? else { continue };
        if apply(&mut m, &op, s.tracker) {
            s.queue.update(&m)?;
            ids.push(m.id.to_string());
        }
    }
    Ok(Response::ok(ids))
}
