//! The replication protocol between shards' replication ports: our own small
//! framed format (see docs/design-notes.md for why not Kafka's Fetch).
//!
//! A frame is a big-endian `u32` body length, then the body: a `u8` kind and
//! the fields of that kind, big-endian. Strings are a `u16` length and UTF-8;
//! record bytes are a `u32` length and whole Kafka batches as stored. The
//! decoder checks every length against the bytes actually present before
//! slicing, so it never allocates from a length prefix; record bytes stay a
//! zero-copy slice of the frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{NodeId, ShardId};

/// The protocol version sent in `Hello` (2: `StartAt`; 3: the leader's log
/// start in `Batches`). A peer of another version is not understood: the
/// connection is closed.
pub const PROTOCOL_VERSION: u16 = 3;
/// The largest frame body accepted (the records of one message dominate).
pub const MAX_FRAME_BYTES: u32 = 16 << 20;
/// Kafka's limit on a topic name.
pub const MAX_TOPIC_BYTES: usize = 249;
/// Bytes of the frame length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// One partition: topic name and index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionRef {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// First frame both ways: who is at the other end.
    Hello {
        version: u16,
        node: NodeId,
        shard: ShardId,
    },
    /// Follower to leader: where does `requested_epoch` end in your log?
    EpochQuery {
        tp: PartitionRef,
        leader_epoch: i32,
        requested_epoch: i32,
    },
    /// Leader to follower: the largest epoch <= the requested one (echoed),
    /// and its end offset (or an error code and -1, -1).
    EpochAnswer {
        tp: PartitionRef,
        leader_epoch: i32,
        requested_epoch: i32,
        error_code: i16,
        epoch: i32,
        end_offset: i64,
    },
    /// Follower to leader: stream to me from `log_end` (after truncation).
    Subscribe {
        tp: PartitionRef,
        leader_epoch: i32,
        log_end: i64,
    },
    /// Leader to follower: whole batches from the follower's log end, the
    /// leader's high watermark and its log start (the follower's log start
    /// follows it). Empty `records`: an update of those two.
    Batches {
        tp: PartitionRef,
        leader_epoch: i32,
        high_watermark: i64,
        log_start: i64,
        records: Bytes,
    },
    /// Follower to leader: my log is durable (per my flush policy) up to here.
    Ack {
        tp: PartitionRef,
        leader_epoch: i32,
        log_end: i64,
    },
    /// Either way: the message of `leader_epoch` was refused with `error_code`
    /// (a stale leader learns it was deposed).
    Refused {
        tp: PartitionRef,
        leader_epoch: i32,
        error_code: i16,
    },
    /// Leader to follower: the offsets you would continue from are gone here
    /// (my log starts at `log_start`): empty your log, restart it at
    /// `log_start`, and subscribe there (Kafka: `OFFSET_OUT_OF_RANGE`, then
    /// `truncateFullyAndStartAt`).
    StartAt {
        tp: PartitionRef,
        leader_epoch: i32,
        log_start: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    FrameTooLarge { len: u64, max: u32 },
    #[error("truncated: {field} needs {need} bytes, {have} left")]
    Truncated {
        field: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("topic name of {0} bytes is over 249")]
    TopicTooLong(usize),
    #[error("topic name is not UTF-8")]
    TopicNotUtf8,
    #[error("{0} bytes left after the message")]
    TrailingBytes(usize),
    #[error("empty frame")]
    EmptyFrame,
}

const KIND_HELLO: u8 = 1;
const KIND_EPOCH_QUERY: u8 = 2;
const KIND_EPOCH_ANSWER: u8 = 3;
const KIND_SUBSCRIBE: u8 = 4;
const KIND_BATCHES: u8 = 5;
const KIND_ACK: u8 = 6;
const KIND_REFUSED: u8 = 7;
const KIND_START_AT: u8 = 8;

