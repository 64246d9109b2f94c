//! `sluice topic create | list | describe | alter | delete`: topic admin over
//! the Kafka protocol (CreateTopics, Metadata, DescribeConfigs, ListOffsets,
//! CreatePartitions, IncrementalAlterConfigs, DeleteTopics).

use clap::{Args, Subcommand};
use sluice_codec::create_partitions_request::{CreatePartitionsRequest, CreatePartitionsTopic};
use sluice_codec::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use sluice_codec::delete_topics_request::DeleteTopicsRequest;
use sluice_codec::describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource};
use sluice_codec::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use sluice_codec::{ApiKey, ErrorCode, RequestBody, ResponseBody};

use crate::cmd::config::{
    describe_error, not_found, parse_pair, runtime_error, usage_error, ClientArgs, Session,
};

/// Kafka's resource type of a topic in config requests.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs `config_source` of a value set on the topic itself.
const SOURCE_TOPIC: i8 = 1;
/// How long the broker may take to create or delete, in ms.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

#[derive(Args, Debug)]
#[command(after_help = crate::cmd::config::EXIT_CODES_HELP)]
pub struct TopicArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(short, long, value_name = "N")]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's default).
        #[arg(short, long, value_name = "N")]
        replication_factor: Option<i16>,
        /// A topic config, NAME=VALUE (e.g. retention.ms=86400000); repeat for more.
        #[arg(short, long = "config", value_name = "NAME=VALUE", value_parser = parse_pair)]
        configs: Vec<(String, String)>,
        /// Succeed when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topic names, one per line.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions (leader, replicas, in-sync replicas, earliest and
    /// latest offsets) and the configs set on the topic.
    Describe {
        /// Topics to describe (default: every non-internal topic).
        names: Vec<String>,
    },
    /// Add partitions or change configs.
    Alter {
        name: String,
        /// Grow the topic to N partitions (partitions can only be added).
        #[arg(short, long, value_name = "N")]
        partitions: Option<i32>,
        /// Set a topic config, NAME=VALUE; repeat for more.
        #[arg(short, long = "config", value_name = "NAME=VALUE", value_parser = parse_pair)]
        configs: Vec<(String, String)>,
        /// Remove a topic config (back to the broker default); repeat for more.
        #[arg(long = "delete-config", value_name = "NAME")]
        delete_configs: Vec<String>,
    },
    /// Delete topics and all their data.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        /// Succeed when a topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let mut s = Session::connect(&args.client)?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => create(
            &mut s,
            &name,
            partitions,
            replication_factor,
            &configs,
            if_not_exists,
        ),
        TopicCommand::List { internal } => {
            for t in s.topics()? {
                if internal || !t.internal {
                    println!("{}", t.name);
                }
            }
            Ok(())
        }
        TopicCommand::Describe { names } => describe(&mut s, names),
        TopicCommand::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => alter(&mut s, &name, partitions, &configs, &delete_configs),
        TopicCommand::Delete { names, if_exists } => delete(&mut s, &names, if_exists),
    }
}

