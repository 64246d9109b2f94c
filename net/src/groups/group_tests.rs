//! The group state machine driven with explicit time: no sockets, no clock.

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn req(member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        client_id: "client".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from_static(b"r")),
            ("cooperative-sticky".into(), Bytes::from_static(b"c")),
        ],
        ..Default::default()
    }
}

fn now_answer<T>(r: Reply<T>) -> T {
    match r {
        Reply::Now(t) => t,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
    match r {
        Reply::Later(rx) => rx,
        Reply::Now(_) => panic!("expected a parked answer"),
    }
}

fn ready<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
    rx.try_recv().expect("the sender is alive or answered")
}

/// Joins `n` dynamic members at time `t` (JoinGroup v4+ flow) and completes
/// the generation with the leader's assignment: member ids in join order.
fn stable_group(g: &mut Group, n: usize, t: i64, cfg: &GroupConfig) -> Vec<String> {
    // A 1 ms initial delay lets all `n` land in the first generation.
    let cfg = &GroupConfig {
        initial_rebalance_delay_ms: 1,
        ..cfg.clone()
    };
    let mut ids = Vec::new();
    for _ in 0..n {
        let mut r = req("");
        r.require_known_member_id = true;
        let first = now_answer(g.join(r, t, cfg));
        assert_eq!(first.error_code, ErrorCode::MEMBER_ID_REQUIRED.0);
        ids.push(first.member_id);
    }
    rejoin_all(g, &ids, t, cfg);
    ids
}

/// Every member in `ids` (re)joins; then the leader assigns `member -> id bytes`.
fn rejoin_all(g: &mut Group, ids: &[String], t: i64, cfg: &GroupConfig) {
    let mut rxs: Vec<_> = ids
        .iter()
        .map(|id| later(g.join(req(id), t, cfg)))
        .collect();
    let t = t + cfg.initial_rebalance_delay_ms;
    g.tick(t, cfg);
    let answers: Vec<JoinGroupResponse> = rxs
        .iter_mut()
        .map(|rx| ready(rx).expect("join phase complete"))
        .collect();
    let generation = answers[0].generation_id;
    assert!(answers
        .iter()
        .all(|a| a.error_code == 0 && a.generation_id == generation));
    let leader = answers
        .iter()
        .find(|a| a.leader == a.member_id)
        .expect("one member leads");
    assert_eq!(leader.members.len(), ids.len(), "the leader sees everyone");
    assert!(answers
        .iter()
        .filter(|a| a.leader != a.member_id)
        .all(|a| a.members.is_empty()));
    let leader_id = leader.member_id.clone();
    let mut syncs = Vec::new();
    for id in ids.iter().filter(|id| **id != leader_id) {
        syncs.push((
            id.clone(),
            later(g.sync(id, None, generation, None, None, vec![], t)),
        ));
    }
    let assignments = ids
        .iter()
        .map(|id| (id.clone(), Bytes::from(id.clone().into_bytes())))
        .collect();
    let mine = later(g.sync(&leader_id, None, generation, None, None, assignments, t));
    syncs.push((leader_id, mine));
    for (id, mut rx) in syncs {
        let s = ready(&mut rx).expect("assignment handed out");
        assert_eq!(s.error_code, 0);
        assert_eq!(&s.assignment[..], id.as_bytes(), "each member gets its own");
    }
    assert_eq!(g.state, GroupState::Stable);
}

#[test]
fn first_member_needs_an_id_then_leads_its_own_generation() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let mut r = req("");
    r.require_known_member_id = true;
    let first = now_answer(g.join(r, 0, &c));
    assert_eq!(first.error_code, ErrorCode::MEMBER_ID_REQUIRED.0);
    assert!(first.member_id.starts_with("client-"));
    assert_eq!(
        g.state,
        GroupState::Empty,
        "a pending member is not a member yet"
    );
    let mut rx = later(g.join(req(&first.member_id), 1, &c));
    let answer = ready(&mut rx).expect("no initial delay: completes at once");
    assert_eq!(answer.generation_id, 1);
    assert_eq!(answer.leader, first.member_id);
    assert_eq!(answer.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert!(g.metadata_dirty);
}

