//! Writing Kafka's primitive types into chunks for a vectored write.
//!
//! Ordinary fields go into one `BytesMut`. The chunks of a `records` value
//! are not copied (unless short): the encoder remembers where each goes and,
//! when finished, returns the output as a list of chunks in which each is its
//! own `Bytes`.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::Records;

/// Records chunks shorter than this are copied into the surrounding chunk:
/// an extra iovec costs more than copying a few hundred bytes.
pub const RECORDS_COPY_THRESHOLD_BYTES: usize = 256;

/// Initial capacity of the owned buffer; most headers and bodies fit.
const INITIAL_CAPACITY_BYTES: usize = 256;

/// Accumulates an encoded message.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: BytesMut,
    /// External chunks, each with the `buf` offset at which it belongs.
    external: Vec<(usize, Bytes)>,
    external_len: usize,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            buf: BytesMut::with_capacity(INITIAL_CAPACITY_BYTES),
            external: Vec::new(),
            external_len: 0,
        }
    }

    /// An encoder whose output starts with a 4-byte size prefix, filled in
    /// by [`Encoder::finish_frame`].
    pub fn with_size_prefix() -> Self {
        let mut enc = Encoder::new();
        enc.buf.put_i32(0);
        enc
    }

    /// Total bytes written so far, external chunks included.
    pub fn len(&self) -> usize {
        self.buf.len() + self.external_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks, in order. Owned bytes are frozen once and sliced, so the
    /// chunks share one allocation.
    pub fn finish(self) -> Vec<Bytes> {
        let owned = self.buf.freeze();
        if self.external.is_empty() {
            return if owned.is_empty() {
                Vec::new()
            } else {
                vec![owned]
            };
        }
        let mut chunks = Vec::with_capacity(self.external.len() * 2 + 1);
        let mut start = 0;
        for (at, chunk) in self.external {
            if at > start {
                chunks.push(owned.slice(start..at));
            }
            chunks.push(chunk);
            start = at;
        }
        if owned.len() > start {
            chunks.push(owned.slice(start..));
        }
        chunks
    }

    /// Like [`Encoder::finish`], after writing the length of everything
    /// after the prefix into the prefix.
    pub fn finish_frame(mut self) -> Vec<Bytes> {
        assert!(
            self.buf.len() >= 4,
            "finish_frame needs an encoder made by with_size_prefix"
        );
        let size = i32::try_from(self.len() - 4).expect("frame larger than 2 GiB");
        self.buf[..4].copy_from_slice(&size.to_be_bytes());
        self.finish()
    }

    /// All output in one contiguous buffer (copies external chunks).
    pub fn finish_flat(self) -> Bytes {
        let chunks = self.finish();
        if chunks.len() == 1 {
            return chunks.into_iter().next().expect("one chunk");
        }
        let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in chunks {
            out.extend_from_slice(&chunk);
        }
        out.freeze()
    }

    #[inline]
    pub fn i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }

    #[inline]
    pub fn i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }

    #[inline]
    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    #[inline]
    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    #[inline]
    pub fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    #[inline]
    pub fn f64(&mut self, v: f64) {
        self.buf.put_f64(v);
    }

    #[inline]
    pub fn bool(&mut self, v: bool) {
        self.buf.put_u8(u8::from(v));
    }

    #[inline]
    pub fn uuid(&mut self, v: &Uuid) {
        self.buf.put_slice(v.as_bytes());
    }

    #[inline]
    pub fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    /// Writes a length prefix; `None` is null. Lengths beyond the prefix's
    /// range are a caller bug (Kafka frames are far smaller).
    #[inline]
    fn length(&mut self, length: Option<usize>, compact: bool, wide: bool) {
        match (length, compact) {
            (None, true) => self.uvarint(0),
            (None, false) if wide => self.i32(-1),
            (None, false) => self.i16(-1),
            (Some(n), true) => {
                self.uvarint(u32::try_from(n + 1).expect("compact length fits u32"));
            }
            (Some(n), false) if wide => {
                self.i32(i32::try_from(n).expect("length fits i32"));
            }
            (Some(n), false) => self.i16(i16::try_from(n).expect("string length fits i16")),
        }
    }

    #[inline]
    pub fn string(&mut self, v: &str, flexible: bool) {
        self.length(Some(v.len()), flexible, false);
        self.buf.put_slice(v.as_bytes());
    }

    /// A string that is null when `None`; in a version where the field is not
    /// nullable, `None` is written as the empty string.
    #[inline]
    pub fn opt_string(&mut self, v: Option<&str>, flexible: bool, nullable: bool) {
        match v {
            Some(s) => self.string(s, flexible),
            None if nullable => self.length(None, flexible, false),
            None => self.string("", flexible),
        }
    }

    #[inline]
    pub fn bytes(&mut self, v: &[u8], flexible: bool) {
        self.length(Some(v.len()), flexible, true);
        self.buf.put_slice(v);
    }

    #[inline]
    pub fn opt_bytes(&mut self, v: Option<&Bytes>, flexible: bool, nullable: bool) {
        match v {
            Some(b) => self.bytes(b, flexible),
            None if nullable => self.length(None, flexible, true),
            None => self.bytes(&[], flexible),
        }
    }

    /// A `records` value: the length prefix of all chunks together, then
    /// each chunk as its own piece of the output (a chunk is copied only
    /// when short), so stored batches are never joined into a new buffer.
    #[inline]
    pub fn records(&mut self, v: Option<&Records>, flexible: bool, nullable: bool) {
        let Some(records) = v else {
            return self.opt_bytes(None, flexible, nullable);
        };
        self.length(Some(records.len()), flexible, true);
        for chunk in records.chunks() {
            if chunk.len() >= RECORDS_COPY_THRESHOLD_BYTES {
                self.external.push((self.buf.len(), chunk.clone()));
                self.external_len += chunk.len();
            } else {
                self.buf.put_slice(chunk);
            }
        }
    }

    #[inline]
    pub fn array<T>(&mut self, v: &[T], flexible: bool, mut write: impl FnMut(&mut Self, &T)) {
        self.length(Some(v.len()), flexible, true);
        for item in v {
            write(self, item);
        }
    }

    #[inline]
    pub fn opt_array<T>(
        &mut self,
        v: Option<&[T]>,
        flexible: bool,
        nullable: bool,
        write: impl FnMut(&mut Self, &T),
    ) {
        match v {
            Some(items) => self.array(items, flexible, write),
            None if nullable => self.length(None, flexible, true),
            None => self.array::<T>(&[], flexible, write),
        }
    }

    /// A struct field; when `nullable`, preceded by an int8 marker. A `None`
    /// in a version where the struct is not nullable is written as `default`.
    #[inline]
    pub fn opt_struct<T: Default>(
        &mut self,
        v: Option<&T>,
        nullable: bool,
        write: impl FnOnce(&mut Self, &T),
    ) {
        match v {
            Some(s) => {
                if nullable {
                    self.i8(1);
                }
                write(self, s);
            }
            None if nullable => self.i8(-1),
            None => write(self, &T::default()),
        }
    }

    /// Writes one tagged field: tag, payload size, payload. The payload is
    /// encoded separately to learn its size; tagged fields are small.
    pub fn tagged(&mut self, tag: u32, write: impl FnOnce(&mut Self)) {
        let mut payload = Encoder::new();
        write(&mut payload);
        let payload = payload.finish_flat();
        self.uvarint(tag);
        self.uvarint(u32::try_from(payload.len()).expect("tagged field fits u32"));
        self.buf.put_slice(&payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_records_become_their_own_chunk() {
        let records = Bytes::from(vec![0xab; RECORDS_COPY_THRESHOLD_BYTES]);
        let mut enc = Encoder::with_size_prefix();
        enc.i16(7);
        enc.records(Some(&Records::from(records.clone())), false, true);
        enc.i8(1);
        let chunks = enc.finish_frame();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), records.as_ptr());
        let total: usize = chunks.iter().map(Bytes::len).sum();
        assert_eq!(
            &chunks[0][..4],
            &i32::try_from(total - 4).unwrap().to_be_bytes()
        );
        assert_eq!(&chunks[0][4..], &[0, 7, 0, 0, 1, 0]);
        assert_eq!(&chunks[2][..], &[1]);
    }

    #[test]
    fn small_records_are_copied() {
        let records = Bytes::from(vec![1, 2, 3]);
        let mut enc = Encoder::new();
        enc.records(Some(&Records::from(records)), true, true);
        assert_eq!(enc.finish(), vec![Bytes::from_static(&[4, 1, 2, 3])]);
    }

    #[test]
    fn uvarint_encoding() {
        let mut enc = Encoder::new();
        enc.uvarint(300);
        enc.uvarint(u32::MAX);
        assert_eq!(
            &enc.finish_flat()[..],
            &[0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f]
        );
    }
}
