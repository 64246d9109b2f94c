//! `sluice serve`: run a broker.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use net::{BrokerConfig, ShardState};
use shard_router::{RuntimeConfig, ShardCtx};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where partition logs and metadata live.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// Address to listen on for Kafka clients.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:9092")]
    listen: SocketAddr,
    /// Host advertised to clients in Metadata (default: the listen address, or 127.0.0.1 for 0.0.0.0).
    #[arg(long, env = "SLUICE_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// Number of shards (one pinned core each); default one per usable CPU.
    #[arg(long, env = "SLUICE_SHARDS")]
    shards: Option<usize>,
    /// This broker's node id.
    #[arg(long, env = "SLUICE_NODE_ID", default_value_t = 0)]
    node_id: i32,
    /// Create topics on first use (Kafka's auto.create.topics.enable).
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    auto_create_topics: bool,
    /// Partitions of an auto-created topic (Kafka's num.partitions).
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", default_value_t = 1)]
    num_partitions: i32,
    /// Default flush policy of topics: always (fsync before ack), never, or interval.ms=N.
    #[arg(long, env = "SLUICE_FLUSH", default_value = "always")]
    flush: String,
    /// Largest request frame accepted, in bytes (Kafka's socket.request.max.bytes).
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", default_value_t = 100 << 20)]
    max_request_bytes: usize,
    /// Busy-poll this many microseconds before an idle shard sleeps (lower latency, more CPU).
    #[arg(long, env = "SLUICE_SPIN_US")]
    spin_before_park_us: Option<u64>,
    /// Partitions of __consumer_offsets when it is created (Kafka's offsets.topic.num.partitions).
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_PARTITIONS", default_value_t = 50)]
    offsets_topic_partitions: i32,
    /// How long a new group waits for more members before its first rebalance, in ms
    /// (Kafka's group.initial.rebalance.delay.ms).
    #[arg(
        long,
        env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3000
    )]
    group_initial_rebalance_delay_ms: u64,
    /// How long the offsets of an empty group are kept, in minutes (Kafka's offsets.retention.minutes).
    #[arg(long, env = "SLUICE_OFFSETS_RETENTION_MINUTES", default_value_t = 7 * 24 * 60)]
    offsets_retention_minutes: u64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if engine::FlushPolicy::parse(&args.flush).is_none() {
        anyhow::bail!(
            "invalid --flush {:?}: use always, never or interval.ms=N",
            args.flush
        );
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}: check the path and its permissions",
            args.data_dir.display()
        )
    })?;
    let probe = args.data_dir.join(".sluice-write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!(
            "the data directory {} is not writable",
            args.data_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    let advertised_host = args.advertised_host.clone().unwrap_or_else(|| {
        if args.listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            args.listen.ip().to_string()
        }
    });
    let mut topic_defaults = std::collections::BTreeMap::new();
    topic_defaults.insert("flush".to_string(), args.flush.clone());
    let cfg = BrokerConfig {
        node_id: args.node_id,
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        advertised_host,
        advertised_port: args.listen.port(),
        auto_create_topics: args.auto_create_topics,
        num_partitions: args.num_partitions,
        topic_defaults,
        max_request_bytes: args.max_request_bytes,
        offsets_topic_partitions: args.offsets_topic_partitions,
        group_initial_rebalance_delay_ms: args.group_initial_rebalance_delay_ms,
        offsets_retention_minutes: args.offsets_retention_minutes,
        ..BrokerConfig::default()
    };
    let runtime = RuntimeConfig {
        shards: args.shards,
        spin_before_park: args
            .spin_before_park_us
            .map(std::time::Duration::from_micros),
        ..RuntimeConfig::default()
    };
    tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(), "starting sluice");
    shard_router::run(runtime, move |ctx: ShardCtx<ShardState>| {
        let cfg = cfg.clone();
        async move {
            let listener = shard_router::bind_shared(cfg.listen)?;
            let state = ShardState::new(
                ctx.shard(),
                ctx.shards(),
                cfg,
                ctx.router().clone(),
                ctx.shutdown_signal(),
            );
            let state = ctx.install_state(state);
            state.start().await?;
            glommio::spawn_local(state.clone().run_flusher()).detach();
            glommio::spawn_local(state.clone().run_housekeeping()).detach();
            state.wait_all_started().await;
            tracing::info!(shard = ctx.shard().0, cpu = ctx.cpu(), "serving");
            net::server::serve(state.clone(), listener).await;
            state.wait_all_drained().await;
            state.close_all().await;
            tracing::info!(shard = ctx.shard().0, "stopped cleanly");
            Ok(())
        }
    })?;
    Ok(())
}