#[test]
fn initial_delay_gathers_members_into_one_generation() {
    let c = GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..cfg()
    };
    let mut g = Group::new("g".into(), 0);
    let mut rxs = Vec::new();
    for (i, t) in [0i64, 100, 200].into_iter().enumerate() {
        let mut r = req("");
        r.client_id = format!("c{i}");
        rxs.push(later(g.join(r, t, &c)));
    }
    g.tick(3_100, &c);
    assert!(
        rxs.iter_mut().all(|rx| ready(rx).is_none()),
        "each join extends the delay"
    );
    g.tick(3_200, &c);
    let answers: Vec<_> = rxs.iter_mut().map(|rx| ready(rx).expect("done")).collect();
    assert!(answers.iter().all(|a| a.generation_id == 1));
    assert_eq!(g.members.len(), 3);
}

#[test]
fn a_new_member_triggers_a_rebalance_and_fences_the_old_generation() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 3, 0, &c);
    assert_eq!(g.generation, 1);
    for id in &ids {
        assert_eq!(g.heartbeat(id, None, 1, 10), ErrorCode(0));
    }
    let mut r = req("");
    r.require_known_member_id = true;
    let fourth = now_answer(g.join(r, 20, &c)).member_id;
    assert_eq!(
        g.state,
        GroupState::Stable,
        "a pending id does not rebalance yet"
    );
    let mut rx4 = later(g.join(req(&fourth), 30, &c));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&ids[0], None, 1, 40),
        ErrorCode::REBALANCE_IN_PROGRESS
    );
    // During the join phase the current generation may still commit.
    assert_eq!(g.check_commit(&ids[0], None, 1, 40), Ok(()));
    assert!(ready(&mut rx4).is_none(), "waits for the others");
    // The fourth joins again first (a retry replaces its parked request).
    let mut all = vec![fourth.clone()];
    all.extend(ids.iter().cloned());
    rejoin_all(&mut g, &all, 50, &c);
    assert_eq!(g.generation, 2);
    assert_eq!(
        g.heartbeat(&ids[1], None, 1, 60),
        ErrorCode::ILLEGAL_GENERATION
    );
    assert_eq!(
        g.check_commit(&ids[1], None, 1, 60),
        Err(ErrorCode::ILLEGAL_GENERATION)
    );
    assert_eq!(g.check_commit(&ids[1], None, 2, 60), Ok(()));
}

#[test]
fn a_silent_member_expires_after_its_session_timeout() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 2, 0, &c);
    let mut t = 0;
    while t <= i64::from(SESSION_MS) {
        t += 3_000;
        assert_eq!(g.heartbeat(&ids[0], None, 1, t), ErrorCode(0));
        g.tick(t, &c);
        if t <= i64::from(SESSION_MS) {
            assert_eq!(g.members.len(), 2, "not expired at {t}");
        }
    }
    assert_eq!(g.members.len(), 1, "expired");
    assert!(!g.members.contains_key(&ids[1]));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&ids[1], None, 1, t),
        ErrorCode::UNKNOWN_MEMBER_ID
    );
    rejoin_all(&mut g, &ids[..1], t + 1, &c);
    assert_eq!(g.generation, 2);
}

#[test]
fn members_parked_in_join_or_sync_do_not_expire() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 2, 0, &c);
    let mut rx = later(g.join(req(&ids[0]), 1, &c)); // leader rejoin: rebalance
    g.tick(i64::from(SESSION_MS) + 5, &c);
    // ids[1] never rejoined nor heartbeated: expired; ids[0] is parked, kept.
    assert!(g.members.contains_key(&ids[0]));
    assert!(!g.members.contains_key(&ids[1]));
    let a = ready(&mut rx).expect("the join completes without the expired member");
    assert_eq!(a.generation_id, 2);
    assert_eq!(a.members.len(), 1);
}

#[test]
fn leave_rebalances_and_the_last_leave_empties_the_group() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 2, 0, &c);
    let codes = g.leave(
        &[
            LeavingMember {
                member_id: ids[0].clone(),
                instance_id: None,
            },
            LeavingMember {
                member_id: "nobody".into(),
                instance_id: None,
            },
        ],
        10,
        &c,
    );
    assert_eq!(codes, vec![ErrorCode(0), ErrorCode::UNKNOWN_MEMBER_ID]);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    rejoin_all(&mut g, &ids[1..], 20, &c);
    let codes = g.leave(
        &[LeavingMember {
            member_id: ids[1].clone(),
            instance_id: None,
        }],
        30,
        &c,
    );
    assert_eq!(codes, vec![ErrorCode(0)]);
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.generation, 3);
    assert!(g.metadata_dirty);
}

