//! Operator actions on the stores, shared by the control socket (inside the
//! server) and the CLI (when no server runs). Every failure is one sentence
//! naming the thing that is wrong.

use super::views::{self, MessageDetail};
use super::{QueueFilter, Request, Response, Selector};
use crate::auth::Accounts;
use crate::config::Config;
use crate::proto::smtp::Address;
use crate::queue::scheduler::{apply, ControlOp};
use crate::queue::{Message, QueueId, QueueStore, RcptState};

pub struct Stores<'a> {
    pub config: &'a Config,
    pub queue: &'a QueueStore,
    pub accounts: &'a Accounts,
}

/// Run a request directly on the stores.
pub fn execute(s: &Stores<'_>, req: Request) -> Response {
    let r = match req {
        Request::Ping => Ok(Response::ok("pong")),
        Request::QueueSummary => queue_summary(s),
        Request::QueueList { filter } => queue_list(s, &filter),
        Request::QueueShow { id } => queue_show(s, &id),
        Request::QueueRetry { select } => modify(s, ControlOp::Retry(select)),
        Request::QueueFreeze { select } => modify(s, ControlOp::Freeze(select)),
        Request::QueueThaw { select } => modify(s, ControlOp::Thaw(select)),
        Request::QueueDelete { select, ndr: false } => modify(s, ControlOp::Delete { select, ndr: false }),
        Request::QueueDelete { ndr: true, .. } => {
            Err("delete --ndr needs the running server (it sends the NDR)".to_string())
        }
        Request::UserAdd { email, password } => local_address(s.config, &email)
            .and_then(|_| s.accounts.add_user(&email, &password).map_err(|e| e.to_string()))
            .map(|_| Response::ok(format!("user {} added", crate::auth::key(&email)))),
        Request::UserPasswd { email, password } => s
            .accounts
            .set_password(&email, &password)
            .map(|_| Response::ok(format!("password of {} changed", crate::auth::key(&email))))
            .map_err(|e| e.to_string()),
        Request::UserDelete { email } => s
            .accounts
            .delete_user(&email)
            .map(|_| Response::ok(format!("user {} deleted", crate::auth::key(&email))))
            .map_err(|e| e.to_string()),
        Request::UserList => s.accounts.users().map(Response::ok).map_err(|e| e.to_string()),
        Request::AliasAdd { alias, target } => local_address(s.config, &alias)
            .and_then(|_| Address::parse(&target).map_err(|e| format!("alias target {target:?}: {e}")))
            .and_then(|_| s.accounts.add_alias(&alias, &target).map_err(|e| e.to_string()))
            .map(|_| Response::ok(format!("alias {} -> {}", crate::auth::key(&alias), crate::auth::key(&target)))),
        Request::AliasDelete { alias, target } => s
            .accounts
            .delete_alias(&alias, target.as_deref())
            .map(|_| Response::ok(format!("alias {} changed", crate::auth::key(&alias))))
            .map_err(|e| e.to_string()),
        Request::AliasList { alias } => s
            .accounts
            .aliases()
            .map(|all| {
                let want = alias.as_deref().map(crate::auth::key);
                Response::ok(
                    all.into_iter().filter(|a| want.as_ref().is_none_or(|w| *w == a.alias)).collect::<Vec<_>>(),
                )
            })
            .map_err(|e| e.to_string()),
        Request::Reload => Err("reload needs the running server".into()),
    };
    r.unwrap_or_else(Response::err)
}

/// An address in one of our local domains.
fn local_address(config: &Config, s: &str) -> Result<Address, String> {
    let a = Address::parse(s).map_err(|e| format!("{s:?} is not an address: {e}"))?;
    if !config.is_local_domain(&a.domain) {
        return Err(format!(
            "{s}: {} is not a local domain (server.local_domains: {})",
            a.domain,
            config.server.local_domains.join(", ")
        ));
    }
    Ok(a)
}

fn all_messages(q: &QueueStore) -> Result<Vec<Message>, String> {
    q.iter().collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

fn queue_summary(s: &Stores<'_>) -> Result<Response, String> {
    let all = all_messages(s.queue)?;
    Ok(Response::ok(views::summary(all.iter())))
}

pub fn matches_filter(m: &Message, f: &QueueFilter) -> bool {
    let lc = |s: &str| s.to_ascii_lowercase();
    if let Some(d) = &f.destination {
        if !m.recipients.iter().any(|r| r.state == RcptState::Queued && r.destination.eq_ignore_ascii_case(d)) {
            return false;
        }
    }
    if let Some(st) = &f.state {
        if !m.recipients.iter().any(|r| r.state.to_string() == lc(st)) {
            return false;
        }
    }
    if let Some(snd) = &f.sender {
        let want = if snd == "<>" { String::new() } else { lc(snd) };
        if lc(&m.sender) != want {
            return false;
        }
    }
    if let Some(rc) = &f.recipient {
        if !m.recipients.iter().any(|r| lc(&r.address) == lc(rc)) {
            return false;
        }
    }
    true
}

fn queue_list(s: &Stores<'_>, f: &QueueFilter) -> Result<Response, String> {
    if let Some(st) = &f.state {
        RcptState::parse(st)
            .ok_or_else(|| format!("unknown state {st:?}: use queued, delivered, failed, expired or deleted"))?;
    }
    let views: Vec<_> =
        all_messages(s.queue)?.iter().filter(|m| matches_filter(m, f)).map(views::message_view).collect();
    Ok(Response::ok(views))
}

pub fn parse_id(id: &str) -> Result<QueueId, String> {
    QueueId::parse(id).ok_or_else(|| format!("{id:?} is not a queue id"))
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

fn queue_show(s: &Stores<'_>, id: &str) -> Result<Response, String> {
    let qid = parse_id(id)?;
    let m = s.queue.get(&qid).map_err(|e| e.to_string())?.ok_or_else(|| format!("no message {qid} in the queue"))?;
    Ok(Response::ok(detail(s.queue, &m)))
}

/// The messages a selector names, each once (an id named twice, in any
/// case, is one message: ids are compared as parsed); unknown ids are an
/// error.
pub fn select(queue: &QueueStore, sel: &Selector) -> Result<Vec<Message>, String> {
    if sel.ids.is_empty() && sel.destination.is_none() && !sel.all {
        return Err("name messages by id, --destination or --all".into());
    }
    let mut out: Vec<Message> = Vec::new();
    for id in &sel.ids {
        let qid = parse_id(id)?;
        if out.iter().any(|o| o.id == qid) {
            continue;
        }
        out.push(queue.get(&qid).map_err(|e| e.to_string())?.ok_or_else(|| format!("no message {qid} in the queue"))?);
    }
    if sel.destination.is_some() || sel.all {
        let filter = QueueFilter { destination: sel.destination.clone(), ..Default::default() };
        for m in all_messages(queue)? {
            if (sel.all || matches_filter(&m, &filter)) && !out.iter().any(|o| o.id == m.id) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// A queue command without a running server: the same change the queue
/// manager makes, applied to the store directly.
fn modify(s: &Stores<'_>, op: ControlOp) -> Result<Response, String> {
    let mut ids = Vec::new();
    for mut m in select(s.queue, op.selector())? {
        if apply(&mut m, &op) {
            s.queue.update(&m).map_err(|e| e.to_string())?;
            ids.push(m.id.to_string());
        }
    }
    Ok(Response::ok(ids))
}
