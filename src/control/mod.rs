//! The control socket (SPEC §11): a Unix socket, mode 0600 from the moment
//! it exists (bound in a private directory, then renamed into place), one
//! JSON request and one JSON response per line. The CLI is its client; when no
//! server is running the CLI runs the very same operations ([`ops`]) on the
//! store opened directly, so both paths answer alike.
//!
//! Requests are objects tagged by `op`, e.g.
//! `{"op":"queue_list","state":"queued"}`; responses are
//! `{"ok":true,"data":...}` or `{"ok":false,"error":"one sentence"}`.
//! A listing asked for with `"stream":true` is answered line by line as
//! the server walks the queue: one `{"ok":true,"more":true,"data":item}`
//! per item, then one ordinary response that ends it (its `data` is the
//! count), so neither end holds the whole list.
//!
//! The socket knows nothing of the server behind it: [`serve`] takes a
//! [`Handler`] that answers each request (the server implements it).

pub mod ops;
pub mod views;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

// the queue decides what a selection names; requests carry them as they are
pub use crate::queue::select::{QueueFilter, Selector};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Ping,
    QueueSummary,
    QueueList {
        #[serde(flatten)]
        filter: QueueFilter,
        /// Answer one line per message as they are read (see the module docs).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stream: bool,
    },
    QueueShow {
        id: String,
    },
    QueueRetry {
        #[serde(flatten)]
        select: Selector,
    },
    QueueFreeze {
        #[serde(flatten)]
        select: Selector,
    },
    QueueThaw {
        #[serde(flatten)]
        select: Selector,
    },
    QueueDelete {
        #[serde(flatten)]
        select: Selector,
        #[serde(default)]
        ndr: bool,
    },
    UserAdd {
        email: String,
        password: String,
    },
    UserPasswd {
        email: String,
        password: String,
    },
    UserDelete {
        email: String,
    },
    UserList,
    AliasAdd {
        alias: String,
        target: String,
    },
    AliasDelete {
        alias: String,
        #[serde(default)]
        target: Option<String>,
    },
    AliasList {
        #[serde(default)]
        alias: Option<String>,
    },
    GroupAdd {
        name: String,
        #[serde(default)]
        description: String,
    },
    GroupDelete {
        name: String,
    },
    GroupList {
        #[serde(default)]
        name: Option<String>,
    },
    Reload,
}

impl Request {
    /// Whether the operation needs the running server (nothing to do without one).
    pub fn needs_server(&self) -> bool {
        matches!(self, Request::Reload | Request::Ping)
    }

    /// Whether the answer comes as a stream of lines.
    pub fn streams(&self) -> bool {
        matches!(self, Request::QueueList { stream: true, .. })
    }

    /// Whether the operation only reads: without a server it must find a
    /// data directory, never make one (SPEC §3).
    pub fn only_reads(&self) -> bool {
        matches!(
            self,
            Request::QueueSummary
                | Request::QueueList { .. }
                | Request::QueueShow { .. }
                | Request::UserList
                | Request::AliasList { .. }
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One item of a streamed answer; more lines follow.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

impl Response {
    pub fn ok(data: impl Serialize) -> Response {
        Response { ok: true, data: serde_json::to_value(data).ok(), error: None, more: false }
    }
    pub fn err(e: impl std::fmt::Display) -> Response {
        Response { ok: false, data: None, error: Some(e.to_string()), more: false }
    }
    /// One item of a streamed answer.
    pub fn item(data: impl Serialize) -> Response {
        Response { more: true, ..Response::ok(data) }
    }
}

/// Largest request line accepted (a password or a long id list fits easily).
const MAX_REQUEST: usize = 1 << 20;

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Lines in flight between a streaming handler and the socket: a slow
/// reader holds the handler back instead of letting lines pile up.
const STREAM_BUFFER: usize = 16;

/// What answers the requests that arrive on the control socket.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> BoxFuture<'_, Response>;

    /// Answer a request that [`Request::streams`]: send each item
    /// ([`Response::item`]) to `out` as it is made, then the response that
    /// ends it. A failed send means the client went away: stop.
    fn stream(&self, req: Request, out: tokio::sync::mpsc::Sender<Response>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = out.send(self.handle(req).await).await;
        })
    }
}

