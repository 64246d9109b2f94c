//! Streaming decompression with a hard output limit, and compression for the
//! builder.
//!
//! Every decoder reads from the in-memory payload and produces output through
//! [`Limited`], which refuses to yield byte `limit + 1`; decoders that must
//! materialise a whole block (snappy) check the block's declared size against
//! the remaining budget before allocating it. So memory stays bounded by the
//! limit plus the codecs' own fixed working buffers (zstd's window is capped
//! too), whatever the payload claims.

use std::io::{self, Read, Write};

use crate::error::BatchError;
use crate::header::Compression;

/// Java's xerial snappy stream header: magic, then version and compatible
/// version (big-endian i32, both 1), then `[u32 BE length][raw block]`...
pub(crate) const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// Uncompressed bytes per xerial block, as xerial-snappy-java writes them.
const XERIAL_BLOCK: usize = 32 * 1024;
/// Largest zstd window we agree to allocate, whatever the frame header says
/// (2^25 = 32 MiB; Kafka producers use far smaller windows for a batch).
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// Marker carried inside an `io::Error` when the output limit is hit, so it
/// survives passing through a codec's `Read` implementation.
#[derive(Debug)]
struct LimitExceeded;

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompression output limit exceeded")
    }
}

impl std::error::Error for LimitExceeded {}

fn limit_error() -> io::Error {
    io::Error::other(LimitExceeded)
}

pub(crate) fn map_io(e: io::Error, limit: usize) -> BatchError {
    if e.get_ref().is_some_and(|inner| inner.is::<LimitExceeded>()) {
        BatchError::DecompressionLimit { limit }
    } else {
        BatchError::Decompression(e.to_string())
    }
}

/// Wraps a decoder; fails once it would produce more than `limit` bytes.
pub(crate) struct Limited<R> {
    inner: R,
    produced: usize,
    limit: usize,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = self.limit - self.produced;
        if room == 0 {
            // At the limit: fine if the stream ends here, an error otherwise.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(limit_error()),
            };
        }
        let want = buf.len().min(room);
        let n = self.inner.read(&mut buf[..want])?;
        self.produced += n;
        Ok(n)
    }
}

/// The decoders, as one type so a batch's stream needs no boxing.
pub(crate) enum Decoder<'a> {
    Gzip(flate2::bufread::MultiGzDecoder<&'a [u8]>),
    Snappy(SnappyReader<'a>),
    Lz4(lz4_flex::frame::FrameDecoder<&'a [u8]>),
    Zstd(zstd::stream::read::Decoder<'static, &'a [u8]>),
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Snappy(d) => d.read(buf),
            Decoder::Lz4(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// A reader producing the decompressed records of `payload`, failing past
/// `limit` output bytes. `Compression::None` is not a stream: callers handle it.
pub(crate) fn decoder(
    codec: Compression,
    payload: &[u8],
    limit: usize,
) -> Result<Limited<Decoder<'_>>, BatchError> {
    let inner = match codec {
        Compression::None => {
            return Err(BatchError::Decompression(
                "uncompressed batch has no stream".into(),
            ))
        }
        Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(payload)),
        Compression::Snappy => Decoder::Snappy(SnappyReader::new(payload, limit)),
        Compression::Lz4 => Decoder::Lz4(lz4_flex::frame::FrameDecoder::new(payload)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|e| BatchError::Decompression(e.to_string()))?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| BatchError::Decompression(e.to_string()))?;
            Decoder::Zstd(d)
        }
    };
    Ok(Limited {
        inner,
        produced: 0,
        limit,
    })
}

/// Snappy as Kafka clients write it: xerial-framed blocks (Java, librdkafka)
/// or, if the magic is absent, one raw snappy block.
pub(crate) struct SnappyReader<'a> {
    input: &'a [u8],
    xerial: bool,
    started: bool,
    block: Vec<u8>,
    block_pos: usize,
    /// Bytes this reader may still produce; a block declaring more is refused
    /// before anything is allocated for it.
    budget: usize,
    decoder: snap::raw::Decoder,
}

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8], limit: usize) -> Self {
        let xerial = input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC;
        SnappyReader {
            input,
            xerial,
            started: false,
            block: Vec::new(),
            block_pos: 0,
            budget: limit,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// Decodes the next block into `self.block`. `Ok(false)` at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        let compressed: &[u8] = if self.xerial {
            // A stream may be several xerial streams concatenated: skip any
            // header found at a block boundary. (A block length never starts
            // with 0x82, as lengths are positive big-endian i32s.)
            while self.input.len() >= XERIAL_HEADER_LEN && self.input[..8] == XERIAL_MAGIC {
                self.input = &self.input[XERIAL_HEADER_LEN..];
            }
            if self.input.is_empty() {
                return Ok(false);
            }
            if self.input.len() < 4 {
                return Err(io::Error::other("truncated xerial block length"));
            }
            let len =
                u32::from_be_bytes([self.input[0], self.input[1], self.input[2], self.input[3]])
                    as usize;
            let rest = &self.input[4..];
            if len > rest.len() {
                return Err(io::Error::other("xerial block past the end of the payload"));
            }
            self.input = &rest[len..];
            &rest[..len]
        } else {
            if self.started {
                return Ok(false);
            }
            self.started = true;
            self.input
        };
        let n = snap::raw::decompress_len(compressed).map_err(io::Error::other)?;
        if n > self.budget {
            return Err(limit_error());
        }
        self.budget -= n;
        self.block.clear();
        self.block.resize(n, 0);
        let written = self
            .decoder
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.block.truncate(written);
        self.block_pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.block_pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.block_pos);
        buf[..n].copy_from_slice(&self.block[self.block_pos..self.block_pos + n]);
        self.block_pos += n;
        Ok(n)
    }
}

/// Reusable compression state for the builder.
pub(crate) struct Compressors {
    snappy: snap::raw::Encoder,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

/// Kafka's default zstd level (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;

impl Compressors {
    pub(crate) fn new() -> Self {
        Compressors {
            snappy: snap::raw::Encoder::new(),
            zstd: None,
        }
    }

    /// Appends `src` compressed with `codec` to `out`.
    pub(crate) fn compress(
        &mut self,
        codec: Compression,
        src: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        match codec {
            Compression::None => out.extend_from_slice(src),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
                enc.write_all(src)?;
                enc.finish()?;
            }
            Compression::Snappy => {
                out.extend_from_slice(&XERIAL_MAGIC);
                out.extend_from_slice(&1i32.to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
                for chunk in src.chunks(XERIAL_BLOCK) {
                    let len_at = out.len();
                    out.extend_from_slice(&[0; 4]);
                    let start = out.len();
                    out.resize(start + snap::raw::max_compress_len(chunk.len()), 0);
                    let n = self
                        .snappy
                        .compress(chunk, &mut out[start..])
                        .map_err(io::Error::other)?;
                    out.truncate(start + n);
                    out[len_at..start].copy_from_slice(&(n as u32).to_be_bytes());
                }
            }
            Compression::Lz4 => {
                // Independent 64 KiB blocks, no content checksum: the frame
                // shape Kafka's Java client writes and reads.
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
                enc.write_all(src)?;
                enc.finish().map_err(io::Error::other)?;
            }
            Compression::Zstd => {
                let z = match &mut self.zstd {
                    Some(z) => z,
                    none => none.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
                };
                let compressed = z.compress(src)?;
                out.extend_from_slice(&compressed);
            }
        }
        Ok(())
    }
}
