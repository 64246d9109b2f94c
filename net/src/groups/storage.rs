//! How groups are stored in `__consumer_offsets`: one record per committed
//! offset and one per group's metadata, keyed so that the latest record of a
//! key is its value (a null value deletes it). Replaying a partition from its
//! start rebuilds every group it holds; compaction (a separate issue) may drop
//! all but the latest record of each key without changing the result.
//!
//! sluice's own encoding, not Kafka's (so `kafka-dump-log --offsets-decoder`
//! cannot read it). Big-endian integers; `str` is a u32 length then UTF-8;
//! `opt` is a u8 (0 = absent, 1 = present) then the value; `bytes` is a u32
//! length then the bytes.
//!
//! Key (version 1): `u8 key_version = 1`, `u8 kind`, then
//!   kind 1, a committed offset: `str group, str topic, i32 partition`;
//!   kind 2, a group's metadata: `str group`.
//! Offset value (version 1): `u8 1, i64 offset, i32 leader_epoch,
//!   i64 commit_ts_ms, i64 expire_ts_ms (-1 = none), str metadata`.
//! Group value (version 1): `u8 1, opt str protocol_type, i32 generation,
//!   opt str protocol, opt str leader, i64 state_since_ms, u32 member_count`,
//!   then per member: `str id, opt str instance_id, str client_id,
//!   str client_host, i32 session_timeout_ms, i32 rebalance_timeout_ms,
//!   bytes metadata (of the selected protocol), bytes assignment`.
//! A reader refuses versions it does not know rather than guess.

use bytes::Bytes;

use super::group::{Committed, Group, GroupState, Member};

const KEY_VERSION: u8 = 1;
const KIND_OFFSET: u8 = 1;
const KIND_GROUP: u8 = 2;
const VALUE_VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl Key {
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group { group } => group,
        }
    }
}

/// A group's stored metadata, as read back.
#[derive(Debug, PartialEq)]
pub struct StoredGroup {
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_since_ms: i64,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, PartialEq)]
pub struct StoredMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("stored fields are far below 4 GiB");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }
    fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(s) => self.u8(1).str(s),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: {n} bytes wanted, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let b = self.take(4)?;
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        self.take(len)
    }
    fn str(&mut self) -> Result<String, String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }
    fn opt_str(&mut self) -> Result<Option<String>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            f => Err(format!("bad presence flag {f}")),
        }
    }
    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.0.len()))
        }
    }
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(16 + group.len() + topic.len()));
    w.u8(KEY_VERSION)
        .u8(KIND_OFFSET)
        .str(group)
        .str(topic)
        .i32(partition);
    w.0
}

pub fn group_key(group: &str) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(8 + group.len()));
    w.u8(KEY_VERSION).u8(KIND_GROUP).str(group);
    w.0
}

pub fn decode_key(b: &[u8]) -> Result<Key, String> {
    let mut r = Reader(b);
    let version = r.u8()?;
    if version != KEY_VERSION {
        return Err(format!("unknown key version {version}"));
    }
    let key = match r.u8()? {
        KIND_OFFSET => Key::Offset {
            group: r.str()?,
            topic: r.str()?,
            partition: r.i32()?,
        },
        KIND_GROUP => Key::Group { group: r.str()? },
        kind => return Err(format!("unknown key kind {kind}")),
    };
    r.end()?;
    Ok(key)
}

pub fn offset_value(c: &Committed) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(40 + c.metadata.len()));
    w.u8(VALUE_VERSION)
        .i64(c.offset)
        .i32(c.leader_epoch)
        .i64(c.commit_ts_ms)
        .i64(c.expire_ts_ms)
        .str(&c.metadata);
    w.0
}

pub fn decode_offset_value(b: &[u8]) -> Result<Committed, String> {
    let mut r = Reader(b);
    let version = r.u8()?;
    if version != VALUE_VERSION {
        return Err(format!("unknown offset value version {version}"));
    }
    let c = Committed {
        offset: r.i64()?,
        leader_epoch: r.i32()?,
        commit_ts_ms: r.i64()?,
        expire_ts_ms: r.i64()?,
        metadata: r.str()?,
    };
    r.end()?;
    Ok(c)
}

/// The group's metadata record. Only a group in a generation (Stable, or
/// Empty) is worth storing: mid-rebalance state is rebuilt by the members.
pub fn group_value(g: &Group) -> Vec<u8> {
    let protocol = g.protocol.as_deref().unwrap_or("");
    let stable = g.state == GroupState::Stable;
    let mut w = Writer(Vec::with_capacity(64));
    w.u8(VALUE_VERSION)
        .opt_str(g.protocol_type.as_deref())
        .i32(g.generation)
        .opt_str(if stable { g.protocol.as_deref() } else { None })
        .opt_str(if stable { g.leader.as_deref() } else { None })
        .i64(g.state_since_ms);
    let members: Vec<&Member> = if stable {
        g.members.values().collect()
    } else {
        Vec::new()
    };
    w.i32(members.len() as i32);
    for m in members {
        w.str(&m.id)
            .opt_str(m.instance_id.as_deref())
            .str(&m.client_id)
            .str(&m.client_host)
            .i32(m.session_timeout_ms)
            .i32(m.rebalance_timeout_ms)
            .bytes(&m.metadata(protocol))
            .bytes(&m.assignment);
    }
    w.0
}