impl Message {
    /// Appends the whole frame (length prefix included) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), WireError> {
        let start = dst.len();
        dst.put_u32(0);
        match self {
            Message::Hello {
                version,
                node,
                shard,
            } => {
                dst.put_u8(KIND_HELLO);
                dst.put_u16(*version);
                dst.put_i32(node.0);
                dst.put_u16(shard.0);
            }
            Message::EpochQuery {
                tp,
                leader_epoch,
                requested_epoch,
            } => {
                dst.put_u8(KIND_EPOCH_QUERY);
                put_tp(dst, tp)?;
                dst.put_i32(*leader_epoch);
                dst.put_i32(*requested_epoch);
            }
            Message::EpochAnswer {
                tp,
                leader_epoch,
                requested_epoch,
                error_code,
                epoch,
                end_offset,
            } => {
                dst.put_u8(KIND_EPOCH_ANSWER);
                put_tp(dst, tp)?;
                dst.put_i32(*leader_epoch);
                dst.put_i32(*requested_epoch);
                dst.put_i16(*error_code);
                dst.put_i32(*epoch);
                dst.put_i64(*end_offset);
            }
            Message::Subscribe {
                tp,
                leader_epoch,
                log_end,
            } => {
                dst.put_u8(KIND_SUBSCRIBE);
                put_tp(dst, tp)?;
                dst.put_i32(*leader_epoch);
                dst.put_i64(*log_end);
            }
            Message::Batches {
                tp,
                leader_epoch,
                high_watermark,
                log_start,
                records,
            } => {
                dst.put_u8(KIND_BATCHES);
                put_tp(dst, tp)?;
                dst.put_i32(*leader_epoch);
                dst.put_i64(*high_watermark);
                dst.put_i64(*log_start);
                let len = u32::try_from(records.len())
                    .ok()
                    .filter(|&l| l <= MAX_FRAME_BYTES)
                    .ok_or(WireError::FrameTooLarge {
                        len: records.len() as u64,
                        max: MAX_FRAME_BYTES,
                    })?;
                dst.put_u32(len);
                dst.put_slice(records);
            }
            Message::Ack {
                tp,
                leader_epoch,
                log_end,
            } => {
                dst.put_u8(KIND_ACK);
                put_tp(dst, tp)?;
                dst.put_i32(*leader_epoch);
                dst.put_i64(*log_end);
            }
            Message::Refused {
                tp,
                leader_epoch,
                error_code,
            } => {
                dst.put_u8(KIND_REFUSED);
                put_tp(dst, tp)?;
                dst.put_i32(*leader_epoch);
                dst.put_i16(*error_code);
            }
            Message::StartAt {
                tp,
                leader_epoch,
                log_start,
            } => {
                dst.put_u8(KIND_START_AT);
                put_tp(dst, tp)?;
                dst.put_i32(*leader_epoch);
                dst.put_i64(*log_start);
            }
        }
        let body = (dst.len() - start - FRAME_HEADER_BYTES) as u64;
        if body > u64::from(MAX_FRAME_BYTES) {
            dst.truncate(start);
            return Err(WireError::FrameTooLarge {
                len: body,
                max: MAX_FRAME_BYTES,
            });
        }
        dst[start..start + FRAME_HEADER_BYTES].copy_from_slice(&(body as u32).to_be_bytes());
        Ok(())
    }

    /// Decodes one frame body (without its length prefix).
    pub fn decode(mut body: Bytes) -> Result<Message, WireError> {
        if body.is_empty() {
            return Err(WireError::EmptyFrame);
        }
        let kind = body.get_u8();
        let b = &mut body;
        let msg = match kind {
            KIND_HELLO => Message::Hello {
                version: u16_(b, "version")?,
                node: NodeId(i32_(b, "node")?),
                shard: ShardId(u16_(b, "shard")?),
            },
            KIND_EPOCH_QUERY => Message::EpochQuery {
                tp: tp_(b)?,
                leader_epoch: i32_(b, "leader_epoch")?,
                requested_epoch: i32_(b, "requested_epoch")?,
            },
            KIND_EPOCH_ANSWER => Message::EpochAnswer {
                tp: tp_(b)?,
                leader_epoch: i32_(b, "leader_epoch")?,
                requested_epoch: i32_(b, "requested_epoch")?,
                error_code: i16_(b, "error_code")?,
                epoch: i32_(b, "epoch")?,
                end_offset: i64_(b, "end_offset")?,
            },
            KIND_SUBSCRIBE => Message::Subscribe {
                tp: tp_(b)?,
                leader_epoch: i32_(b, "leader_epoch")?,
                log_end: i64_(b, "log_end")?,
            },
            KIND_BATCHES => {
                let tp = tp_(b)?;
                let leader_epoch = i32_(b, "leader_epoch")?;
                let high_watermark = i64_(b, "high_watermark")?;
                let log_start = i64_(b, "log_start")?;
                let len = u32_(b, "records length")? as usize;
                need(b, len, "records")?;
                Message::Batches {
                    tp,
                    leader_epoch,
                    high_watermark,
                    log_start,
                    records: b.split_to(len),
                }
            }
            KIND_ACK => Message::Ack {
                tp: tp_(b)?,
                leader_epoch: i32_(b, "leader_epoch")?,
                log_end: i64_(b, "log_end")?,
            },
            KIND_REFUSED => Message::Refused {
                tp: tp_(b)?,
                leader_epoch: i32_(b, "leader_epoch")?,
                error_code: i16_(b, "error_code")?,
            },
            KIND_START_AT => Message::StartAt {
                tp: tp_(b)?,
                leader_epoch: i32_(b, "leader_epoch")?,
                log_start: i64_(b, "log_start")?,
            },
            other => return Err(WireError::UnknownKind(other)),
        };
        if !body.is_empty() {
            return Err(WireError::TrailingBytes(body.len()));
        }
        Ok(msg)
    }
}