fn create(
    s: &mut Session,
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[(String, String)],
    if_not_exists: bool,
) -> anyhow::Result<()> {
    if let Some(p) = partitions {
        if p < 1 {
            return Err(usage_error(format!(
                "--partitions {p}: a topic needs at least 1 partition"
            )));
        }
    }
    if let Some(r) = replication_factor {
        if r < 1 {
            return Err(usage_error(format!(
                "--replication-factor {r}: at least 1 replica is needed"
            )));
        }
    }
    // CreateTopics v4+ accepts -1 for "the broker's default"; older
    // versions need a number.
    let defaults_ok = s.version(ApiKey::CreateTopics)? >= 4;
    let body = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.to_string(),
            num_partitions: partitions.unwrap_or(if defaults_ok { -1 } else { 1 }),
            replication_factor: replication_factor.unwrap_or(if defaults_ok { -1 } else { 1 }),
            configs: configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig {
                    name: k.clone(),
                    value: Some(v.clone()),
                })
                .collect(),
            ..CreatableTopic::default()
        }],
        timeout_ms: ADMIN_TIMEOUT_MS,
        ..CreateTopicsRequest::default()
    });
    let ResponseBody::CreateTopics(r) = s.call(None, &body)? else {
        unreachable!("call() checks the response type");
    };
    let t = r
        .topics
        .first()
        .ok_or_else(|| runtime_error("CreateTopics answered without a result"))?;
    let code = ErrorCode(t.error_code);
    let why = describe_error(code, t.error_message.as_deref());
    match code {
        ErrorCode::NONE => {
            let n = if t.num_partitions > 0 {
                t.num_partitions
            } else {
                s.topic(name, false)?.partitions.len() as i32
            };
            println!("created topic {name} with {n} partition(s)");
            Ok(())
        }
        ErrorCode::TOPIC_ALREADY_EXISTS if if_not_exists => {
            println!("topic {name} already exists");
            Ok(())
        }
        ErrorCode::TOPIC_ALREADY_EXISTS => Err(runtime_error(format!(
            "topic {name:?} already exists; use --if-not-exists to accept that, or `sluice topic alter` to change it"
        ))),
        ErrorCode::INVALID_TOPIC_EXCEPTION
        | ErrorCode::INVALID_PARTITIONS
        | ErrorCode::INVALID_REPLICATION_FACTOR
        | ErrorCode::INVALID_CONFIG
        | ErrorCode::INVALID_REQUEST
        | ErrorCode::POLICY_VIOLATION => Err(usage_error(format!(
            "cannot create topic {name:?}: {why}"
        ))),
        _ => Err(runtime_error(format!("cannot create topic {name:?}: {why}"))),
    }
}