#[test]
fn static_member_rejoins_without_rebalance_and_fences_its_old_id() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let mut r = req("");
    r.instance_id = Some("host-1".into());
    let mut rx = later(g.join(r.clone(), 0, &c)); // static members need no MEMBER_ID_REQUIRED
    let a = ready(&mut rx).expect("complete");
    let old = a.member_id.clone();
    assert!(old.starts_with("host-1-"));
    let mut s = later(g.sync(
        &old,
        Some("host-1"),
        1,
        None,
        None,
        vec![(old.clone(), Bytes::from_static(b"p0"))],
        1,
    ));
    assert_eq!(&ready(&mut s).unwrap().assignment[..], b"p0");
    // Restarted with the same instance id and the same subscription.
    let again = now_answer(g.join(r.clone(), 100, &c));
    assert_eq!(again.error_code, 0);
    assert_eq!(again.generation_id, 1, "no rebalance");
    assert_ne!(again.member_id, old);
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(
        g.heartbeat(&old, Some("host-1"), 1, 110),
        ErrorCode::FENCED_INSTANCE_ID
    );
    assert_eq!(
        g.check_commit(&old, Some("host-1"), 1, 110),
        Err(ErrorCode::FENCED_INSTANCE_ID)
    );
    assert_eq!(
        g.heartbeat(&again.member_id, Some("host-1"), 1, 110),
        ErrorCode(0)
    );
    let s = now_answer(g.sync(&again.member_id, Some("host-1"), 1, None, None, vec![], 120));
    assert_eq!(&s.assignment[..], b"p0", "keeps its assignment");
    // Leaving by instance id with a stale member id is fenced; with the
    // current one (or none) it works.
    let codes = g.leave(
        &[LeavingMember {
            member_id: old,
            instance_id: Some("host-1".into()),
        }],
        130,
        &c,
    );
    assert_eq!(codes, vec![ErrorCode::FENCED_INSTANCE_ID]);
    let codes = g.leave(
        &[LeavingMember {
            member_id: String::new(),
            instance_id: Some("host-1".into()),
        }],
        140,
        &c,
    );
    assert_eq!(codes, vec![ErrorCode(0)]);
    assert_eq!(g.state, GroupState::Empty);
}

#[test]
fn commits_are_checked_against_membership_generation_and_state() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    assert_eq!(
        g.check_commit("", None, -1, 0),
        Ok(()),
        "simple commit on an empty group"
    );
    let ids = stable_group(&mut g, 2, 0, &c);
    assert_eq!(
        g.check_commit("", None, -1, 1),
        Err(ErrorCode::UNKNOWN_MEMBER_ID),
        "a group with members refuses simple commits"
    );
    assert_eq!(
        g.check_commit("stranger", None, 1, 1),
        Err(ErrorCode::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        g.check_commit(&ids[0], None, 7, 1),
        Err(ErrorCode::ILLEGAL_GENERATION)
    );
    // Rebalance to CompletingRebalance: commits wait for the new generation.
    let mut rx0 = later(g.join(req(&ids[0]), 2, &c));
    let mut rx1 = later(g.join(req(&ids[1]), 2, &c));
    assert!(ready(&mut rx0).is_some() && ready(&mut rx1).is_some());
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(
        g.check_commit(&ids[0], None, 2, 3),
        Err(ErrorCode::REBALANCE_IN_PROGRESS)
    );
    // As Apache Kafka 4.4 answers: membership and generation are checked
    // before the state, so a commit from the old generation (or a stranger)
    // is fenced, not told to retry.
    assert_eq!(
        g.check_commit(&ids[0], None, 1, 3),
        Err(ErrorCode::ILLEGAL_GENERATION)
    );
    assert_eq!(
        g.check_commit("stranger", None, 2, 3),
        Err(ErrorCode::UNKNOWN_MEMBER_ID)
    );
}