/// Takes one whole frame off the front of `buf`: `Ok(None)` until it has
/// arrived. A length over [`MAX_FRAME_BYTES`] is an error at once (the
/// connection is then closed), before any byte of the body is buffered.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len > MAX_FRAME_BYTES {
        return Err(WireError::FrameTooLarge {
            len: u64::from(len),
            max: MAX_FRAME_BYTES,
        });
    }
    let len = len as usize;
    if buf.len() < FRAME_HEADER_BYTES + len {
        return Ok(None);
    }
    buf.advance(FRAME_HEADER_BYTES);
    let body = buf.split_to(len).freeze();
    Message::decode(body).map(Some)
}

fn put_tp(dst: &mut BytesMut, tp: &PartitionRef) -> Result<(), WireError> {
    let name = tp.topic.as_bytes();
    if name.len() > MAX_TOPIC_BYTES {
        return Err(WireError::TopicTooLong(name.len()));
    }
    dst.put_u16(name.len() as u16);
    dst.put_slice(name);
    dst.put_i32(tp.partition);
    Ok(())
}

fn need(b: &Bytes, n: usize, field: &'static str) -> Result<(), WireError> {
    if b.len() < n {
        return Err(WireError::Truncated {
            field,
            need: n,
            have: b.len(),
        });
    }
    Ok(())
}

fn u16_(b: &mut Bytes, field: &'static str) -> Result<u16, WireError> {
    need(b, 2, field)?;
    Ok(b.get_u16())
}

fn i16_(b: &mut Bytes, field: &'static str) -> Result<i16, WireError> {
    need(b, 2, field)?;
    Ok(b.get_i16())
}

fn u32_(b: &mut Bytes, field: &'static str) -> Result<u32, WireError> {
    need(b, 4, field)?;
    Ok(b.get_u32())
}

fn i32_(b: &mut Bytes, field: &'static str) -> Result<i32, WireError> {
    need(b, 4, field)?;
    Ok(b.get_i32())
}

fn i64_(b: &mut Bytes, field: &'static str) -> Result<i64, WireError> {
    need(b, 8, field)?;
    Ok(b.get_i64())
}

