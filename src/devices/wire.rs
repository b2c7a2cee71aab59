//! MQTT packets over a byte stream (rumqttc's codec), and the escapes of
//! IoT Hub's topics: what the endpoint and the device client share.

use bytes::BytesMut;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream's MQTT packets, in and out.
pub(crate) struct Conn<R, W> {
    rd: R,
    wr: W,
    inbuf: BytesMut,
    out: BytesMut,
    max: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed packet: {0}")]
    Codec(CodecError),
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Conn<R, W> {
    /// The next packet already buffered, if a whole one is.
    pub(crate) fn buffered(&mut self) -> Result<Option<Packet>, ConnError> {
        match Packet::read(&mut self.inbuf, self.max) {
            Ok(p) => Ok(Some(p)),
            Err(CodecError::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(ConnError::Codec(e)),
        }
    }

    /// Reads more bytes; `false` at the end of the stream.
    pub(crate) async fn fill(&mut self) -> Result<bool, ConnError> {
        self.inbuf.reserve(4096);
        Ok(self.rd.read_buf(&mut self.inbuf).await? > 0)
    }

    /// The next packet (`None`: the stream ended).
    pub(crate) async fn next(&mut self) -> Result<Option<Packet>, ConnError> {
        loop {
            if let Some(p) = self.buffered()? {
                return Ok(Some(p));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    pub(crate) fn queue(&mut self, p: &Packet) {
        // Packets made here are within any limit; a write error only means
        // a packet that cannot be encoded, which is then not sent.
        if let Err(e) = p.write(&mut self.out, usize::MAX) {
            tracing::warn!(error = %e, "mqtt: cannot encode a packet");
        }
    }

    pub(crate) async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await?;
            self.wr.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    pub(crate) async fn send(&mut self, p: &Packet) -> Result<(), ConnError> {
        self.queue(p);
        self.flush().await
    }
}

impl<R, W> Conn<R, W> {
    /// Packets over `rd` and `wr`, none larger than `max` bytes accepted.
    pub(crate) fn new(rd: R, wr: W, max: usize) -> Conn<R, W> {
        Conn {
            rd,
            wr,
            inbuf: BytesMut::with_capacity(4096),
            out: BytesMut::with_capacity(1024),
            max,
        }
    }
}

/// `k=v&k2=v2`, percent-decoded (a pair that does not decode is left out).
pub(crate) fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
