//! The value of a `records` field: record batches held as one or more
//! `Bytes` chunks.
//!
//! A decoded value is one chunk, a slice of the frame. A value built by the
//! broker may be several chunks (batches from the tail cache are separate
//! allocations), and the encoder writes each chunk as its own piece of the
//! vectored write, so stored bytes are never joined into a new buffer.

use bytes::{Bytes, BytesMut};

/// Record batches as chunks, in order; equality is by content, whatever
/// the chunking.
#[derive(Debug, Clone, Default)]
pub struct Records {
    chunks: Vec<Bytes>,
}

impl Records {
    pub fn new() -> Self {
        Records::default()
    }

    /// The chunks in order, empty ones left out.
    pub fn from_chunks(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        Records {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
        }
    }

    /// Appends a chunk (an empty one is left out).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.chunks.push(chunk);
        }
    }

    /// The chunks, none of them empty.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// Total bytes over all chunks.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// All bytes as one `Bytes`. Free when there is at most one chunk (every
    /// decoded value); several chunks are copied into a new buffer.
    pub fn contiguous(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.len());
                for chunk in many {
                    out.extend_from_slice(chunk);
                }
                out.freeze()
            }
        }
    }

    /// The bytes in order.
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.chunks.iter().flat_map(|c| c.iter().copied())
    }
}

impl From<Bytes> for Records {
    fn from(bytes: Bytes) -> Self {
        Records::from_chunks([bytes])
    }
}

impl From<Vec<Bytes>> for Records {
    fn from(chunks: Vec<Bytes>) -> Self {
        Records::from_chunks(chunks)
    }
}

impl PartialEq for Records {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.bytes().eq(other.bytes())
    }
}

impl Eq for Records {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_ignores_chunking() {
        let one = Records::from(Bytes::from_static(b"abcdef"));
        let three = Records::from(vec![
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
            Bytes::from_static(b"f"),
        ]);
        assert_eq!(three.chunks().len(), 3, "the empty chunk is left out");
        assert_eq!(one, three);
        assert_eq!(three.len(), 6);
        assert_eq!(&three.contiguous()[..], b"abcdef");
        assert_ne!(one, Records::from(Bytes::from_static(b"abcdeg")));
        assert_ne!(one, Records::from(Bytes::from_static(b"abcde")));
        assert!(Records::from(Bytes::new()).is_empty());
    }

    #[test]
    fn one_chunk_is_contiguous_without_a_copy() {
        let bytes = Bytes::from(vec![7u8; 64]);
        let r = Records::from(bytes.clone());
        assert_eq!(r.contiguous().as_ptr(), bytes.as_ptr());
    }
}
