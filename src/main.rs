//! The `flumen` binary: parses the command line, runs one library job, and turns its result
//! into an exit code and a clear message. All logic lives in the library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use flumen::config::{LogFormat, Settings};

#[derive(Parser)]
#[command(
    name = "flumen",
    version,
    about = "Exactly-once relay from Kafka through a durable local channel into HDFS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and try to reach Kafka and HDFS.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Deliver every pending batch of a channel directory to HDFS (no Kafka needed).
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        /// Channel directory to replay (default: the config's channel.dir).
        #[arg(long)]
        channel: Option<PathBuf>,
        /// List what would be written and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// `hdfs` (default) or `stdout` to export the records as JSON lines instead.
        #[arg(long, default_value = "hdfs")]
        to: String,
    },
    /// Inspect a channel directory.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Convert a Flume agent's properties into a flumen config on stdout.
    ImportFlume {
        /// The Flume properties file.
        file: PathBuf,
        #[arg(long)]
        agent: String,
        /// Kafka bootstrap servers (Flume's zookeeperConnect has no Kafka 4 equivalent).
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// NameNode URL for an hdfs.path without one.
        #[arg(long)]
        hdfs_url: Option<String>,
        /// Channel directory (a memory channel has none).
        #[arg(long)]
        channel_dir: Option<String>,
    },
    /// Inspect or amend the HDFS claim ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Per-partition positions at every stage: Kafka, consumer group, channel, HDFS.
    Offsets {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Record that offsets FROM..=THROUGH of a halted partition are lost (gone from the channel
    /// and from Kafka), so the partition continues after them. /health names the exact command
    /// when a partition halts. Refused unless HDFS holds everything before FROM.
    Skip {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        through: i64,
    },
}

#[derive(Subcommand)]
enum WalCommand {
    /// Verify every frame and checksum; exits 1 if anything is damaged.
    Check { dir: PathBuf },
    /// Print records as JSON lines.
    Dump {
        dir: PathBuf,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long)]
        from_offset: Option<i64>,
        #[arg(long)]
        to_offset: Option<i64>,
    },
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn load(path: &Path) -> Result<Settings> {
    Ok(Settings::load(path)?)
}

fn main() {
    // glibc gives each thread its own malloc arena; with librdkafka's and tokio's threads that
    // fragments into tens of MiB that never return. Two arenas keep RSS flat under load.
    // SAFETY: mallopt is called before any thread exists and only tunes the allocator.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let cli = Cli::parse();
    // Crash-test builds read FAILPOINTS here; release builds compile no failpoint at all.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flumen: error: {}", error_chain(&e));
            2
        }
    };
    std::process::exit(code);
}

/// The error and its causes, skipping a cause whose text its parent already includes (the
/// library's messages often embed their source for the sake of log lines).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // One worker: the sink is one task, and hdfs-native runs each file's packet sender and
    // ack listener as tasks beside it, so a second worker only moved their wake-ups across
    // threads. Side by side (e2e bench, 9M events, six pairs, load 0.8-2.7) live ran in a
    // median 4.81 s against 5.25 with two, its tokio threads spent 1.51-1.57 CPU s against
    // 1.60-2.03, and the drain and replay were unchanged (ARCHITECTURE.md, Invariants).
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // Deeply nested HDFS futures; generous headroom costs only address space.
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run { config } => run_daemon(&config),
        Command::Check { config } => check(&config),
        Command::Replay {
            config,
            channel,
            dry_run,
            to,
        } => replay(&config, channel, dry_run, &to),
        Command::Ledger {
            command:
                LedgerCommand::Skip {
                    config,
                    topic,
                    partition,
                    from,
                    through,
                },
        } => {
            let tp = flumen::wal::TopicPartition::new(topic, partition);
            ledger_skip(&config, &tp, from, through)
        }
        Command::Wal { command } => wal(command),
        Command::ImportFlume {
            file,
            agent,
            bootstrap_servers,
            hdfs_url,
            channel_dir,
        } => {
            let overrides = flumen::flume_import::Overrides {
                bootstrap_servers,
                hdfs_url,
                channel_dir,
            };
            import_flume(&file, &agent, &overrides)
        }
        Command::Offsets { config, json } => offsets(&config, json),
    }
}