fn describe(s: &mut Session, names: Vec<String>) -> anyhow::Result<()> {
    let names = if names.is_empty() {
        s.topics()?
            .into_iter()
            .filter(|t| !t.internal)
            .map(|t| t.name)
            .collect()
    } else {
        names
    };
    for (i, name) in names.iter().enumerate() {
        let t = s.topic(name, false)?;
        let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
        let earliest = s.list_offsets(&t, &parts, -2)?;
        let latest = s.list_offsets(&t, &parts, -1)?;
        let configs = topic_configs(s, name)?;
        let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
        if i > 0 {
            println!();
        }
        println!(
            "Topic: {name}  Partitions: {}  ReplicationFactor: {rf}  Configs: {}",
            t.partitions.len(),
            if configs.is_empty() {
                "-".to_string()
            } else {
                configs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        );
        println!(
            "{:>10} {:>7} {:>10} {:>10} {:>16} {:>16}",
            "PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST-OFFSET", "LATEST-OFFSET"
        );
        let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        for p in &t.partitions {
            println!(
                "{:>10} {:>7} {:>10} {:>10} {:>16} {:>16}",
                p.partition,
                p.leader,
                ids(&p.replicas),
                ids(&p.isr),
                earliest.get(&p.partition).copied().unwrap_or(-1),
                latest.get(&p.partition).copied().unwrap_or(-1),
            );
        }
    }
    Ok(())
}

/// The configs set on the topic itself (not broker defaults); empty when
/// the broker has no DescribeConfigs.
fn topic_configs(s: &mut Session, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    if !s.supports(ApiKey::DescribeConfigs) {
        return Ok(Vec::new());
    }
    let body = RequestBody::DescribeConfigs(DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: RESOURCE_TOPIC,
            resource_name: name.to_string(),
            configuration_keys: None,
        }],
        ..DescribeConfigsRequest::default()
    });
    let ResponseBody::DescribeConfigs(r) = s.call(None, &body)? else {
        unreachable!("call() checks the response type");
    };
    let mut out = Vec::new();
    for res in &r.results {
        let code = ErrorCode(res.error_code);
        if !code.is_none() {
            return Err(runtime_error(format!(
                "cannot describe the configs of {name:?}: {}",
                describe_error(code, res.error_message.as_deref())
            )));
        }
        for c in &res.configs {
            if c.config_source == SOURCE_TOPIC {
                let value = if c.is_sensitive {
                    "(sensitive)".to_string()
                } else {
                    c.value.clone().unwrap_or_default()
                };
                out.push((c.name.clone(), value));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn alter(
    s: &mut Session,
    name: &str,
    partitions: Option<i32>,
    configs: &[(String, String)],
    delete_configs: &[String],
) -> anyhow::Result<()> {
    if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
        return Err(usage_error(
            "nothing to alter: give --partitions N, --config NAME=VALUE or --delete-config NAME",
        ));
    }
    let t = s.topic(name, false)?;
    if let Some(n) = partitions {
        let now = t.partitions.len() as i32;
        if n < now {
            return Err(usage_error(format!(
                "--partitions {n}: topic {name:?} has {now} partitions and partitions can only be added"
            )));
        }
        if n > now {
            let body = RequestBody::CreatePartitions(CreatePartitionsRequest {
                topics: vec![CreatePartitionsTopic {
                    name: name.to_string(),
                    count: n,
                    assignments: None,
                }],
                timeout_ms: ADMIN_TIMEOUT_MS,
                validate_only: false,
            });
            let ResponseBody::CreatePartitions(r) = s.call(None, &body)? else {
                unreachable!("call() checks the response type");
            };
            for res in &r.results {
                let code = ErrorCode(res.error_code);
                if !code.is_none() {
                    return Err(runtime_error(format!(
                        "cannot grow {name:?} to {n} partitions: {}",
                        describe_error(code, res.error_message.as_deref())
                    )));
                }
            }
            println!("topic {name} now has {n} partition(s)");
        }
    }
    if !configs.is_empty() || !delete_configs.is_empty() {
        const SET: i8 = 0;
        const DELETE: i8 = 1;
        let mut ops: Vec<AlterableConfig> = configs
            .iter()
            .map(|(k, v)| AlterableConfig {
                name: k.clone(),
                config_operation: SET,
                value: Some(v.clone()),
            })
            .collect();
        ops.extend(delete_configs.iter().map(|k| AlterableConfig {
            name: k.clone(),
            config_operation: DELETE,
            value: None,
        }));
        let body = RequestBody::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type: RESOURCE_TOPIC,
                resource_name: name.to_string(),
                configs: ops,
            }],
            validate_only: false,
        });
        let ResponseBody::IncrementalAlterConfigs(r) = s.call(None, &body)? else {
            unreachable!("call() checks the response type");
        };
        for res in &r.responses {
            let code = ErrorCode(res.error_code);
            let why = describe_error(code, res.error_message.as_deref());
            match code {
                ErrorCode::NONE => {}
                ErrorCode::INVALID_CONFIG | ErrorCode::INVALID_REQUEST => {
                    return Err(usage_error(format!(
                        "cannot change the configs of {name:?}: {why}"
                    )))
                }
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => {
                    return Err(not_found(format!("topic {name:?} does not exist: {why}")))
                }
                _ => {
                    return Err(runtime_error(format!(
                        "cannot change the configs of {name:?}: {why}"
                    )))
                }
            }
        }
        println!("topic {name} configs updated");
    }
    Ok(())
}

fn delete(s: &mut Session, names: &[String], if_exists: bool) -> anyhow::Result<()> {
    let body = RequestBody::DeleteTopics(DeleteTopicsRequest {
        topic_names: names.to_vec(),
        timeout_ms: ADMIN_TIMEOUT_MS,
        ..DeleteTopicsRequest::default()
    });
    let ResponseBody::DeleteTopics(r) = s.call(None, &body)? else {
        unreachable!("call() checks the response type");
    };
    let mut missing = Vec::new();
    for res in &r.responses {
        let name = res.name.clone().unwrap_or_default();
        let code = ErrorCode(res.error_code);
        match code {
            ErrorCode::NONE => println!("deleted topic {name}"),
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION if if_exists => {}
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => missing.push(name),
            _ => {
                return Err(runtime_error(format!(
                    "cannot delete topic {name:?}: {}",
                    describe_error(code, res.error_message.as_deref())
                )))
            }
        }
    }
    if !missing.is_empty() {
        return Err(not_found(format!(
            "topic(s) {} do not exist; use --if-exists to accept that",
            missing.join(", ")
        )));
    }
    Ok(())
}
