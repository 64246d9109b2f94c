//! TCP between controllers: Raft RPCs, and commands forwarded to the leader.
//!
//! A frame is `[len u32 BE][JSON]`; a connection carries one request, then
//! its reply, then the next request. A client keeps one connection per peer
//! and drops it on any error; the next call reconnects. Frames over
//! [`MAX_FRAME_BYTES`] close the connection instead of being allocated.

use std::io;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::metadata::{Command, MetadataError, Outcome};
use super::node::{quorum_of, Job, QuorumInfo};
use super::{Raft, RaftNodeId, TypeConfig, WriteError, WriteResult};
use crate::ids::NodeId;

/// Largest frame read from a peer (a snapshot chunk is far smaller).
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// How long a forwarded command or a connect may take.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// A request from one controller to another.
#[derive(Serialize, Deserialize)]
pub(crate) enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<RaftNodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Apply a command; only the leader accepts it.
    Write(Command),
    /// A broker's heartbeat, sent to the leader.
    Heartbeat(NodeId),
    /// A broker-only node asks to follow the log as a learner at `addr`;
    /// only the leader accepts it.
    Join {
        node: RaftNodeId,
        addr: String,
    },
    /// The quorum as the leader sees it; only the leader answers it.
    Quorum,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum Reply {
    Append(Result<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>>),
    Vote(Result<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>>),
    Snapshot(
        Result<InstallSnapshotResponse<RaftNodeId>, RaftError<RaftNodeId, InstallSnapshotError>>,
    ),
    Write(WriteResult),
    Heartbeat(Result<(), WriteError>),
    Join(Result<(), WriteError>),
    Quorum(Result<QuorumInfo, WriteError>),
}

async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::other("controller frame too large"));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    stream.write_all(&buf).await
}

async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("controller frame of {len} bytes is over the limit"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One peer's connection, opened on first use.
pub(crate) struct PeerClient {
    addr: String,
    stream: Option<TcpStream>,
}

/// Why a call to a peer failed.
pub(crate) enum CallError {
    /// No connection could be made.
    Connect(io::Error),
    /// The connection broke or the reply was bad or late.
    Io(io::Error),
}

impl PeerClient {
    pub(crate) fn new(addr: String) -> Self {
        PeerClient { addr, stream: None }
    }

    pub(crate) async fn call(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let result = tokio::time::timeout(timeout, self.call_inner(request)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(CallError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply from {} within {timeout:?}", self.addr),
            ))),
        };
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn call_inner(&mut self, request: &Request) -> Result<Reply, CallError> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(CallError::Connect)?;
            stream.set_nodelay(true).map_err(CallError::Connect)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().ok_or_else(|| {
            CallError::Io(io::Error::new(io::ErrorKind::NotConnected, "no stream"))
        })?;
        write_frame(stream, request).await.map_err(CallError::Io)?;
        read_frame(stream).await.map_err(CallError::Io)
    }
}

fn rpc_error<E: std::error::Error>(
    e: CallError,
) -> RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, E>> {
    match e {
        CallError::Connect(e) => RPCError::Unreachable(Unreachable::new(&e)),
        CallError::Io(e) => RPCError::Network(NetworkError::new(&e)),
    }
}

fn unexpected() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "reply of the wrong kind")
}

/// Makes [`PeerNetwork`]s for openraft.
pub struct NetworkFactory;

