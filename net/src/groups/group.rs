//! One consumer group under the classic rebalance protocol: a pure state
//! machine driven by requests and by `tick(now_ms)`, with no sockets, clocks
//! or storage. Delayed answers (a JoinGroup waiting for the other members, a
//! SyncGroup waiting for the leader's assignment) are oneshot channels the
//! caller awaits; changes that must be persisted raise `metadata_dirty`.
//!
//! States and transitions follow Kafka's classic group coordinator:
//! Empty -> PreparingRebalance (a member joins) -> CompletingRebalance (every
//! known member rejoined, or the rebalance timeout passed: a new generation,
//! the leader gets everyone's metadata) -> Stable (the leader's SyncGroup
//! hands out the assignment) -> PreparingRebalance (membership or metadata
//! changed) ... -> Empty (the last member left or expired).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use futures::channel::oneshot;
use sluice_codec::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use sluice_codec::sync_group_response::SyncGroupResponse;
use sluice_codec::ErrorCode;

/// Limits and timeouts of groups (Kafka's broker configs where there is one).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more
    /// members before its first generation.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`: members (joined or pending) one group may have.
    pub max_members: usize,
    /// Largest protocol metadata one member may send in JoinGroup.
    pub max_member_metadata_bytes: usize,
    /// `offset.metadata.max.bytes`: largest commit metadata string.
    pub max_offset_metadata_bytes: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
}

/// Kafka's `group.max.size` is unbounded by default; sluice bounds it.
pub const DEFAULT_MAX_MEMBERS: usize = 1000;
/// One member's protocol metadata (its subscription) may be at most this large.
pub const DEFAULT_MAX_MEMBER_METADATA_BYTES: usize = 1 << 20;

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_members: DEFAULT_MAX_MEMBERS,
            max_member_metadata_bytes: DEFAULT_MAX_MEMBER_METADATA_BYTES,
            max_offset_metadata_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// An answer now, or one to await.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: i64,
    join_waiter: Option<oneshot::Sender<JoinGroupResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
}

impl Member {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ts_ms: i64,
    /// -1: expires by the group's state and `offsets.retention.minutes`.
    pub expire_ts_ms: i64,
}

/// A JoinGroup request, version-independent.
#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader rejoining a stable group gets the members
    /// with `skip_assignment`.
    pub supports_skip_assignment: bool,
}

/// A member to remove in LeaveGroup.
#[derive(Clone, Debug)]
pub struct LeavingMember {
    pub member_id: String,
    pub instance_id: Option<String>,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// When the group entered its current state (offset expiry of empty groups).
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending: HashMap<String, i64>,
    /// PreparingRebalance: when the join phase ends at the latest.
    join_deadline_ms: i64,
    /// PreparingRebalance of a new group: the initial delay may extend the join
    /// phase up to this point.
    initial_delay_limit_ms: Option<i64>,
    /// CompletingRebalance: when members that did not sync are dropped.
    sync_deadline_ms: i64,
    pub offsets: BTreeMap<(String, i32), Committed>,
    /// The group's metadata changed and should be written.
    pub metadata_dirty: bool,
}

fn join_error(member_id: &str, code: ErrorCode) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code: code.0,
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

fn sync_error(code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code: code.0,
        protocol_type: None,
        protocol_name: None,
        ..Default::default()
    }
}