pub fn decode_group_value(b: &[u8]) -> Result<StoredGroup, String> {
    let mut r = Reader(b);
    let version = r.u8()?;
    if version != VALUE_VERSION {
        return Err(format!("unknown group value version {version}"));
    }
    let protocol_type = r.opt_str()?;
    let generation = r.i32()?;
    let protocol = r.opt_str()?;
    let leader = r.opt_str()?;
    let state_since_ms = r.i64()?;
    let count = r.i32()?;
    if count < 0 {
        return Err(format!("negative member count {count}"));
    }
    // Bounded by the bytes present, never by the count field alone.
    let mut members = Vec::with_capacity((count as usize).min(b.len() / 32));
    for _ in 0..count {
        members.push(StoredMember {
            id: r.str()?,
            instance_id: r.opt_str()?,
            client_id: r.str()?,
            client_host: r.str()?,
            session_timeout_ms: r.i32()?,
            rebalance_timeout_ms: r.i32()?,
            metadata: Bytes::copy_from_slice(r.bytes()?),
            assignment: Bytes::copy_from_slice(r.bytes()?),
        });
    }
    r.end()?;
    Ok(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        state_since_ms,
        members,
    })
}

/// Rebuilds a group from its stored metadata at load time.
pub fn restore_group(id: String, s: StoredGroup, now_ms: i64) -> Group {
    let protocol = s.protocol.clone().unwrap_or_default();
    let protocol_type = s.protocol_type.clone().unwrap_or_default();
    let members = s
        .members
        .into_iter()
        .map(|m| {
            Group::stored_member(
                m.id,
                m.instance_id,
                m.client_id,
                m.client_host,
                m.session_timeout_ms,
                m.rebalance_timeout_ms,
                protocol_type.clone(),
                (protocol.clone(), m.metadata),
                m.assignment,
            )
        })
        .collect();
    Group::restore(
        id,
        s.generation,
        s.protocol_type,
        s.protocol,
        s.leader,
        s.state_since_ms,
        members,
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = offset_key("g", "orders", 7);
        assert_eq!(
            decode_key(&k).unwrap(),
            Key::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7
            }
        );
        assert_eq!(
            decode_key(&group_key("g")).unwrap(),
            Key::Group { group: "g".into() }
        );
        // Golden bytes: the format is on disk, it must not drift.
        assert_eq!(
            offset_key("g", "t", 1),
            [1, 1, 0, 0, 0, 1, b'g', 0, 0, 0, 1, b't', 0, 0, 0, 1]
        );
    }

    #[test]
    fn offset_value_round_trip_and_truncation() {
        let c = Committed {
            offset: 42,
            leader_epoch: -1,
            metadata: "meta ✓".into(),
            commit_ts_ms: 1_700_000_000_000,
            expire_ts_ms: -1,
        };
        let v = offset_value(&c);
        assert_eq!(decode_offset_value(&v).unwrap(), c);
        for cut in 0..v.len() {
            assert!(decode_offset_value(&v[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = v.clone();
        bad[0] = 9;
        assert!(decode_offset_value(&bad).unwrap_err().contains("version"));
    }

    #[test]
    fn group_value_round_trip_and_truncation() {
        use super::super::group::{GroupConfig, JoinRequest, Reply};
        let cfg = GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        };
        let mut g = Group::new("g".into(), 0);
        let join = g.join(
            JoinRequest {
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 20_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
                ..Default::default()
            },
            0,
            &cfg,
        );
        let Reply::Later(mut rx) = join else {
            panic!("a join waits")
        };
        let resp = rx.try_recv().unwrap().expect("completed");
        g.sync(
            &resp.member_id,
            Some("i1"),
            resp.generation_id,
            None,
            None,
            vec![(resp.member_id.clone(), Bytes::from_static(b"asg"))],
            1,
        );
        assert_eq!(g.state, GroupState::Stable);
        let v = group_value(&g);
        let s = decode_group_value(&v).unwrap();
        assert_eq!(s.generation, 1);
        assert_eq!(s.protocol.as_deref(), Some("range"));
        assert_eq!(s.members.len(), 1);
        assert_eq!(s.members[0].instance_id.as_deref(), Some("i1"));
        assert_eq!(&s.members[0].metadata[..], b"sub");
        assert_eq!(&s.members[0].assignment[..], b"asg");
        for cut in 0..v.len() {
            assert!(decode_group_value(&v[..cut]).is_err(), "cut at {cut}");
        }
        let r = restore_group("g".into(), s, 100);
        assert_eq!(r.state, GroupState::Stable);
        assert_eq!(r.generation, 1);
        assert_eq!(r.static_members.get("i1"), Some(&resp.member_id));
        assert_eq!(r.leader.as_deref(), Some(resp.member_id.as_str()));
    }
}
