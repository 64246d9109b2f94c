//! Zig-zag varints as Kafka's record format uses them (protobuf encoding).

/// Reads a zig-zag varint (at most 5 bytes). `None` if truncated or overlong.
#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    // Most varints in a batch (lengths of small fields, deltas) are one byte.
    let first = *buf.get(*pos)?;
    if first & 0x80 == 0 {
        *pos += 1;
        let raw = u32::from(first);
        return Some(((raw >> 1) as i32) ^ -((raw & 1) as i32));
    }
    let mut raw: u32 = 0;
    for i in 0..5 {
        let b = *buf.get(*pos + i)?;
        raw |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *pos += i + 1;
            return Some(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    None
}

/// Reads a zig-zag varlong (at most 10 bytes). `None` if truncated or overlong.
#[inline]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let first = *buf.get(*pos)?;
    if first & 0x80 == 0 {
        *pos += 1;
        let raw = u64::from(first);
        return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
    }
    let mut raw: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos + i)?;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *pos += i + 1;
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

#[inline]
fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn write_raw(out: &mut Vec<u8>, mut raw: u64) {
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

#[inline]
fn raw_len(raw: u64) -> usize {
    // 1 byte per 7 significant bits, at least one byte.
    let bits = 64 - (raw | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub(crate) fn write_varint(out: &mut Vec<u8>, v: i32) {
    write_raw(out, zigzag32(v));
}

#[inline]
pub(crate) fn write_varlong(out: &mut Vec<u8>, v: i64) {
    write_raw(out, zigzag64(v));
}

#[inline]
pub(crate) fn varint_len(v: i32) -> usize {
    raw_len(zigzag32(v))
}

#[inline]
pub(crate) fn varlong_len(v: i64) -> usize {
    raw_len(zigzag64(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges() {
        for v in [0, 1, -1, 63, -64, 64, 300, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos), Some(v));
            assert_eq!(pos, out.len());
        }
        for v in [0, 1, -1, i64::from(i32::MAX) + 1, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Some(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn refuses_truncated_and_overlong() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), None);
        assert_eq!(read_varint(&[0xff; 6], &mut pos), None);
        assert_eq!(read_varlong(&[0xff; 11], &mut pos), None);
        assert_eq!(pos, 0);
        // Kafka's documented example: 1 encodes as 0x02, -1 as 0x01.
        assert_eq!(read_varint(&[0x02], &mut pos), Some(1));
        pos = 0;
        assert_eq!(read_varint(&[0x01], &mut pos), Some(-1));
    }
}