pub struct PeerNetwork {
    target: RaftNodeId,
    client: PeerClient,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            target,
            client: PeerClient::new(node.addr.clone()),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>,
    > {
        match self
            .client
            .call(&Request::Append(rpc), option.hard_ttl())
            .await
        {
            Ok(Reply::Append(Ok(r))) => Ok(r),
            Ok(Reply::Append(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(RPCError::Network(NetworkError::new(&unexpected()))),
            Err(e) => Err(rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        match self
            .client
            .call(&Request::Snapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(Reply::Snapshot(Ok(r))) => Ok(r),
            Ok(Reply::Snapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(RPCError::Network(NetworkError::new(&unexpected()))),
            Err(e) => Err(rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>
    {
        match self
            .client
            .call(&Request::Vote(rpc), option.hard_ttl())
            .await
        {
            Ok(Reply::Vote(Ok(r))) => Ok(r),
            Ok(Reply::Vote(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(_) => Err(RPCError::Network(NetworkError::new(&unexpected()))),
            Err(e) => Err(rpc_error(e)),
        }
    }
}

/// Accept peers until the task is dropped; each connection gets a task.
pub(crate) async fn serve(listener: TcpListener, raft: Raft, jobs: tokio::sync::mpsc::Sender<Job>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "controller accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let raft = raft.clone();
        let jobs = jobs.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, raft, jobs).await {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, error = %e, "controller connection closed");
                }
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    raft: Raft,
    jobs: tokio::sync::mpsc::Sender<Job>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let request: Request = read_frame(&mut stream).await?;
        let reply = match request {
            Request::Append(rpc) => Reply::Append(raft.append_entries(rpc).await),
            Request::Vote(rpc) => Reply::Vote(raft.vote(rpc).await),
            Request::Snapshot(rpc) => Reply::Snapshot(raft.install_snapshot(rpc).await),
            Request::Write(command) => Reply::Write(write_local(&raft, command).await),
            Request::Heartbeat(node) => Reply::Heartbeat(local_heartbeat(&jobs, node).await),
            Request::Join { node, addr } => Reply::Join(add_learner(&raft, node, addr).await),
            Request::Quorum => Reply::Quorum(leader_quorum(&raft)),
        };
        write_frame(&mut stream, &reply).await?;
    }
}

/// Apply `command` if this node leads; otherwise say who does.
pub(crate) async fn write_local(raft: &Raft, command: Command) -> WriteResult {
    match command {
        Command::UnregisterBroker { node } => unregister(raft, node).await,
        command => apply_local(raft, command).await,
    }
}

/// Unregisters `node` from the metadata and, on the leader, removes it from
/// the Raft membership when it is a learner (a broker-only node), so the
/// leader stops replicating the log to it. Voters are fixed by
/// configuration and refused. A retried write that finds the broker gone
/// still removes the learner, and succeeds.
async fn unregister(raft: &Raft, node: NodeId) -> WriteResult {
    use openraft::error::ClientWriteError;
    let id = RaftNodeId::try_from(node.0).unwrap_or(RaftNodeId::MAX);
    let (voter, learner) = {
        let m = raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voter = membership.voter_ids().any(|v| v == id);
        (voter, !voter && membership.get_node(&id).is_some())
    };
    if voter {
        return Err(WriteError::Refused(MetadataError::ControllerVoter(node)));
    }
    let outcome = match apply_local(raft, Command::UnregisterBroker { node }).await {
        Err(WriteError::Refused(MetadataError::UnknownBroker(_))) if learner => {
            Outcome::BrokerUnregistered
        }
        other => other?,
    };
    if learner {
        let remove = openraft::ChangeMembers::RemoveNodes([id].into_iter().collect());
        match raft.change_membership(remove, false).await {
            Ok(_) => tracing::info!(
                node = node.0,
                "unregistered learner removed from the controller membership"
            ),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return Err(WriteError::NotLeader {
                    leader: f.leader_id,
                    leader_addr: f.leader_node.map(|n| n.addr),
                })
            }
            Err(e) => return Err(WriteError::Internal(e.to_string())),
        }
    }
    Ok(outcome)
}

async fn apply_local(raft: &Raft, command: Command) -> WriteResult {
    use openraft::error::ClientWriteError;
    match raft.client_write(command).await {
        Ok(response) => match response.data {
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err(refused)) => Err(WriteError::Refused(refused)),
            None => Err(WriteError::Internal("a command produced no result".into())),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NotLeader {
                leader: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => Err(WriteError::Internal(e.to_string())),
    }
}

/// Send `command` to the controller at `addr`.
pub(crate) async fn forward(addr: &str, command: Command) -> WriteResult {
    let mut client = PeerClient::new(addr.to_string());
    match client.call(&Request::Write(command), FORWARD_TIMEOUT).await {
        Ok(Reply::Write(result)) => result,
        Ok(_) => Err(WriteError::Unavailable(unexpected().to_string())),
        Err(CallError::Connect(e) | CallError::Io(e)) => {
            Err(WriteError::Unavailable(format!("{addr}: {e}")))
        }
    }
}

/// Hands a heartbeat another controller forwarded to this node's tracker.
async fn local_heartbeat(
    jobs: &tokio::sync::mpsc::Sender<Job>,
    node: NodeId,
) -> Result<(), WriteError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let stopped = || WriteError::Unavailable("controller stopped".into());
    jobs.send(Job::Heartbeat {
        node,
        forwarded: true,
        reply,
    })
    .await
    .map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())?
}

/// Send `node`'s heartbeat to the controller leader at `addr`.
pub(crate) async fn forward_heartbeat(addr: &str, node: NodeId) -> Result<(), WriteError> {
    let mut client = PeerClient::new(addr.to_string());
    match client
        .call(&Request::Heartbeat(node), FORWARD_TIMEOUT)
        .await
    {
        Ok(Reply::Heartbeat(result)) => result,
        Ok(_) => Err(WriteError::Unavailable(unexpected().to_string())),
        Err(CallError::Connect(e) | CallError::Io(e)) => {
            Err(WriteError::Unavailable(format!("{addr}: {e}")))
        }
    }
}

/// This node's view of the quorum if it leads; otherwise who does.
fn leader_quorum(raft: &Raft) -> Result<QuorumInfo, WriteError> {
    let m = raft.metrics();
    let m = m.borrow();
    let quorum = quorum_of(&m);
    if quorum.is_leader {
        return Ok(quorum);
    }
    Err(WriteError::NotLeader {
        leader: m.current_leader,
        leader_addr: m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l))
            .map(|n| n.addr.clone()),
    })
}

/// Asks the controller leader at `addr` for its view of the quorum.
pub(crate) async fn ask_quorum(addr: &str, timeout: Duration) -> Result<QuorumInfo, WriteError> {
    let mut client = PeerClient::new(addr.to_string());
    match client.call(&Request::Quorum, timeout).await {
        Ok(Reply::Quorum(result)) => result,
        Ok(_) => Err(WriteError::Unavailable(unexpected().to_string())),
        Err(CallError::Connect(e) | CallError::Io(e)) => {
            Err(WriteError::Unavailable(format!("{addr}: {e}")))
        }
    }
}

/// Adds `node` as a learner at `addr` if this node leads (and it is not a
/// member there already); otherwise says who leads. Only the leader says a
/// node is a member already: another node's membership may be behind (a
/// learner removed by UnregisterBroker and started again must be added
/// again, not told it is one).
async fn add_learner(raft: &Raft, node: RaftNodeId, addr: String) -> Result<(), WriteError> {
    use openraft::error::ClientWriteError;
    let (known, leading) = {
        let m = raft.metrics();
        let m = m.borrow();
        let known = m
            .membership_config
            .membership()
            .get_node(&node)
            .map(|n| n.addr.clone());
        (known, m.state == openraft::ServerState::Leader)
    };
    match known {
        Some(a) if a == addr && leading => {
            // Already a member (a restarted learner asks again).
            return Ok(());
        }
        Some(a) if a == addr => {
            // Not the leader: `add_learner` below says who is.
        }
        Some(a) => {
            return Err(WriteError::Internal(format!(
                "node {node} is a member at {a}, not {addr}; changing its address is not supported"
            )))
        }
        None => {}
    }
    match raft.add_learner(node, BasicNode { addr }, false).await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NotLeader {
                leader: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => Err(WriteError::Internal(e.to_string())),
    }
}

/// Asks the controller at `addr` to add this node (`node`, reachable at
/// `own_addr`) as a learner.
pub(crate) async fn ask_to_join(
    addr: &str,
    node: RaftNodeId,
    own_addr: &str,
) -> Result<(), WriteError> {
    let mut client = PeerClient::new(addr.to_string());
    let request = Request::Join {
        node,
        addr: own_addr.to_string(),
    };
    match client.call(&request, FORWARD_TIMEOUT).await {
        Ok(Reply::Join(result)) => result,
        Ok(_) => Err(WriteError::Unavailable(unexpected().to_string())),
        Err(CallError::Connect(e) | CallError::Io(e)) => {
            Err(WriteError::Unavailable(format!("{addr}: {e}")))
        }
    }
}
