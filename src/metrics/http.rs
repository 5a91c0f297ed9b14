//! The metrics listener: plain HTTP/1.1 (hyper) on `[metrics] listen`,
//! serving the text exposition at `GET /metrics` (and `HEAD`); any other
//! path is 404, any other method on it 405. It is built for one scraper on
//! loopback, not for the internet: at most [`MAX_CONNECTIONS`] at once
//! (more are closed unanswered), request heads of at most
//! [`MAX_REQUEST_HEAD`] bytes (else 431), one request per connection, and
//! [`CONNECTION_TIME`] for the whole exchange, so a slow or silent client
//! holds nothing for long. A scrape reads the queue, so it runs on the
//! blocking pool.

use super::{Metrics, Sources};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Connections served at once; Prometheus uses one.
pub const MAX_CONNECTIONS: usize = 4;
/// The request line and headers must fit in this (hyper answers 431).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// From accept to the last byte of the answer.
pub const CONNECTION_TIME: Duration = Duration::from_secs(10);

/// The metrics listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("metrics.listen: cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Bind `[metrics] listen` (before privileges are dropped, like the other listeners).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })
}

/// Serve `metrics` on `listener` until the task is aborted; the gauges
/// read at scrape time come from `sources`.
pub fn spawn(listener: TcpListener, metrics: Metrics, sources: Arc<dyn Sources>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.keep_alive(false).max_header_size(MAX_REQUEST_HEAD).max_headers(32);
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // out of descriptors: the pending connection stays, so pause rather than spin
                    tracing::debug!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "metrics: connection closed, {MAX_CONNECTIONS} already open");
                continue;
            };
            let (metrics, sources) = (metrics.clone(), sources.clone());
            let serving = http.serve_connection(
                hyper_util::rt::TokioIo::new(tcp),
                hyper::service::service_fn(move |req| answer(req, metrics.clone(), sources.clone())),
            );
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(CONNECTION_TIME, serving).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, "metrics: {e}"),
                    Err(_) => tracing::debug!(%peer, "metrics: connection took longer than {CONNECTION_TIME:?}"),
                }
            });
        }
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn answer(
    req: Request<Incoming>,
    metrics: Metrics,
    sources: Arc<dyn Sources>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "Not found: the metrics are at /metrics\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed: GET or HEAD /metrics\n");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let now = i64::try_from(crate::util::now_secs()).unwrap_or(i64::MAX);
    let text = tokio::task::spawn_blocking(move || metrics.render(&*sources, now)).await;
    Ok(match text {
        Ok(Ok(text)) => {
            // hyper sends the headers and no body for HEAD
            let mut r = Response::new(Full::new(Bytes::from(text)));
            let kind = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
            r
        }
        Ok(Err(e)) => {
            tracing::warn!("metrics: cannot encode the exposition: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "The metrics could not be encoded\n")
        }
        Err(e) => {
            tracing::warn!("metrics: the scrape failed: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "The metrics could not be read\n")
        }
    })
}