fn tp_(b: &mut Bytes) -> Result<PartitionRef, WireError> {
    let len = u16_(b, "topic length")? as usize;
    if len > MAX_TOPIC_BYTES {
        return Err(WireError::TopicTooLong(len));
    }
    need(b, len, "topic")?;
    let name = b.split_to(len);
    let topic = std::str::from_utf8(&name)
        .map_err(|_| WireError::TopicNotUtf8)?
        .to_owned();
    let partition = i32_(b, "partition")?;
    Ok(PartitionRef { topic, partition })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> PartitionRef {
        PartitionRef {
            topic: "orders".into(),
            partition: 7,
        }
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                node: NodeId(3),
                shard: ShardId(1),
            },
            Message::EpochQuery {
                tp: tp(),
                leader_epoch: 5,
                requested_epoch: 4,
            },
            Message::EpochAnswer {
                tp: tp(),
                leader_epoch: 5,
                requested_epoch: 4,
                error_code: 0,
                epoch: 3,
                end_offset: 1_000,
            },
            Message::Subscribe {
                tp: tp(),
                leader_epoch: 5,
                log_end: 990,
            },
            Message::Batches {
                tp: tp(),
                leader_epoch: 5,
                high_watermark: 980,
                log_start: 0,
                records: Bytes::from_static(b"pretend these are batches"),
            },
            Message::Batches {
                tp: tp(),
                leader_epoch: 5,
                high_watermark: 990,
                log_start: 512,
                records: Bytes::new(),
            },
            Message::Ack {
                tp: tp(),
                leader_epoch: 5,
                log_end: 1_001,
            },
            Message::Refused {
                tp: tp(),
                leader_epoch: 4,
                error_code: 74,
            },
            Message::StartAt {
                tp: tp(),
                leader_epoch: 5,
                log_start: 4_096,
            },
        ]
    }

    #[test]
    fn every_message_round_trips_one_frame_at_a_time_and_back_to_back() {
        let mut stream = BytesMut::new();
        for m in samples() {
            let mut one = BytesMut::new();
            m.encode(&mut one).expect("encode");
            stream.extend_from_slice(&one);
            let got = decode_frame(&mut one)
                .expect("decode")
                .expect("whole frame");
            assert_eq!(got, m);
            assert!(one.is_empty());
        }
        for m in samples() {
            assert_eq!(decode_frame(&mut stream).expect("decode"), Some(m));
        }
        assert!(stream.is_empty());
    }

    #[test]
    fn golden_bytes_of_an_ack() {
        let mut b = BytesMut::new();
        Message::Ack {
            tp: PartitionRef {
                topic: "t".into(),
                partition: 2,
            },
            leader_epoch: 9,
            log_end: 0x0102,
        }
        .encode(&mut b)
        .expect("encode");
        assert_eq!(
            &b[..],
            &[0, 0, 0, 20, 6, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 1, 2]
        );
    }

    #[test]
    fn golden_bytes_of_a_start_at() {
        let mut b = BytesMut::new();
        Message::StartAt {
            tp: PartitionRef {
                topic: "t".into(),
                partition: 2,
            },
            leader_epoch: 9,
            log_start: 0x0102,
        }
        .encode(&mut b)
        .expect("encode");
        assert_eq!(
            &b[..],
            &[0, 0, 0, 20, 8, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 1, 2]
        );
    }

    #[test]
    fn golden_bytes_of_an_empty_batches() {
        let mut b = BytesMut::new();
        Message::Batches {
            tp: PartitionRef {
                topic: "t".into(),
                partition: 2,
            },
            leader_epoch: 9,
            high_watermark: 0x0304,
            log_start: 0x0102,
            records: Bytes::new(),
        }
        .encode(&mut b)
        .expect("encode");
        assert_eq!(
            &b[..],
            &[
                0, 0, 0, 32, 5, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 3, 4, 0, 0,
                0, 0, 0, 0, 1, 2, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn a_frame_cut_at_every_byte_waits_and_a_body_cut_at_every_byte_is_a_typed_error() {
        for m in samples() {
            let mut whole = BytesMut::new();
            m.encode(&mut whole).expect("encode");
            for cut in 0..whole.len() {
                let mut part = BytesMut::from(&whole[..cut]);
                assert_eq!(decode_frame(&mut part), Ok(None), "{m:?} cut at {cut}");
                assert_eq!(part.len(), cut, "nothing consumed");
            }
            let body = whole.freeze().slice(FRAME_HEADER_BYTES..);
            for cut in 0..body.len() {
                let r = Message::decode(body.slice(..cut));
                assert!(
                    matches!(r, Err(WireError::Truncated { .. } | WireError::EmptyFrame)),
                    "{m:?} cut at {cut}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn lengths_are_checked_before_anything_is_buffered_or_sliced() {
        let mut huge = BytesMut::from(&(MAX_FRAME_BYTES + 1).to_be_bytes()[..]);
        assert!(matches!(
            decode_frame(&mut huge),
            Err(WireError::FrameTooLarge { .. })
        ));
        // A records length far beyond the frame.
        let mut b = BytesMut::new();
        b.put_u8(KIND_BATCHES);
        b.put_u16(1);
        b.put_u8(b't');
        b.put_i32(0);
        b.put_i32(1);
        b.put_i64(0);
        b.put_i64(0);
        b.put_u32(u32::MAX);
        let r = Message::decode(b.freeze());
        assert!(
            matches!(
                r,
                Err(WireError::Truncated {
                    field: "records",
                    ..
                })
            ),
            "{r:?}"
        );
        // A topic length over Kafka's limit, and one that is not UTF-8.
        let mut b = BytesMut::new();
        b.put_u8(KIND_ACK);
        b.put_u16(250);
        assert_eq!(
            Message::decode(b.freeze()),
            Err(WireError::TopicTooLong(250))
        );
        let mut b = BytesMut::new();
        b.put_u8(KIND_ACK);
        b.put_u16(1);
        b.put_u8(0xff);
        assert_eq!(Message::decode(b.freeze()), Err(WireError::TopicNotUtf8));
        assert_eq!(
            Message::decode(Bytes::from_static(&[42])),
            Err(WireError::UnknownKind(42))
        );
        let mut b = BytesMut::new();
        Message::Hello {
            version: 1,
            node: NodeId(1),
            shard: ShardId(0),
        }
        .encode(&mut b)
        .expect("encode");
        b.put_u8(0);
        let body = b.freeze().slice(FRAME_HEADER_BYTES..);
        assert_eq!(Message::decode(body), Err(WireError::TrailingBytes(1)));
    }

    fn message() -> impl proptest::strategy::Strategy<Value = Message> {
        use proptest::prelude::*;
        let tp = ("[a-z._-]{0,20}", any::<i32>())
            .prop_map(|(topic, partition)| PartitionRef { topic, partition });
        prop_oneof![
            (any::<u16>(), any::<i32>(), any::<u16>()).prop_map(|(v, n, s)| Message::Hello {
                version: v,
                node: NodeId(n),
                shard: ShardId(s)
            }),
            (tp.clone(), any::<i32>(), any::<i32>()).prop_map(|(tp, e, r)| {
                Message::EpochQuery {
                    tp,
                    leader_epoch: e,
                    requested_epoch: r,
                }
            }),
            (tp.clone(), any::<(i32, i32, i16, i32, i64)>()).prop_map(|(tp, (e, r, c, x, o))| {
                Message::EpochAnswer {
                    tp,
                    leader_epoch: e,
                    requested_epoch: r,
                    error_code: c,
                    epoch: x,
                    end_offset: o,
                }
            }),
            (
                tp.clone(),
                any::<i32>(),
                any::<(i64, i64)>(),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(tp, e, (hw, start), r)| Message::Batches {
                    tp,
                    leader_epoch: e,
                    high_watermark: hw,
                    log_start: start,
                    records: Bytes::from(r),
                }),
            (tp.clone(), any::<i32>(), any::<i64>()).prop_map(|(tp, e, o)| Message::Ack {
                tp,
                leader_epoch: e,
                log_end: o
            }),
            (tp.clone(), any::<i32>(), any::<i16>()).prop_map(|(tp, e, c)| Message::Refused {
                tp,
                leader_epoch: e,
                error_code: c
            }),
            (tp, any::<i32>(), any::<i64>()).prop_map(|(tp, e, o)| Message::StartAt {
                tp,
                leader_epoch: e,
                log_start: o
            }),
        ]
    }

    proptest::proptest! {
        #[test]
        fn any_message_round_trips(m in message()) {
            let mut b = BytesMut::new();
            m.encode(&mut b).expect("encode");
            proptest::prop_assert_eq!(decode_frame(&mut b), Ok(Some(m)));
        }

        /// Arbitrary bytes give a message or a typed error, never a panic,
        /// and a frame length is never trusted beyond the bytes present.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Message::decode(Bytes::from(bytes.clone()));
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode_frame(&mut buf) {}
        }
    }

    #[test]
    fn a_topic_name_over_the_limit_is_not_encoded() {
        let mut b = BytesMut::new();
        let r = Message::Ack {
            tp: PartitionRef {
                topic: "x".repeat(250),
                partition: 0,
            },
            leader_epoch: 0,
            log_end: 0,
        }
        .encode(&mut b);
        assert_eq!(r, Err(WireError::TopicTooLong(250)));
    }
}