#[test]
fn sync_is_checked_and_a_missing_leader_restarts_the_rebalance() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 2, 0, &c);
    assert_eq!(
        now_answer(g.sync("nobody", None, 1, None, None, vec![], 1)).error_code,
        ErrorCode::UNKNOWN_MEMBER_ID.0
    );
    assert_eq!(
        now_answer(g.sync(&ids[0], None, 0, None, None, vec![], 1)).error_code,
        ErrorCode::ILLEGAL_GENERATION.0
    );
    assert_eq!(
        now_answer(g.sync(&ids[0], None, 1, Some("other"), None, vec![], 1)).error_code,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL.0
    );
    let mut rx0 = later(g.join(req(&ids[0]), 2, &c));
    let mut rx1 = later(g.join(req(&ids[1]), 2, &c));
    let (a0, a1) = (ready(&mut rx0).unwrap(), ready(&mut rx1).unwrap());
    let follower = if a0.leader == a0.member_id {
        &ids[1]
    } else {
        &ids[0]
    };
    let _ = a1;
    let mut s = later(g.sync(follower, None, 2, None, None, vec![], 3));
    // The leader never syncs: after the rebalance timeout it is dropped and
    // the follower's SyncGroup is told to rejoin.
    g.tick(3 + i64::from(REBALANCE_MS), &c);
    assert_eq!(
        ready(&mut s).unwrap().error_code,
        ErrorCode::REBALANCE_IN_PROGRESS.0
    );
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 2, 0, &c);
    let mut rx = later(g.join(req(&ids[0]), 10, &c));
    // ids[1] keeps heartbeating but never rejoins.
    let mut t = 10;
    while t < 10 + i64::from(REBALANCE_MS) {
        t += 2_000;
        assert_eq!(
            g.heartbeat(&ids[1], None, 1, t),
            ErrorCode::REBALANCE_IN_PROGRESS
        );
        g.tick(t, &c);
    }
    let a = ready(&mut rx).expect("completed at the rebalance timeout");
    assert_eq!(a.members.len(), 1);
    assert!(!g.members.contains_key(&ids[1]));
}

#[test]
fn consecutive_rebalances_keep_everyone() {
    // Cooperative-sticky runs two rebalances back to back; the broker only
    // has to run each correctly.
    let c = cfg();
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 3, 0, &c);
    for round in 0..5 {
        let mut r = req(&ids[round % 3]);
        r.protocols.reverse(); // changed metadata forces a rebalance
        let mut first = later(g.join(r, 100 * round as i64, &c));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let mut rest: Vec<_> = ids
            .iter()
            .filter(|id| **id != ids[round % 3])
            .map(|id| later(g.join(req(id), 100 * round as i64 + 1, &c)))
            .collect();
        assert!(ready(&mut first).is_some());
        assert!(rest.iter_mut().all(|rx| ready(rx).is_some()));
        let leader = g.leader.clone().unwrap();
        let asg = ids
            .iter()
            .map(|id| (id.clone(), Bytes::from_static(b"x")))
            .collect();
        let gen = g.generation;
        let mut l = later(g.sync(&leader, None, gen, None, None, asg, 100 * round as i64 + 2));
        assert!(ready(&mut l).is_some());
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.members.len(), 3);
    }
    assert_eq!(g.generation, 6);
}

#[test]
fn bad_joins_are_refused() {
    let c = GroupConfig {
        max_members: 2,
        max_member_metadata_bytes: 16,
        ..cfg()
    };
    let mut g = Group::new("g".into(), 0);
    let mut big = req("");
    big.protocols = vec![("range".into(), Bytes::from(vec![0u8; 17]))];
    assert_eq!(
        now_answer(g.join(big, 0, &c)).error_code,
        ErrorCode::MESSAGE_TOO_LARGE.0
    );
    assert!(g.members.is_empty(), "refused metadata is not kept");
    let mut short = req("");
    short.session_timeout_ms = 1_000;
    assert_eq!(
        now_answer(g.join(short, 0, &c)).error_code,
        ErrorCode::INVALID_SESSION_TIMEOUT.0
    );
    let mut none = req("");
    none.protocols.clear();
    assert_eq!(
        now_answer(g.join(none, 0, &c)).error_code,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL.0
    );
    assert_eq!(
        now_answer(g.join(req("made-up"), 0, &c)).error_code,
        ErrorCode::UNKNOWN_MEMBER_ID.0
    );
    let _ids = stable_group(&mut g, 2, 0, &c);
    let mut other = req("");
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    other.require_known_member_id = true;
    assert_eq!(
        now_answer(g.join(other, 1, &c)).error_code,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL.0
    );
    let mut third = req("");
    third.require_known_member_id = true;
    assert_eq!(
        now_answer(g.join(third, 1, &c)).error_code,
        ErrorCode::GROUP_MAX_SIZE_REACHED.0
    );
}

