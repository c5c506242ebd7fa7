//! One pipelined client connection, plain or TLS: commands queued, sent in one write,
//! replies read back in order. Requests are encoded and replies decoded by `resp` (the only
//! RESP codec).

use std::sync::Arc;

use anyhow::Context;
use bytes::{Buf, Bytes, BytesMut};
use resp::{Frame, Limits};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Free space made in the read buffer before each read: a pipeline of 16 replies of a few
/// hundred bytes each fits in one read.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// How connections reach the server: its address and, for TLS, the client configuration
/// and the name its certificate must carry.
#[derive(Clone)]
pub struct Target {
    pub addr: String,
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Target {
    pub fn plain(addr: String) -> Target {
        Target { addr, tls: None }
    }

    pub fn tls(
        addr: String,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> anyhow::Result<Target> {
        let name = ServerName::try_from(server_name.to_string())
            .with_context(|| format!("--tls-server-name {server_name}"))?;
        Ok(Target {
            addr,
            tls: Some((TlsConnector::from(config), name)),
        })
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub struct Conn {
    stream: Stream,
    /// Encoded commands not yet sent.
    out: Vec<u8>,
    /// Bytes read and not yet decoded.
    input: BytesMut,
    limits: Limits,
}

impl Conn {
    /// Connects (and completes the TLS handshake when `target` asks for TLS).
    pub async fn connect(target: &Target) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(&target.addr)
            .await
            .with_context(|| format!("connect to {}", target.addr))?;
        // Pipelines are sent whole in one write; Nagle would only delay them.
        tcp.set_nodelay(true)?;
        let stream = match &target.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => Stream::Tls(Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?,
            )),
        };
        Ok(Conn {
            stream,
            out: Vec::new(),
            input: BytesMut::with_capacity(READ_CHUNK_BYTES),
            limits: Limits::default(),
        })
    }

    /// Queues one command (sent by the next [`Conn::send`]).
    pub fn queue(&mut self, args: &[&[u8]]) {
        let frame = Frame::Array(
            args.iter()
                .map(|arg| Frame::Bulk(Bytes::copy_from_slice(arg)))
                .collect(),
        );
        frame.encode(&mut self.out);
    }

    /// Sends every queued command.
    pub async fn send(&mut self) -> anyhow::Result<()> {
        let sent = match &mut self.stream {
            Stream::Plain(tcp) => tcp.write_all(&self.out).await,
            Stream::Tls(tls) => match tls.write_all(&self.out).await {
                // rustls holds what it encrypted until flushed.
                Ok(()) => tls.flush().await,
                Err(e) => Err(e),
            },
        };
        sent.context("send commands")?;
        self.out.clear();
        Ok(())
    }

    /// The next reply, in the order the commands were sent.
    pub async fn reply(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some((frame, used)) =
                Frame::parse(&self.input, &self.limits).context("decode reply")?
            {
                self.input.advance(used);
                return Ok(frame);
            }
            self.input.reserve(READ_CHUNK_BYTES);
            let read = match &mut self.stream {
                Stream::Plain(tcp) => tcp.read_buf(&mut self.input).await,
                Stream::Tls(tls) => tls.read_buf(&mut self.input).await,
            };
            anyhow::ensure!(
                read.context("read reply")? > 0,
                "server closed the connection"
            );
        }
    }
}
