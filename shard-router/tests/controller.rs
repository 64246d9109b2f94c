//! Controller nodes in one process, talking over 127.0.0.1: election,
//! commands through any node, failover, and recovery from the log on disk.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use shard_router::controller::{
    BrokerRegistration, Command, Controller, ControllerConfig, Outcome, WriteError,
};
use shard_router::NodeId;

/// Upper bound on waiting for the cluster to settle; a bound so a broken
/// build fails instead of hanging, not a speed check.
const SETTLE: Duration = Duration::from_secs(20);

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + SETTLE;
    while !ok() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Brokers registered by hand here never heartbeat: a session that outlives
/// the test keeps them unfenced.
const NO_FENCING_MS: u64 = 3_600_000;

fn start(node: i32, voters: &BTreeMap<NodeId, String>, dir: &Path) -> Controller {
    start_with(node, voters, dir, 1_000, NO_FENCING_MS)
}

fn start_with(
    node: i32,
    voters: &BTreeMap<NodeId, String>,
    dir: &Path,
    heartbeat_ms: u64,
    session_ms: u64,
) -> Controller {
    let addr: SocketAddr = voters[&NodeId(node)].parse().expect("addr");
    let listener = TcpListener::bind(addr).expect("bind controller port");
    let mut config =
        ControllerConfig::new(NodeId(node), voters.clone(), dir.join(format!("c{node}")));
    config.broker_heartbeat_interval_ms = heartbeat_ms;
    config.broker_session_timeout_ms = session_ms;
    Controller::start(config, listener).expect("start controller")
}

fn registration(node: i32) -> BrokerRegistration {
    BrokerRegistration {
        node: NodeId(node),
        host: "127.0.0.1".into(),
        port: 9092 + node as u16,
        shards: 2,
        replication_ports: Vec::new(),
    }
}

fn free_addrs(n: usize) -> BTreeMap<NodeId, String> {
    // Bind all first so the ports differ; the controllers rebind them.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                NodeId(i as i32 + 1),
                l.local_addr().expect("addr").to_string(),
            )
        })
        .collect()
}

fn register(node: i32) -> Command {
    Command::RegisterBroker(registration(node))
}

fn create(name: &str) -> Command {
    Command::CreateTopic {
        name: name.into(),
        topic_id: [7; 16],
        partitions: 4,
        replication_factor: 3,
        configs: BTreeMap::new(),
    }
}

fn agreed_leader(nodes: &[&Controller]) -> Option<NodeId> {
    let first = nodes.first()?.quorum();
    let leader = first.leader?;
    nodes
        .iter()
        .all(|c| c.quorum().leader == Some(leader))
        .then_some(leader)
}

#[test]
fn three_voters_elect_apply_fail_over_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let voters = free_addrs(3);
    let mut nodes: BTreeMap<i32, Controller> = (1..=3)
        .map(|n| (n, start(n, &voters, dir.path())))
        .collect();

    let mut leader = None;
    wait_for("one leader all three agree on", || {
        leader = agreed_leader(&nodes.values().collect::<Vec<_>>());
        leader.is_some()
    });
    let leader = leader.expect("leader");
    let follower = (1..=3).find(|n| NodeId(*n) != leader).expect("follower");

    // Commands sent to a follower are forwarded to the leader.
    for n in 1..=3 {
        let out = block_on(nodes[&follower].write(register(n))).expect("register");
        assert!(matches!(out, Outcome::BrokerRegistered { .. }), "{out:?}");
    }
    let out = block_on(nodes[&follower].write(create("t1"))).expect("create");
    assert_eq!(out, Outcome::TopicCreated { topic_id: [7; 16] });
    // A refusal comes back as a value and changes nothing.
    assert!(matches!(
        block_on(nodes[&follower].write(create("t1"))),
        Err(WriteError::Refused(_))
    ));
    wait_for("every node to apply t1", || {
        nodes
            .values()
            .all(|c| c.metadata().topics.contains_key("t1") && c.metadata().brokers.len() == 3)
    });
    let t1 = nodes[&1].metadata().topics["t1"].clone();
    for c in nodes.values() {
        assert_eq!(c.metadata().topics["t1"], t1, "same placement everywhere");
    }
    let quorum = nodes[&leader.0].quorum();
    assert!(quorum.is_leader);
    assert_eq!(quorum.voters.len(), 3);

    // The leader goes away; the other two elect a new one and keep working.
    nodes.remove(&leader.0).expect("leader node").shutdown();
    let mut new_leader = None;
    wait_for("a new leader among the two left", || {
        new_leader = agreed_leader(&nodes.values().collect::<Vec<_>>());
        new_leader.is_some_and(|l| l != leader)
    });
    let survivor = *nodes.keys().next().expect("a node");
    block_on(nodes[&survivor].write(create("t2"))).expect("create after failover");

    // The old leader comes back from its log and catches up.
    nodes.insert(leader.0, start(leader.0, &voters, dir.path()));
    wait_for("the restarted node to hold t1 and t2", || {
        let m = nodes[&leader.0].metadata();
        m.topics.contains_key("t1") && m.topics.contains_key("t2")
    });
    assert_eq!(nodes[&leader.0].metadata().topics["t1"], t1);
    for (_, c) in nodes {
        c.shutdown();
    }
}

