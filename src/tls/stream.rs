//! A TCP stream that is plaintext or TLS, and can become TLS in place —
//! the one mechanism behind SMTP STARTTLS, POP3 STLS, IMAP STARTTLS and NNTP
//! STARTTLS, on both the server and the client side.

use super::TlsInfo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

pub enum Stream {
    Plain(TcpStream),
    Server(Box<server::TlsStream<TcpStream>>),
    Client(Box<client::TlsStream<TcpStream>>),
    /// A handshake failed; the connection is gone.
    Broken,
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was lost during a TLS handshake")
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Server(_) | Stream::Client(_))
    }

    /// Server side: run the handshake on this connection, in place.
    pub async fn accept_tls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<TlsInfo> {
        let Stream::Plain(tcp) = std::mem::replace(self, Stream::Broken) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        *self = Stream::Server(Box::new(tls));
        self.tls_info().ok_or_else(broken)
    }

    /// Client side: run the handshake towards `name`, in place.
    pub async fn connect_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: rustls_pki_types::ServerName<'static>,
    ) -> io::Result<TlsInfo> {
        let Stream::Plain(tcp) = std::mem::replace(self, Stream::Broken) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        *self = Stream::Client(Box::new(tls));
        self.tls_info().ok_or_else(broken)
    }

    pub fn tls_info(&self) -> Option<TlsInfo> {
        match self {
            Stream::Server(s) => {
                let (_, conn) = s.get_ref();
                Some(TlsInfo::from_common(conn, conn.server_name().map(str::to_string)))
            }
            Stream::Client(s) => {
                let (_, conn) = s.get_ref();
                Some(TlsInfo::from_common(conn, None))
            }
            _ => None,
        }
    }

    /// The peer's certificate chain (client side), for verification reports.
    pub fn peer_certificates(&self) -> Option<Vec<rustls_pki_types::CertificateDer<'static>>> {
        match self {
            Stream::Client(s) => s.get_ref().1.peer_certificates().map(|c| c.to_vec()),
            Stream::Server(s) => s.get_ref().1.peer_certificates().map(|c| c.to_vec()),
            _ => None,
        }
    }

    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(t) => Some(t),
            Stream::Server(s) => Some(s.get_ref().0),
            Stream::Client(s) => Some(s.get_ref().0),
            Stream::Broken => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Broken => Poll::Ready(Err(broken())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Broken => Poll::Ready(Err(broken())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Broken => Poll::Ready(Err(broken())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Broken => Poll::Ready(Ok(())),
        }
    }
}
