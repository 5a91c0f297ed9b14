//! The reading side of the NNTP service: a core's [`Request`] answered
//! from the news store (groups, articles by number and message-id,
//! NEXT/LAST, overview, header values, listings, NEWGROUPS, NEWNEWS,
//! DATE). Blocking: the service calls it from `spawn_blocking`. What is
//! missing becomes the RFC 3977 code for it; store trouble is logged and
//! answered `403`.

use crate::news::{GroupInfo, NewsError, NewsStore};
use crate::proto::nntp::command::Part;
use crate::proto::nntp::reply::{self, Reply};
use crate::proto::nntp::server::{Answer, GroupEntry, Request, Span, Target};

/// The core's view of a group.
pub fn entry(g: GroupInfo) -> GroupEntry {
    GroupEntry {
        name: g.name,
        count: g.count,
        low: g.low,
        high: g.high,
        posting: g.posting.letter(),
        description: g.description,
        created: g.created,
    }
}

/// Answer a reading request (not POST, IHAVE, CHECK or TAKETHIS).
pub fn answer(store: &NewsStore, req: Request, now: u64) -> Answer {
    match read(store, req, now) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("news store: {e}");
            Answer::Reply(reply::STORE_FAILED)
        }
    }
}

fn refuse(r: Reply) -> Result<Answer, NewsError> {
    Ok(Answer::Reply(r))
}

fn read(store: &NewsStore, req: Request, now: u64) -> Result<Answer, NewsError> {
    match req {
        Request::Group { name, list } => {
            let Some(g) = store.group(&name)? else { return refuse(reply::NO_SUCH_GROUP) };
            let numbers = match list {
                Some((from, to)) if from <= to => store.numbers(&name, from..=to)?,
                _ => Vec::new(),
            };
            Ok(Answer::Group(entry(g), numbers))
        }
        Request::Article { part, target: Target::Number { group, number } } => {
            if part == Part::Stat {
                return Ok(match store.id_of(&group, number)? {
                    Some(id) => Answer::Article { number, id, article: Vec::new() },
                    None => Answer::Reply(reply::NO_SUCH_NUMBER),
                });
            }
            Ok(match store.article(&group, number)? {
                Some((id, article)) => Answer::Article { number, id, article },
                None => Answer::Reply(reply::NO_SUCH_NUMBER),
            })
        }
        Request::Article { part, target: Target::Id(id) } => {
            let found =
                if part == Part::Stat { store.locate(&id)?.map(|_| Vec::new()) } else { store.article_by_id(&id)? };
            Ok(match found {
                Some(article) => Answer::Article { number: 0, id, article },
                None => Answer::Reply(reply::NO_SUCH_ID),
            })
        }
        Request::Step { group, from, forward } => {
            let n = if forward { store.next(&group, from)? } else { store.last(&group, from)? };
            let id = match n {
                Some(n) => store.id_of(&group, n)?.map(|id| (n, id)),
                None => None,
            };
            Ok(match id {
                Some((number, id)) => Answer::Moved { number, id },
                None if forward => Answer::Reply(reply::NO_NEXT),
                None => Answer::Reply(reply::NO_PREVIOUS),
            })
        }
        Request::Over(Span::Range { group, from, to }) => {
            let lines: Vec<String> = if from <= to {
                store.overview(&group, from..=to)?.into_iter().map(|(n, o)| o.line(n)).collect()
            } else {
                Vec::new()
            };
            Ok(if lines.is_empty() { Answer::Reply(reply::NO_ARTICLES_IN_RANGE) } else { Answer::Overview(lines) })
        }
        Request::Over(Span::Id(id)) => Ok(match store.overview_by_id(&id)? {
            // RFC 3977 §8.3.2: the number is 0 for an article named by message-id
            Some(o) => Answer::Overview(vec![o.line(0)]),
            None => Answer::Reply(reply::NO_SUCH_ID),
        }),
        Request::Hdr { field, span: Span::Range { group, from, to } } => {
            let values = if from <= to { store.header(&group, from..=to, &field)? } else { Vec::new() };
            Ok(if values.is_empty() { Answer::Reply(reply::NO_ARTICLES_IN_RANGE) } else { Answer::Headers(values) })
        }
        Request::Hdr { field, span: Span::Id(id) } => Ok(match store.header_by_id(&id, &field)? {
            Some(v) => Answer::Headers(vec![(0, v)]),
            None => Answer::Reply(reply::NO_SUCH_ID),
        }),
        Request::Groups(filter) => Ok(Answer::Groups(store.groups(&filter)?.into_iter().map(entry).collect())),
        Request::NewGroups { since } => {
            Ok(Answer::Groups(store.groups_created_since(since)?.into_iter().map(entry).collect()))
        }
        Request::NewNews { groups, since } => Ok(Answer::Ids(store.new_articles_since(since, &groups)?)),
        Request::Date => Ok(Answer::Date(now)),
        // the service handles the arriving articles itself
        Request::Post(_) | Request::Offer(_) | Request::Ihave { .. } | Request::Check(_) | Request::TakeThis { .. } => {
            refuse(reply::STORE_FAILED)
        }
    }
}