#[test]
fn single_voter_restarts_from_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let voters = free_addrs(1);
    let c = start(1, &voters, dir.path());
    wait_for("the single voter to lead", || c.quorum().is_leader);
    block_on(c.write(register(1))).expect("register");
    let out = block_on(c.write(Command::CreateTopic {
        name: "solo".into(),
        topic_id: [1; 16],
        partitions: 3,
        replication_factor: 1,
        configs: BTreeMap::new(),
    }))
    .expect("create");
    assert_eq!(out, Outcome::TopicCreated { topic_id: [1; 16] });
    let before = c.metadata();
    c.shutdown();

    let c = start(1, &voters, dir.path());
    wait_for("the log to be applied again", || {
        c.metadata().topics.contains_key("solo")
    });
    assert_eq!(*c.metadata(), *before);
    block_on(c.write(Command::DeleteTopic {
        name: "solo".into(),
    }))
    .expect("delete");
    assert!(!c.metadata().topics.contains_key("solo"));
    c.shutdown();
}

#[test]
fn a_node_outside_the_voters_follows_as_a_learner_and_writes_through_the_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let voters = free_addrs(3);
    let nodes: Vec<Controller> = (1..=3).map(|n| start(n, &voters, dir.path())).collect();
    wait_for("a leader", || {
        agreed_leader(&nodes.iter().collect::<Vec<_>>()).is_some()
    });
    let learner = |dir: &Path, listener: TcpListener| {
        let config = ControllerConfig::new(NodeId(5), voters.clone(), dir.join("c5"));
        Controller::start(config, listener)
    };
    // The voters connect to a learner at its listener's address, so it
    // must be one they can reach.
    let err = learner(dir.path(), TcpListener::bind("0.0.0.0:0").expect("bind"))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unspecified"), "{err}");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let five = learner(dir.path(), listener).expect("a learner starts");
    // It follows the log but never votes or leads.
    block_on(nodes[0].write(register(1))).expect("register");
    block_on(nodes[0].write(register(2))).expect("register");
    wait_for("the learner to apply the log", || {
        five.metadata().brokers.contains_key(&NodeId(1))
    });
    let q = five.quorum();
    assert!(!q.is_leader);
    assert_eq!(q.voters.len(), 3, "{q:?}");
    assert!(q.leader.is_some());
    // Its broker registers and heartbeats through it (forwarded to the
    // leader), and a topic it creates reaches every voter.
    block_on(five.write(register(5))).expect("register through the learner");
    // (The leader takes heartbeats once its liveness tracker has noticed
    // the leadership, at its next tick.)
    wait_for("a heartbeat through the learner", || {
        block_on(five.handle().heartbeat(NodeId(5))).is_ok()
    });
    block_on(five.write(create("from-learner"))).expect("create through the learner");
    for n in &nodes {
        wait_for("the topic on every voter", || {
            n.metadata().topics.contains_key("from-learner")
        });
    }
    five.shutdown();

    // Restarted on its log, at the same address: it is a member already.
    // (Not compared with its metadata before the stop: the leader may fence
    // brokers 1 and 2, which never heartbeat, in the meantime.)
    let listener = TcpListener::bind(addr).expect("rebind");
    let five = learner(dir.path(), listener).expect("the learner restarts");
    wait_for("the learner to catch up again", || {
        let m = five.metadata();
        m.topics.contains_key("from-learner") && nodes.iter().any(|n| *n.metadata() == *m)
    });
    block_on(nodes[1].write(Command::DeleteTopic {
        name: "from-learner".into(),
    }))
    .expect("delete");
    wait_for("the learner to follow", || {
        !five.metadata().topics.contains_key("from-learner")
    });
    five.shutdown();
    for n in nodes {
        n.shutdown();
    }
}