#[test]
fn offsets_of_an_empty_group_expire_after_the_retention() {
    let c = GroupConfig {
        offsets_retention_ms: 1_000,
        ..cfg()
    };
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 1, 0, &c);
    let committed = Committed {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_ts_ms: 0,
        expire_ts_ms: -1,
    };
    g.offsets.insert(("t".into(), 0), committed);
    assert!(
        g.expired_offsets(5_000, &c).is_empty(),
        "kept while the group has members"
    );
    g.leave(
        &[LeavingMember {
            member_id: ids[0].clone(),
            instance_id: None,
        }],
        6_000,
        &c,
    );
    assert_eq!(g.state, GroupState::Empty);
    assert!(
        g.expired_offsets(6_999, &c).is_empty(),
        "counted from becoming empty"
    );
    assert_eq!(g.expired_offsets(7_000, &c), vec![("t".to_string(), 0)]);
}

/// A consumer's protocol metadata (ConsumerProtocolSubscription v0).
fn subscription(topics: &[&str]) -> Bytes {
    let mut m = vec![0, 0];
    m.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        m.extend_from_slice(&(t.len() as i16).to_be_bytes());
        m.extend_from_slice(t.as_bytes());
    }
    m.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
    Bytes::from(m)
}

fn committed_at(commit_ts_ms: i64, expire_ts_ms: i64) -> Committed {
    Committed {
        offset: 1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_ts_ms,
        expire_ts_ms,
    }
}

#[test]
fn a_stable_group_keeps_subscribed_offsets_and_loses_the_others() {
    let c = GroupConfig {
        offsets_retention_ms: 1_000,
        ..cfg()
    };
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 2, 0, &c);
    assert_eq!(g.state, GroupState::Stable);
    let protocol = g.protocol.clone().expect("a protocol was chosen");
    // The first member reads t1, the second t2: both count as subscribed.
    for (id, topic) in ids.iter().zip(["t1", "t2"]) {
        let m = g.members.get_mut(id).expect("member");
        m.protocols = vec![(protocol.clone(), subscription(&[topic]))];
    }
    for t in ["t1", "t2", "gone"] {
        g.offsets.insert((t.into(), 0), committed_at(100, -1));
    }
    g.offsets.insert(("t1".into(), 1), committed_at(100, 400));
    assert!(g.expired_offsets(399, &c).is_empty());
    assert_eq!(
        g.expired_offsets(400, &c),
        vec![("t1".to_string(), 1)],
        "an explicit expiry time applies whatever the state"
    );
    g.offsets.remove(&("t1".into(), 1));
    assert!(g.expired_offsets(1_099, &c).is_empty());
    assert_eq!(
        g.expired_offsets(1_100, &c),
        vec![("gone".to_string(), 0)],
        "an unsubscribed topic expires from its commit"
    );
    assert!(
        g.expired_offsets(1_000_000, &c)
            .iter()
            .all(|(t, _)| t == "gone"),
        "subscribed topics are kept however old"
    );
    // Metadata that cannot be read: nothing is known to be unsubscribed.
    g.members.get_mut(&ids[1]).expect("member").protocols =
        vec![(protocol, Bytes::from_static(b"?"))];
    assert!(g.expired_offsets(1_000_000, &c).is_empty());
}

#[test]
fn offsets_expire_from_the_later_of_commit_and_becoming_empty() {
    let c = GroupConfig {
        offsets_retention_ms: 1_000,
        ..cfg()
    };
    let mut g = Group::new("g".into(), 0);
    let ids = stable_group(&mut g, 1, 0, &c);
    let leaving: Vec<LeavingMember> = ids
        .iter()
        .map(|id| LeavingMember {
            member_id: id.clone(),
            instance_id: None,
        })
        .collect();
    g.leave(&leaving, 2_000, &c);
    assert_eq!(g.state, GroupState::Empty);
    // Committed before the group emptied, and after (a simple commit).
    g.offsets
        .insert(("before".into(), 0), committed_at(500, -1));
    g.offsets
        .insert(("after".into(), 0), committed_at(2_500, -1));
    assert!(g.expired_offsets(2_999, &c).is_empty());
    assert_eq!(
        g.expired_offsets(3_000, &c),
        vec![("before".to_string(), 0)]
    );
    let mut all = g.expired_offsets(3_500, &c);
    all.sort();
    assert_eq!(
        all,
        vec![("after".to_string(), 0), ("before".to_string(), 0)]
    );
    // A group that never had members (offsets only) counts from each commit.
    let mut simple = Group::new("s".into(), 0);
    simple
        .offsets
        .insert(("x".into(), 0), committed_at(10_000, -1));
    assert!(simple.expired_offsets(10_999, &c).is_empty());
    assert_eq!(
        simple.expired_offsets(11_000, &c),
        vec![("x".to_string(), 0)]
    );
}