/// Serve the control socket until the task is dropped.
pub async fn serve(path: PathBuf, handler: Arc<dyn Handler>) -> std::io::Result<()> {
    let listener = bind(&path)?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, &*handler).await {
                            tracing::debug!("control connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

fn bind(path: &Path) -> std::io::Result<UnixListener> {
    bind_with(path, |_| {})
}

/// [`bind`], calling `after_bind` with the socket's path right after the
/// `bind` (the test's window into the moment before the chmod).
///
/// `bind` makes the socket with the umask's mode, so a chmod afterwards
/// leaves a moment in which others may connect. Instead the socket is
/// bound inside a fresh directory only we can enter (0700, made next to
/// the final path so the rename stays on one file system), set to 0600
/// there, and renamed into place; the rename also replaces, atomically,
/// a socket left by a server that died (we hold the data directory lock,
/// so no live server owns it).
fn bind_with(path: &Path, after_bind: impl FnOnce(&Path)) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // directories we create for it are ours alone
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    let private = PrivateDir::create(parent)?;
    // short names: a Unix socket path has a length limit of about 100 bytes
    let staged = private.0.join("s");
    let listener = UnixListener::bind(&staged)?;
    after_bind(&staged);
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staged, path)?;
    Ok(listener)
}

/// A directory with mode 0700 that we made (never one that was there
/// already), removed with whatever is left in it when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create(parent: &Path) -> std::io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let mut tries = 0;
        loop {
            let dir = parent.join(format!(".ctl{:x}", fastrand::u32(..)));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PrivateDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("s"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

async fn connection(stream: UnixStream, handler: &dyn Handler) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut r).take(MAX_REQUEST as u64).read_line(&mut line).await?;
        if n == 0 {
            return Ok(());
        }
        let resp = match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) if req.streams() => {
                let (tx, mut rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
                let w = &mut w;
                let write = async move {
                    while let Some(resp) = rx.recv().await {
                        write_line(w, &resp).await?;
                    }
                    Ok::<(), std::io::Error>(())
                };
                // a write error drops the receiver, which stops the handler
                let ((), written) = tokio::join!(handler.stream(req, tx), write);
                written?;
                continue;
            }
            Ok(req) => handler.handle(req).await,
            Err(e) => Response::err(format!("bad request: {e}")),
        };
        write_line(&mut w, &resp).await?;
    }
}

async fn write_line(w: &mut (impl AsyncWriteExt + Unpin), resp: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    w.write_all(&out).await
}

/// Client side: send one request to a running server. `Ok(None)` when no
/// server answers at `path` (the caller then opens the store directly).
pub fn request(path: &Path, req: &Request) -> std::io::Result<Option<Response>> {
    // a whole answer is a stream of no items
    request_stream(path, req, |_| {})
}

/// Client side of a streamed answer: send `req`, hand each item's data to
/// `each` as its line arrives, and return the response that ends the
/// stream. `Ok(None)` when no server answers at `path`.
pub fn request_stream(
    path: &Path,
    req: &Request,
    mut each: impl FnMut(serde_json::Value),
) -> std::io::Result<Option<Response>> {
    use std::io::{BufRead, Write};
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = std::io::BufReader::new(stream);
    let mut resp = String::new();
    loop {
        resp.clear();
        if reader.read_line(&mut resp)? == 0 {
            return Err(std::io::Error::other("the server closed the connection before the end of its answer"));
        }
        let r = parse_line(&resp)?;
        if !r.more {
            return Ok(Some(r));
        }
        each(r.data.unwrap_or(serde_json::Value::Null));
    }
}

fn parse_line(line: &str) -> std::io::Result<Response> {
    serde_json::from_str(line).map_err(|e| std::io::Error::other(format!("unreadable answer from the server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// SPEC §11: mode 0600, and at no moment reachable by anyone else: right
    /// after `bind` the socket is either 0600 already or in a directory only
    /// we can enter.
    #[tokio::test]
    async fn the_socket_is_never_reachable_by_others() {
        let tmp = tempfile::tempdir().unwrap();
        // a world-searchable parent, as data directories usually are
        let parent = tmp.path().join("shared");
        std::fs::create_dir(&parent).unwrap();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = parent.join("control.sock");
        std::fs::write(&path, "left by a server that died").unwrap();
        let mut at_bind = None;
        let listener = bind_with(&path, |bound| {
            let dir = bound.parent().unwrap();
            at_bind = Some((mode(bound), mode(dir)));
        })
        .unwrap();
        let (socket_mode, dir_mode) = at_bind.unwrap();
        assert!(
            socket_mode & 0o077 == 0 || dir_mode & 0o077 == 0,
            "right after bind the socket was {socket_mode:o} in a {dir_mode:o} directory"
        );
        assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
        assert_eq!(mode(&path), 0o600);
        let left: Vec<_> = std::fs::read_dir(&parent).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["control.sock"], "nothing else is left next to the socket");
        // and it answers at the configured path
        let client = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        drop((client, server));
    }
}