/// Heartbeat timings for the fencing test: short, so it runs in seconds.
const HEARTBEAT_MS: u64 = 100;
const SESSION_MS: u64 = 1_000;

#[test]
fn a_silent_broker_is_fenced_its_leaderships_move_and_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let voters = free_addrs(3);
    let mut nodes: BTreeMap<i32, Controller> = (1..=3)
        .map(|n| {
            let c = start_with(n, &voters, dir.path(), HEARTBEAT_MS, SESSION_MS);
            c.handle()
                .spawn_registration(registration(n))
                .expect("registration thread");
            (n, c)
        })
        .collect();
    wait_for("three registered brokers", || {
        nodes.values().all(|c| c.metadata().brokers.len() == 3)
    });
    block_on(nodes[&1].write(create("t"))).expect("create");
    let led_by = |c: &Controller, n: i32| {
        c.metadata().topics["t"]
            .partitions
            .iter()
            .filter(|p| p.leader == Some(NodeId(n)))
            .count()
    };
    // Brokers that heartbeat stay unfenced across several sessions.
    std::thread::sleep(Duration::from_millis(3 * SESSION_MS));
    for c in nodes.values() {
        assert!(
            c.metadata().brokers.values().all(|b| !b.fenced),
            "a heartbeating broker was fenced"
        );
    }
    // Pick a broker that leads a partition and is not the controller leader
    // (stopping the controller leader also costs an election: tested below
    // by the restart of a voter either way).
    let leader = agreed_leader(&nodes.values().collect::<Vec<_>>()).expect("a leader");
    let victim = (1..=3)
        .find(|&n| NodeId(n) != leader && led_by(&nodes[&1], n) > 0)
        .expect("a broker that leads a partition");
    // Its node stops: controller and heartbeats.
    nodes.remove(&victim).expect("victim").shutdown();
    let observer = (1..=3).find(|&n| nodes.contains_key(&n)).expect("a node");
    wait_for("the silent broker to be fenced", || {
        nodes[&observer].metadata().brokers[&NodeId(victim)].fenced
    });
    let m = nodes[&observer].metadata();
    for p in &m.topics["t"].partitions {
        assert_ne!(p.leader, Some(NodeId(victim)), "{p:?}");
        assert!(!p.isr.contains(&NodeId(victim)), "{p:?}");
        assert!(p.leader.is_some(), "an in-sync replica took over: {p:?}");
    }
    for n in nodes.keys() {
        assert!(
            !m.brokers[&NodeId(*n)].fenced,
            "live broker {n} stays unfenced"
        );
    }
    // The node comes back: it registers again and is unfenced.
    let back = start_with(victim, &voters, dir.path(), HEARTBEAT_MS, SESSION_MS);
    back.handle()
        .spawn_registration(registration(victim))
        .expect("registration thread");
    nodes.insert(victim, back);
    wait_for("the returning broker to be unfenced", || {
        !nodes[&observer].metadata().brokers[&NodeId(victim)].fenced
    });
    for (_, c) in nodes {
        c.shutdown();
    }
}

#[test]
fn a_session_no_longer_than_the_heartbeat_interval_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let voters = free_addrs(1);
    let listener = TcpListener::bind(&voters[&NodeId(1)]).expect("bind");
    let mut config = ControllerConfig::new(NodeId(1), voters, dir.path().join("c1"));
    config.broker_heartbeat_interval_ms = 2_000;
    config.broker_session_timeout_ms = 2_000;
    let err = Controller::start(config, listener).err().expect("refused");
    assert!(err.to_string().contains("session timeout"), "{err}");
}
