//! One pipelined client connection: commands queued, sent in one write, replies read back
//! in order. Requests are encoded and replies decoded by `resp` (the only RESP codec).

use anyhow::Context;
use bytes::{Buf, Bytes, BytesMut};
use resp::{Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Free space made in the read buffer before each read: a pipeline of 16 replies of a few
/// hundred bytes each fits in one read.
const READ_CHUNK_BYTES: usize = 16 * 1024;

pub struct Conn {
    stream: TcpStream,
    /// Encoded commands not yet sent.
    out: Vec<u8>,
    /// Bytes read and not yet decoded.
    input: BytesMut,
    limits: Limits,
}

impl Conn {
    pub async fn connect(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        // Pipelines are sent whole in one write; Nagle would only delay them.
        stream.set_nodelay(true)?;
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
        self.stream
            .write_all(&self.out)
            .await
            .context("send commands")?;
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
            let read = self
                .stream
                .read_buf(&mut self.input)
                .await
                .context("read reply")?;
            anyhow::ensure!(read > 0, "server closed the connection");
        }
    }
}