fn new_member_id(prefix: &str) -> String {
    let prefix = if prefix.is_empty() { "member" } else { prefix };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(id: String, now_ms: i64) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            join_deadline_ms: 0,
            initial_delay_limit_ms: None,
            sync_deadline_ms: 0,
            offsets: BTreeMap::new(),
            metadata_dirty: false,
        }
    }

    /// Rebuilds a group from its stored metadata (members are given a fresh
    /// session to come back).
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        id: String,
        generation: i32,
        protocol_type: Option<String>,
        protocol: Option<String>,
        leader: Option<String>,
        state_since_ms: i64,
        members: Vec<Member>,
        now_ms: i64,
    ) -> Self {
        let mut g = Group::new(id, state_since_ms);
        g.generation = generation;
        g.protocol_type = protocol_type;
        for mut m in members {
            m.last_heartbeat_ms = now_ms;
            if let Some(i) = &m.instance_id {
                g.static_members.insert(i.clone(), m.id.clone());
            }
            g.members.insert(m.id.clone(), m);
        }
        if !g.members.is_empty() && protocol.is_some() {
            g.protocol = protocol;
            g.leader = leader.filter(|l| g.members.contains_key(l));
            if g.leader.is_none() {
                g.leader = g.members.keys().next().cloned();
            }
            g.state = GroupState::Stable;
        } else {
            g.members.clear();
            g.static_members.clear();
        }
        g
    }

    /// A restored member (see [`Group::restore`]).
    #[allow(clippy::too_many_arguments)]
    pub fn stored_member(
        id: String,
        instance_id: Option<String>,
        client_id: String,
        client_host: String,
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        protocol_type: String,
        protocol: (String, Bytes),
        assignment: Bytes,
    ) -> Member {
        Member {
            id,
            instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type,
            protocols: vec![protocol],
            assignment,
            last_heartbeat_ms: 0,
            join_waiter: None,
            sync_waiter: None,
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut set: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            set.retain(|p| m.protocols.iter().any(|(n, _)| n == p));
        }
        set
    }

    /// Each member votes for its most preferred candidate; most votes wins,
    /// ties go to the candidate listed first.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                    v.1 += 1;
                }
            }
        }
        let mut best: Option<(String, usize)> = None;
        for (c, n) in votes {
            if best.as_ref().is_none_or(|(_, b)| n > *b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c)
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn current_members(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|m| JoinGroupResponseMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// The JoinGroup answer describing the current generation.
    fn join_answer(&self, member_id: &str, with_members: bool) -> JoinGroupResponse {
        JoinGroupResponse {
            error_code: 0,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.current_members()
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    // ---- JoinGroup ----

    pub fn join(
        &mut self,
        req: JoinRequest,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Reply<JoinGroupResponse> {
        let fail = |code| Reply::Now(join_error(&req.member_id, code));
        if self.state == GroupState::Dead {
            return fail(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        if req.session_timeout_ms < cfg.min_session_timeout_ms
            || req.session_timeout_ms > cfg.max_session_timeout_ms
        {
            return fail(ErrorCode::INVALID_SESSION_TIMEOUT);
        }
        if req
            .protocols
            .iter()
            .any(|(_, m)| m.len() > cfg.max_member_metadata_bytes)
        {
            return fail(ErrorCode::MESSAGE_TOO_LARGE);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
        }
        if req.member_id.is_empty() {
            self.join_unknown_member(req, now_ms, cfg)
        } else {
            self.join_known_member(req, now_ms, cfg)
        }
    }

    fn join_unknown_member(
        &mut self,
        req: JoinRequest,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Reply<JoinGroupResponse> {
        if let Some(instance) = req.instance_id.clone() {
            let new_id = new_member_id(&instance);
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(old_id, new_id, req, now_ms, cfg);
            }
            if self.members.len() + self.pending.len() >= cfg.max_members {
                return Reply::Now(join_error("", ErrorCode::GROUP_MAX_SIZE_REACHED));
            }
            return self.add_member_and_rebalance(new_id, req, now_ms, cfg);
        }
        if self.members.len() + self.pending.len() >= cfg.max_members {
            return Reply::Now(join_error("", ErrorCode::GROUP_MAX_SIZE_REACHED));
        }
        let new_id = new_member_id(&req.client_id);
        if req.require_known_member_id {
            self.pending
                .insert(new_id.clone(), now_ms + i64::from(req.session_timeout_ms));
            return Reply::Now(join_error(&new_id, ErrorCode::MEMBER_ID_REQUIRED));
        }
        self.add_member_and_rebalance(new_id, req, now_ms, cfg)
    }

    fn join_known_member(
        &mut self,
        req: JoinRequest,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Reply<JoinGroupResponse> {
        let id = req.member_id.clone();
        if self.pending.remove(&id).is_some() {
            return self.add_member_and_rebalance(id, req, now_ms, cfg);
        }
        if let Some(instance) = &req.instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|known| *known != id)
            {
                return Reply::Now(join_error(&id, ErrorCode::FENCED_INSTANCE_ID));
            }
        }
        let Some(member) = self.members.get(&id) else {
            return Reply::Now(join_error(&id, ErrorCode::UNKNOWN_MEMBER_ID));
        };
        let unchanged = member.protocols == req.protocols;
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_wait(req, now_ms),
            GroupState::CompletingRebalance if unchanged => {
                let leader = self.is_leader(&id);
                Reply::Now(self.join_answer(&id, leader))
            }
            GroupState::Stable if unchanged && !self.is_leader(&id) => {
                Reply::Now(self.join_answer(&id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let reply = self.update_member_and_wait(req, now_ms);
                self.prepare_rebalance(now_ms, cfg);
                reply
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(join_error(&id, ErrorCode::UNKNOWN_MEMBER_ID))
            }
        }
    }

    /// A static member rejoined with an unknown member id: the new id replaces
    /// the old one (whose in-flight requests are fenced), keeping its place.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Reply<JoinGroupResponse> {
        let Some(mut member) = self.members.remove(&old_id) else {
            // The map and the members disagree: treat it as a new member.
            self.static_members
                .remove(req.instance_id.as_deref().unwrap_or(""));
            return self.add_member_and_rebalance(new_id, req, now_ms, cfg);
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(join_error(&old_id, ErrorCode::FENCED_INSTANCE_ID));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(sync_error(ErrorCode::FENCED_INSTANCE_ID));
        }
        let unchanged = member.protocols == req.protocols;
        member.id = new_id.clone();
        member.last_heartbeat_ms = now_ms;
        self.members.insert(new_id.clone(), member);
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), new_id.clone());
        }
        if self.is_leader(&old_id) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if unchanged => {
                let m = self.members.get_mut(&new_id).expect("just inserted");
                m.session_timeout_ms = req.session_timeout_ms;
                m.rebalance_timeout_ms = req.rebalance_timeout_ms;
                m.client_id = req.client_id;
                m.client_host = req.client_host;
                self.metadata_dirty = true;
                let leader = self.is_leader(&new_id);
                let mut answer = self.join_answer(&new_id, leader && req.supports_skip_assignment);
                answer.skip_assignment = leader && req.supports_skip_assignment;
                Reply::Now(answer)
            }
            GroupState::PreparingRebalance => {
                let mut req = req;
                req.member_id = new_id;
                self.update_member_and_wait(req, now_ms)
            }
            _ => {
                let mut req = req;
                req.member_id = new_id;
                let reply = self.update_member_and_wait(req, now_ms);
                self.prepare_rebalance(now_ms, cfg);
                reply
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        req: JoinRequest,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Reply<JoinGroupResponse> {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), id.clone());
        }
        let member = Member {
            id: id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            join_waiter: None,
            sync_waiter: None,
        };
        self.members.insert(id.clone(), member);
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        let preparing = self.state == GroupState::PreparingRebalance;
        if preparing {
            self.extend_initial_delay(now_ms, cfg);
        }
        let mut req = req;
        req.member_id = id;
        let reply = self.update_member_and_wait(req, now_ms);
        if !preparing {
            self.prepare_rebalance(now_ms, cfg);
        }
        reply
    }

    /// Stores the member's new metadata and parks its JoinGroup until the
    /// join phase completes.
    fn update_member_and_wait(
        &mut self,
        req: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let (tx, rx) = oneshot::channel();
        let m = self
            .members
            .get_mut(&req.member_id)
            .expect("the member was checked or added");
        m.protocols = req.protocols;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.last_heartbeat_ms = now_ms;
        if let Some(old) = m.join_waiter.replace(tx) {
            let _ = old.send(join_error(&req.member_id, ErrorCode::REBALANCE_IN_PROGRESS));
        }
        if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now_ms);
        }
        Reply::Later(rx)
    }

    fn prepare_rebalance(&mut self, now_ms: i64, cfg: &GroupConfig) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(sync_error(ErrorCode::REBALANCE_IN_PROGRESS));
                }
            }
        }
        let initial = self.state == GroupState::Empty;
        self.set_state(GroupState::PreparingRebalance, now_ms);
        if initial {
            self.join_deadline_ms = now_ms + cfg.initial_rebalance_delay_ms;
            self.initial_delay_limit_ms = Some(now_ms + self.max_rebalance_timeout_ms());
        } else {
            self.join_deadline_ms = now_ms + self.max_rebalance_timeout_ms();
            self.initial_delay_limit_ms = None;
        }
        self.maybe_complete_join(now_ms);
    }

    /// A member joining during the initial delay pushes the end of the join
    /// phase by one more delay, up to the rebalance timeout.
    fn extend_initial_delay(&mut self, now_ms: i64, cfg: &GroupConfig) {
        if let Some(limit) = self.initial_delay_limit_ms {
            self.join_deadline_ms = (now_ms + cfg.initial_rebalance_delay_ms)
                .min(limit.max(now_ms))
                .max(self.join_deadline_ms);
        }
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn maybe_complete_join(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let due = now_ms >= self.join_deadline_ms;
        let early = self.initial_delay_limit_ms.is_none() && self.all_joined();
        if due || early {
            self.complete_join(now_ms);
        }
    }

    fn complete_join(&mut self, now_ms: i64) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.initial_delay_limit_ms = None;
        self.generation += 1;
        self.metadata_dirty = true;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.pending.clear();
            self.set_state(GroupState::Empty, now_ms);
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        self.sync_deadline_ms = now_ms + self.max_rebalance_timeout_ms();
        let leader = self.leader.clone().unwrap_or_default();
        let all = self.current_members();
        let (generation, protocol_type, protocol) = (
            self.generation,
            self.protocol_type.clone(),
            self.protocol.clone(),
        );
        for m in self.members.values_mut() {
            m.last_heartbeat_ms = now_ms;
            let Some(w) = m.join_waiter.take() else {
                continue;
            };
            let _ = w.send(JoinGroupResponse {
                error_code: 0,
                generation_id: generation,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol.clone(),
                leader: leader.clone(),
                member_id: m.id.clone(),
                members: if m.id == leader {
                    all.clone()
                } else {
                    Vec::new()
                },
                ..Default::default()
            });
        }
    }

    fn remove_member(&mut self, id: &str) {
        let Some(mut m) = self.members.remove(id) else {
            return;
        };
        if let Some(i) = &m.instance_id {
            if self.static_members.get(i).is_some_and(|known| known == id) {
                self.static_members.remove(i);
            }
        }
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(join_error(id, ErrorCode::UNKNOWN_MEMBER_ID));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(sync_error(ErrorCode::UNKNOWN_MEMBER_ID));
        }
        if self.is_leader(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// After members left or expired: rebalance, or finish the join phase.
    fn after_removal(&mut self, now_ms: i64, cfg: &GroupConfig) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, cfg)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---- member checks shared by SyncGroup, Heartbeat, OffsetCommit ----

    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        self.check_instance(member_id, instance_id)?;
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return Err(ErrorCode::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    fn check_instance(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        // As Kafka: fenced only when another member holds the instance id.
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(known) if known != member_id => Err(ErrorCode::FENCED_INSTANCE_ID),
            _ => Ok(()),
        }
    }

    // ---- SyncGroup ----

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Reply<SyncGroupResponse> {
        if let Err(code) = self.check_member(member_id, instance_id, generation) {
            return Reply::Now(sync_error(code));
        }
        if protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t))
            || protocol_name.is_some_and(|n| self.protocol.as_deref() != Some(n))
        {
            return Reply::Now(sync_error(ErrorCode::INCONSISTENT_GROUP_PROTOCOL));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(sync_error(ErrorCode::UNKNOWN_MEMBER_ID))
            }
            GroupState::PreparingRebalance => {
                Reply::Now(sync_error(ErrorCode::REBALANCE_IN_PROGRESS))
            }
            GroupState::Stable => {
                let m = self.members.get_mut(member_id).expect("checked");
                m.last_heartbeat_ms = now_ms;
                Reply::Now(self.sync_answer(member_id))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = self.members.get_mut(member_id).expect("checked");
                m.last_heartbeat_ms = now_ms;
                if let Some(old) = m.sync_waiter.replace(tx) {
                    let _ = old.send(sync_error(ErrorCode::REBALANCE_IN_PROGRESS));
                }
                if self.is_leader(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, now_ms);
                    self.metadata_dirty = true;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let answer = self.sync_answer(&id);
                        let m = self.members.get_mut(&id).expect("listed");
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(answer);
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    fn sync_answer(&self, member_id: &str) -> SyncGroupResponse {
        SyncGroupResponse {
            error_code: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    // ---- Heartbeat ----

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> ErrorCode {
        if self.state == GroupState::Empty {
            return ErrorCode::UNKNOWN_MEMBER_ID;
        }
        if let Err(code) = self.check_member(member_id, instance_id, generation) {
            return code;
        }
        let m = self.members.get_mut(member_id).expect("checked");
        m.last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::PreparingRebalance => ErrorCode::REBALANCE_IN_PROGRESS,
            _ => ErrorCode(0),
        }
    }

    // ---- LeaveGroup ----

    /// Removes members; one error code per member, in order.
    pub fn leave(
        &mut self,
        leaving: &[LeavingMember],
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Vec<ErrorCode> {
        if self.state == GroupState::Dead {
            return vec![ErrorCode::COORDINATOR_NOT_AVAILABLE; leaving.len()];
        }
        let mut removed = false;
        let codes = leaving
            .iter()
            .map(|l| {
                let id = match &l.instance_id {
                    None => {
                        if self.pending.remove(&l.member_id).is_some() {
                            return ErrorCode(0);
                        }
                        if !self.members.contains_key(&l.member_id) {
                            return ErrorCode::UNKNOWN_MEMBER_ID;
                        }
                        l.member_id.clone()
                    }
                    Some(i) => match self.static_members.get(i) {
                        None => return ErrorCode::UNKNOWN_MEMBER_ID,
                        Some(known) if !l.member_id.is_empty() && *known != l.member_id => {
                            return ErrorCode::FENCED_INSTANCE_ID
                        }
                        Some(known) => known.clone(),
                    },
                };
                self.remove_member(&id);
                removed = true;
                ErrorCode(0)
            })
            .collect();
        if removed {
            self.after_removal(now_ms, cfg);
        }
        codes
    }

    // ---- OffsetCommit ----

    /// May a commit with these credentials change this group's offsets?
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        // A group that only stores offsets (no members): the admin client, or
        // consumers assigning partitions themselves.
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        // Kafka's order (ClassicGroup.validateOffsetCommit): member, then
        // generation, then state, so an old generation is fenced
        // (ILLEGAL_GENERATION) even while the group completes a rebalance.
        self.check_instance(member_id, instance_id)?;
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(ErrorCode::UNKNOWN_MEMBER_ID);
        };
        if generation != self.generation {
            return Err(ErrorCode::ILLEGAL_GENERATION);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::REBALANCE_IN_PROGRESS);
        }
        m.last_heartbeat_ms = now_ms;
        Ok(())
    }

    // ---- time ----

    /// Applies timeouts due at `now_ms`: pending member ids, member sessions,
    /// the join phase and the sync phase.
    pub fn tick(&mut self, now_ms: i64, cfg: &GroupConfig) {
        if self.state == GroupState::Dead {
            return;
        }
        self.pending.retain(|_, expiry| *expiry > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now_ms - m.last_heartbeat_ms > i64::from(m.session_timeout_ms)
            })
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "member session expired");
                self.remove_member(id);
            }
            self.after_removal(now_ms, cfg);
        }
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::CompletingRebalance if now_ms >= self.sync_deadline_ms => {
                // The leader never sent the assignment: drop whoever did not
                // sync and start over.
                let lagging: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.sync_waiter.is_none())
                    .map(|m| m.id.clone())
                    .collect();
                for id in &lagging {
                    self.remove_member(id);
                }
                self.prepare_rebalance(now_ms, cfg);
            }
            _ => {}
        }
    }

    /// The group is Empty and has nothing left worth keeping.
    pub fn is_disposable(&self) -> bool {
        self.state == GroupState::Empty && self.offsets.is_empty() && self.pending.is_empty()
    }

    /// Offsets to drop at `now_ms` under the retention rules (Kafka's, since
    /// KIP-496): an explicit expiry time (OffsetCommit v2-v4) wins; an Empty
    /// group's offsets go `offsets_retention_ms` after the later of the commit
    /// and the group becoming empty; a Stable consumer group keeps the offsets
    /// of topics its members subscribe to, and loses the others
    /// `offsets_retention_ms` after their commit. Any other group keeps all.
    pub fn expired_offsets(&self, now_ms: i64, cfg: &GroupConfig) -> Vec<(String, i32)> {
        let subscribed = if self.state == GroupState::Stable
            && self.protocol_type.as_deref() == Some("consumer")
        {
            self.subscribed_topics()
        } else {
            None
        };
        self.offsets
            .iter()
            .filter(|((topic, _), c)| {
                if c.expire_ts_ms >= 0 {
                    return now_ms >= c.expire_ts_ms;
                }
                let base = match (&self.state, &subscribed) {
                    (GroupState::Empty, _) if self.protocol_type.is_some() => {
                        c.commit_ts_ms.max(self.state_since_ms)
                    }
                    (GroupState::Empty, _) => c.commit_ts_ms,
                    (_, Some(topics)) if !topics.contains(topic) => c.commit_ts_ms,
                    _ => return false,
                };
                now_ms >= base.saturating_add(cfg.offsets_retention_ms)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The topics the members subscribe to, read from their metadata of the
    /// chosen protocol; `None` when any member's metadata cannot be read (then
    /// nothing is known to be unsubscribed).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let (_, metadata) = m.protocols.iter().find(|(name, _)| name == protocol)?;
            topics.extend(super::subscribed_topics(metadata)?);
        }
        Some(topics)
    }

    /// Answers every parked request with `code` (shutdown).
    pub fn fail_waiters(&mut self, code: ErrorCode) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(join_error(&m.id, code));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(sync_error(code));
            }
        }
    }

    /// Marks the group deleted.
    pub fn kill(&mut self, now_ms: i64) {
        self.fail_waiters(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        self.members.clear();
        self.static_members.clear();
        self.pending.clear();
        self.offsets.clear();
        self.set_state(GroupState::Dead, now_ms);
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
