//! The `ozone` binary: parse arguments, set up logging, call the library.

use clap::Parser;
use ozone::cli::{
    AuditCommand, BenchCommand, Cli, Command, InitArgs, InstallCommand, ModelsCommand, PkiCommand,
    SchemaCommand, SparkCommand,
};
use ozone_nats::NatsSettings;
use ozone_security::{Home, SecurityConfig};
use std::process::ExitCode;
use std::time::Duration;

fn settings(args: &InitArgs) -> NatsSettings {
    NatsSettings {
        port: args.nats_port,
        monitor_port: args.monitor_port,
        ..NatsSettings::default()
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = cli.home.map(Home::new).unwrap_or_else(Home::from_env);
    let load_cfg = || SecurityConfig::load(&home, &cli.set);
    match cli.command {
        Command::Init(args) => {
            let (report, _) = ozone::init::run(&home, &settings(&args), &cli.set)?;
            if report.changed_anything() {
                println!("initialised {}", home.root().display());
                for d in &report.created_dirs {
                    println!("  dir   {}", d.display());
                }
                for f in &report.written_files {
                    println!("  file  {}", f.display());
                }
                for ca in &report.created_cas {
                    println!("  CA    {}", ca.stem());
                }
                for c in &report.issued {
                    println!("  cert  {c}");
                }
            } else {
                println!(
                    "{} is already initialised; nothing changed",
                    home.root().display()
                );
            }
        }
        Command::Up(args) => {
            let report = ozone::up::run(&home, &settings(&args.init), &cli.set).await?;
            ozone::up::print_summary(&report);
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
            if !args.detach {
                println!("running in the foreground; Ctrl-C stops everything (`ozone up --detach` leaves it running)");
                tokio::signal::ctrl_c().await?;
                for (what, pid) in ozone::down::run(&home) {
                    println!("stopped {what} (pid {pid})");
                }
            }
        }
        Command::Down => {
            let stopped = ozone::down::run(&home);
            if stopped.is_empty() {
                println!("nothing was running");
            }
            for (what, pid) in stopped {
                println!("stopped {what} (pid {pid})");
            }
        }
        Command::Status { json } => {
            let status = ozone::status::gather(&home, &load_cfg()?)
                .await
                .map_err(|e| anyhow::anyhow!("{e:#}\n  (is the ecosystem up? `ozone up`)"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                ozone::status::print(&status);
            }
            if !status.all_ready() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Validate => {
            let checks = ozone::validate::run(&home, &load_cfg()?).await;
            if ozone::validate::print(&checks) > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Install(InstallCommand::Systemd { dir, group }) => {
            for path in ozone::systemd::install(&home, &dir, &group)? {
                println!("wrote {}", path.display());
            }
            if nix::unistd::Uid::effective().is_root() {
                ozone::systemd::open_security_to_group(&home, &group)?;
                println!(
                    "{} is now 0750, group {group} (its keys, ca and certificates stay 0700)",
                    home.security().display()
                );
            } else {
                println!(
                    "as root, before starting: chgrp {group} {dir} && chmod 0750 {dir} (the units' users read identities.json there)",
                    dir = home.security().display()
                );
            }
            println!("then: sudo cp {}/* /etc/systemd/system/ && sudo systemctl daemon-reload && sudo systemctl start ozone-studio.target", dir.display());
        }
        Command::Pki(cmd) => {
            let cfg = load_cfg()?;
            match cmd {
                PkiCommand::Verify => {
                    if ozone::pki_cmd::verify(&home, &cfg) > 0 {
                        return Ok(ExitCode::FAILURE);
                    }
                }
                PkiCommand::Issue { kind, name } => {
                    ozone::pki_cmd::issue(&home, &cfg, kind.into(), &name).await?
                }
                PkiCommand::Renew { within } => {
                    let within = within
                        .map(|d| Duration::from_secs(d * 86_400))
                        .unwrap_or(cfg.certificate_authority.renew_before_expiry);
                    ozone::pki_cmd::renew(&home, &cfg, within).await?;
                }
                PkiCommand::Revoke { name, kind } => {
                    ozone::pki_cmd::revoke(&home, &cfg, kind.map(Into::into), &name).await?
                }
                PkiCommand::List => ozone::pki_cmd::list(&home)?,
            }
        }
        Command::Schema(SchemaCommand::Docs { out, check }) => {
            let text = ozone_bus_schemas::table::markdown();
            let current = std::fs::read_to_string(&out).unwrap_or_default();
            if check {
                if current != text {
                    eprintln!("{} is out of date: run `ozone schema docs`", out.display());
                    return Ok(ExitCode::FAILURE);
                }
                println!("{} is up to date", out.display());
            } else if current != text {
                std::fs::write(&out, text)?;
                println!("wrote {}", out.display());
            } else {
                println!("{} is up to date", out.display());
            }
        }
        Command::Bench(BenchCommand::Bus {
            messages,
            requests,
            sizes,
            rounds,
        }) => {
            eprintln!("ozone bench bus: raw async-nats vs the encrypted bus on one nats-server");
            let plan = ozone::bench::Plan {
                messages: messages as usize,
                requests: requests as usize,
                sizes: sizes.into_iter().map(|s| s as usize).collect(),
                rounds: rounds as usize,
            };
            let rows = until_interrupted(ozone::bench::run(&plan)).await?;
            ozone::bench::print(&rows, &plan);
        }
        Command::Audit(AuditCommand::Tail {
            follow,
            since,
            auditor,
            keys,
        }) => {
            let n =
                ozone::audit_cmd::tail(&home, &load_cfg()?, &auditor, since, follow, keys).await?;
            eprintln!("{n} audit events");
        }
        Command::Models(ModelsCommand::Install { dir }) => {
            let dir = dir.unwrap_or_else(|| ozone::spark_cmd::models_dir(&home));
            let done = ozone::spark_cmd::install(dir.clone(), true)?;
            if done.is_empty() {
                println!("the shipped models are already in {}", dir.display());
            } else {
                println!("installed {} into {}", done.join(", "), dir.display());
            }
        }
        Command::Models(ModelsCommand::List { dir }) => {
            ozone::spark_cmd::list(&dir.unwrap_or_else(|| ozone::spark_cmd::models_dir(&home)));
        }
        Command::Ask(a) => {
            let opts = ozone::spark_cmd::AskOptions {
                max_tokens: a.max_tokens,
                temperature: a.temperature,
                seed: a.seed,
                stop: a.stop,
                system: a.system,
            };
            ozone::spark_cmd::ask(&home, &a.prompt, &opts).await?;
        }
        Command::Spark(SparkCommand::Scale { workers, threads }) => {
            let n = ozone::spark_cmd::scale(&home, workers, threads)?;
            println!("{n} SPARK workers on this host");
        }
        Command::Bench(BenchCommand::Spark {
            tokens,
            embeds,
            models,
        }) => {
            let dir = models.unwrap_or_else(|| ozone::spark_cmd::models_dir(&home));
            eprintln!("ozone bench spark: SPARK over the bus vs in-process, 2 workers vs 1");
            let report = until_interrupted(ozone::spark_bench::run(&dir, tokens, embeds)).await?;
            ozone::spark_bench::print(&report);
        }
        Command::Supervise => ozone::supervise::run(&home).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a command that starts its own servers (the benchmarks) until it ends or the process is
/// told to stop (Ctrl-C, SIGTERM). On a signal the work is dropped first, and with it every
/// server and worker it started (they are killed on drop), so none outlives the command.
async fn until_interrupted<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    tokio::select! {
        done = work => done,
        _ = term.recv() => anyhow::bail!("stopped by SIGTERM; the benchmark's servers are stopped"),
        _ = int.recv() => anyhow::bail!("interrupted; the benchmark's servers are stopped"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OZONE_LOG")
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