/// `flumen run`: the daemon, until a signal (see [`shutdown_signal`]).
fn run_daemon(config: &Path) -> Result<i32> {
    let config = load(config)?;
    init_logging(config.log_format == LogFormat::Json);
    let timeout = config.shutdown_timeout;
    runtime()?.block_on(async move {
        flumen::relay::run(config, shutdown_signal(timeout)).await?;
        tracing::info!("stopped cleanly");
        Ok(0)
    })
}

fn check(config: &Path) -> Result<i32> {
    let config = load(config)?;
    init_logging(false);
    runtime()?.block_on(flumen::check::check(&config))?;
    println!("config OK; Kafka and HDFS reachable");
    Ok(0)
}

/// `flumen replay`: a channel's batches to HDFS through the commit protocol, or to stdout.
fn replay(config: &Path, channel: Option<PathBuf>, dry_run: bool, to: &str) -> Result<i32> {
    let mut config = load(config)?;
    init_logging(false);
    if let Some(dir) = channel {
        config.channel.dir = dir;
    }
    match to {
        "stdout" => {
            flumen::tools::dump(
                &config.channel.dir,
                &Default::default(),
                &mut std::io::stdout().lock(),
            )?;
            Ok(0)
        }
        "hdfs" => runtime()?
            .block_on(flumen::tools::replay(&config, dry_run))
            .map(|_| 0)
            .map_err(Into::into),
        other => bail!("--to must be hdfs or stdout, not {other:?}"),
    }
}

fn ledger_skip(
    config: &Path,
    tp: &flumen::wal::TopicPartition,
    from: i64,
    through: i64,
) -> Result<i32> {
    let config = load(config)?;
    init_logging(false);
    runtime()?.block_on(flumen::tools::ledger_skip(&config, tp, from, through))?;
    println!("recorded: {tp} offsets {from}..={through} skipped");
    Ok(0)
}

/// `flumen wal check|dump`: exit 1 when `check` finds damage.
fn wal(command: WalCommand) -> Result<i32> {
    match command {
        WalCommand::Check { dir } => {
            let report = flumen::tools::wal_check(&dir)?;
            print!("{}", report.text);
            Ok(if report.damaged { 1 } else { 0 })
        }
        WalCommand::Dump {
            dir,
            topic,
            partition,
            from_offset,
            to_offset,
        } => {
            let filter = flumen::tools::DumpFilter {
                topic,
                partition,
                from_offset,
                to_offset,
            };
            flumen::tools::dump(&dir, &filter, &mut std::io::stdout().lock())
                .with_context(|| format!("dumping {}", dir.display()))?;
            Ok(0)
        }
    }
}

/// `flumen import-flume`: the config on stdout, a line per warning on stderr.
fn import_flume(
    file: &Path,
    agent: &str,
    overrides: &flumen::flume_import::Overrides,
) -> Result<i32> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let r = flumen::flume_import::convert(&text, agent, overrides)?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", r.toml);
    Ok(0)
}

/// `flumen offsets`: unknown parts are shown, not hidden. They are said on stderr, and the
/// exit is 1 when nothing at all could be learned.
fn offsets(config: &Path, json: bool) -> Result<i32> {
    let config = load(config)?;
    let (rows, errors) = runtime()?.block_on(flumen::tools::offsets(&config))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", flumen::tools::offsets_table(&rows, &errors));
    }
    for e in &errors {
        eprintln!("flumen: unknown: {e}");
    }
    Ok(if rows.is_empty() && !errors.is_empty() {
        1
    } else {
        0
    })
}

/// Resolves on the first SIGTERM or SIGINT. A second signal, or the graceful timeout running
/// out, exits at once: the channel is durable, so recovery handles whatever was in flight.
async fn shutdown_signal(timeout: Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!(
        timeout_ms = timeout.as_millis() as u64,
        "shutting down: no new records, delivering the channel"
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::warn!("second signal: exiting now"),
            _ = int.recv() => tracing::warn!("second signal: exiting now"),
            _ = tokio::time::sleep(timeout) => tracing::warn!("graceful shutdown timed out: exiting now"),
        }
        std::process::exit(130);
    });
}
