//! Reading Kafka's primitive types from a frame.
//!
//! The decoder owns the frame as `Bytes`, so `records` fields come out as
//! zero-copy slices of it. Every length prefix is checked against the bytes
//! left before anything is allocated: a string or bytes length beyond them is
//! refused, and so is an array count beyond them (each element takes at
//! least one byte on the wire). `Vec` pre-allocation is further capped so the
//! reserved memory never exceeds the bytes left either.

use bytes::Bytes;
use uuid::Uuid;

use crate::error::DecodeError;
use crate::Records;

/// Longest unsigned varint Kafka writes for a 32-bit value.
const UVARINT_MAX_BYTES: usize = 5;

/// A cursor over one frame (or a region of it, for tagged fields).
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Bytes,
    pos: usize,
    /// End of the readable region; lowered while a tagged field is decoded.
    end: usize,
}

/// A saved read limit, restored by [`Decoder::leave_region`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Region {
    region_end: usize,
    outer_end: usize,
}

type Result<T> = std::result::Result<T, DecodeError>;

impl Decoder {
    /// A decoder over the whole of `buf`.
    pub fn new(buf: Bytes) -> Self {
        let end = buf.len();
        Decoder { buf, pos: 0, end }
    }

    /// Bytes left in the current region.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Bytes consumed so far from the start of the frame.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(DecodeError::Truncated {
                needed: n,
                remaining,
            });
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    #[inline]
    fn array_of<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.take(n).map(|_| ())
    }

    #[inline]
    pub fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn bool(&mut self) -> Result<bool> {
        match self.array_of::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidBool(other)),
        }
    }

    #[inline]
    pub fn uuid(&mut self) -> Result<Uuid> {
        Ok(Uuid::from_bytes(self.array_of()?))
    }

    /// Kafka's unsigned varint (at most 5 bytes, 32 bits).
    #[inline]
    pub fn uvarint(&mut self) -> Result<u32> {
        let mut value: u32 = 0;
        for i in 0..UVARINT_MAX_BYTES {
            let byte = self.array_of::<1>()?[0];
            let bits = u32::from(byte & 0x7f);
            if i == UVARINT_MAX_BYTES - 1 && (byte & 0x70) != 0 {
                // The fifth byte may only carry the top 4 bits.
                return Err(DecodeError::InvalidVarint);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::InvalidVarint)
    }

    /// Reads a length prefix. `None` is the null marker. The length is checked
    /// against the bytes left, so callers may allocate it.
    #[inline]
    fn length(&mut self, compact: bool, wide: bool) -> Result<Option<usize>> {
        let length: i64 = if compact {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        let remaining = self.remaining();
        if length == -1 {
            return Ok(None);
        }
        match usize::try_from(length) {
            Ok(n) if n <= remaining => Ok(Some(n)),
            _ => Err(DecodeError::InvalidLength { length, remaining }),
        }
    }

    #[inline]
    fn required(value: Option<usize>, nullable: bool) -> Result<Option<usize>> {
        if value.is_none() && !nullable {
            return Err(DecodeError::UnexpectedNull);
        }
        Ok(value)
    }

    fn str_of(&mut self, n: usize) -> Result<String> {
        let slice = self.take(n)?;
        std::str::from_utf8(slice)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A non-nullable string (int16 length, or compact when `flexible`).
    #[inline]
    pub fn string(&mut self, flexible: bool) -> Result<String> {
        match Self::required(self.length(flexible, false)?, false)? {
            Some(n) => self.str_of(n),
            None => Err(DecodeError::UnexpectedNull),
        }
    }

    /// A string that may be null when `nullable`.
    #[inline]
    pub fn opt_string(&mut self, flexible: bool, nullable: bool) -> Result<Option<String>> {
        match Self::required(self.length(flexible, false)?, nullable)? {
            Some(n) => self.str_of(n).map(Some),
            None => Ok(None),
        }
    }

    fn slice_of(&mut self, n: usize) -> Result<Bytes> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(DecodeError::Truncated {
                needed: n,
                remaining,
            });
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.buf.slice(start..start + n))
    }

    /// Non-nullable bytes (int32 length, or compact), as a slice of the frame.
    #[inline]
    pub fn bytes(&mut self, flexible: bool) -> Result<Bytes> {
        match Self::required(self.length(flexible, true)?, false)? {
            Some(n) => self.slice_of(n),
            None => Err(DecodeError::UnexpectedNull),
        }
    }

    /// Bytes that may be null when `nullable`; a zero-copy slice.
    #[inline]
    pub fn opt_bytes(&mut self, flexible: bool, nullable: bool) -> Result<Option<Bytes>> {
        match Self::required(self.length(flexible, true)?, nullable)? {
            Some(n) => self.slice_of(n).map(Some),
            None => Ok(None),
        }
    }

    /// A `records` value that may be null when `nullable`: one chunk, a
    /// zero-copy slice of the frame.
    #[inline]
    pub fn opt_records(&mut self, flexible: bool, nullable: bool) -> Result<Option<Records>> {
        Ok(self.opt_bytes(flexible, nullable)?.map(Records::from))
    }

    /// A non-nullable `records` value; a zero-copy slice of the frame.
    #[inline]
    pub fn records(&mut self, flexible: bool) -> Result<Records> {
        self.bytes(flexible).map(Records::from)
    }

    /// Caps pre-allocation so that reserved memory stays within the bytes left.
    #[inline]
    fn capacity_for<T>(&self, count: usize) -> usize {
        count.min(self.remaining() / std::mem::size_of::<T>().max(1))
    }

    fn elements<T>(
        &mut self,
        count: usize,
        read: &mut impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.capacity_for::<T>(count));
        for _ in 0..count {
            out.push(read(self)?);
        }
        Ok(out)
    }

    /// A non-nullable array; `read` decodes one element.
    #[inline]
    pub fn array<T>(
        &mut self,
        flexible: bool,
        mut read: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        match Self::required(self.length(flexible, true)?, false)? {
            Some(n) => self.elements(n, &mut read),
            None => Err(DecodeError::UnexpectedNull),
        }
    }

    /// An array that may be null when `nullable`.
    #[inline]
    pub fn opt_array<T>(
        &mut self,
        flexible: bool,
        nullable: bool,
        mut read: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        match Self::required(self.length(flexible, true)?, nullable)? {
            Some(n) => self.elements(n, &mut read).map(Some),
            None => Ok(None),
        }
    }

    /// A struct field: when `nullable`, preceded by an int8 marker (negative
    /// means null).
    #[inline]
    pub fn opt_struct<T>(
        &mut self,
        nullable: bool,
        read: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        if nullable && self.i8()? < 0 {
            return Ok(None);
        }
        read(self).map(Some)
    }

    /// Limits reading to the next `size` bytes (a tagged field's payload).
    pub fn enter_region(&mut self, size: usize) -> Result<Region> {
        let remaining = self.remaining();
        if size > remaining {
            return Err(DecodeError::Truncated {
                needed: size,
                remaining,
            });
        }
        let region = Region {
            region_end: self.pos + size,
            outer_end: self.end,
        };
        self.end = region.region_end;
        Ok(region)
    }

    /// Moves past the region (whatever of it was not read) and restores the
    /// outer limit.
    pub fn leave_region(&mut self, region: Region) {
        self.pos = region.region_end;
        self.end = region.outer_end;
    }

    /// Reads a tagged-field section header: the number of fields.
    #[inline]
    pub fn tagged_count(&mut self) -> Result<u32> {
        self.uvarint()
    }

    /// Reads one tagged field's tag and enters its payload region.
    pub fn tagged_field(&mut self) -> Result<(u32, Region)> {
        let tag = self.uvarint()?;
        let size = self.uvarint()?;
        let size = usize::try_from(size).map_err(|_| DecodeError::InvalidLength {
            length: i64::from(size),
            remaining: self.remaining(),
        })?;
        Ok((tag, self.enter_region(size)?))
    }

    /// Skips a whole tagged-field section whose fields are all unknown.
    pub fn skip_tagged_fields(&mut self) -> Result<()> {
        let count = self.tagged_count()?;
        for _ in 0..count {
            let (_, region) = self.tagged_field()?;
            self.leave_region(region);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Decoder {
        Decoder::new(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn uvarint_limits() {
        assert_eq!(dec(&[0]).uvarint(), Ok(0));
        assert_eq!(dec(&[0x7f]).uvarint(), Ok(127));
        assert_eq!(dec(&[0x80, 0x01]).uvarint(), Ok(128));
        assert_eq!(dec(&[0xff, 0xff, 0xff, 0xff, 0x0f]).uvarint(), Ok(u32::MAX));
        assert_eq!(
            dec(&[0xff, 0xff, 0xff, 0xff, 0x1f]).uvarint(),
            Err(DecodeError::InvalidVarint)
        );
        assert_eq!(
            dec(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).uvarint(),
            Err(DecodeError::InvalidVarint)
        );
        assert!(matches!(
            dec(&[0x80]).uvarint(),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn lengths_beyond_remaining_are_refused_before_allocating() {
        // int32 array count of 2^31 - 1 with nothing after it.
        let mut d = dec(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.array(false, |d| d.i8()),
            Err(DecodeError::InvalidLength { .. })
        ));
        // Compact string claiming 4 bytes with 3 left.
        let mut d = dec(&[5, b'a', b'b', b'c']);
        assert!(matches!(
            d.string(true),
            Err(DecodeError::InvalidLength { length: 4, .. })
        ));
        // A negative non-null length.
        let mut d = dec(&[0xff, 0xfe]);
        assert!(matches!(
            d.opt_string(false, true),
            Err(DecodeError::InvalidLength { length: -2, .. })
        ));
    }

    #[test]
    fn null_handling() {
        assert_eq!(dec(&[0xff, 0xff]).opt_string(false, true), Ok(None));
        assert_eq!(
            dec(&[0xff, 0xff]).string(false),
            Err(DecodeError::UnexpectedNull)
        );
        assert_eq!(dec(&[0]).opt_bytes(true, true), Ok(None));
        assert_eq!(
            dec(&[0]).opt_bytes(true, false),
            Err(DecodeError::UnexpectedNull)
        );
        assert_eq!(dec(&[2]).bool(), Err(DecodeError::InvalidBool(2)));
        assert_eq!(
            dec(&[3, 0xff, 0xfe]).string(true),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn bytes_are_slices_of_the_frame() {
        let frame = Bytes::from(vec![0, 0, 0, 3, 7, 8, 9]);
        let mut d = Decoder::new(frame.clone());
        let got = d.bytes(false).expect("three bytes");
        assert_eq!(&got[..], &[7, 8, 9]);
        assert_eq!(got.as_ptr(), frame[4..].as_ptr());
    }

    #[test]
    fn regions_bound_tagged_payloads() {
        // One tagged field: tag 1, size 2, payload [0xaa, 0xbb]; then 0x01.
        let mut d = dec(&[1, 1, 2, 0xaa, 0xbb, 0x01]);
        assert_eq!(d.tagged_count(), Ok(1));
        let (tag, region) = d.tagged_field().expect("field");
        assert_eq!(tag, 1);
        assert_eq!(d.remaining(), 2);
        assert_eq!(d.i8(), Ok(-86));
        d.leave_region(region);
        assert_eq!(d.i8(), Ok(1));
        assert_eq!(d.remaining(), 0);
    }
}
