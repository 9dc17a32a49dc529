//! The `ozone` binary: parse arguments, set up logging, call the library.

use clap::Parser;
use ozone::cli::{
    AuditCommand, BenchCommand, Cli, Command, InitArgs, InstallCommand, MethodologyCommand,
    ModelsCommand, PkiCommand, SchemaCommand, SparkCommand, TaskCommand,
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
            let (report, _) = ozone::cmd::init::run(&home, &settings(&args), &cli.set)?;
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
            let report = ozone::cmd::up::run(&home, &settings(&args.init), &cli.set).await?;
            ozone::cmd::up::print_summary(&report);
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
            if !args.detach {
                println!("running in the foreground; Ctrl-C stops everything (`ozone up --detach` leaves it running)");
                tokio::signal::ctrl_c().await?;
                for (what, pid) in ozone::cmd::down::run(&home) {
                    println!("stopped {what} (pid {pid})");
                }
            }
        }
        Command::Down => {
            let stopped = ozone::cmd::down::run(&home);
            if stopped.is_empty() {
                println!("nothing was running");
            }
            for (what, pid) in stopped {
                println!("stopped {what} (pid {pid})");
            }
        }
        Command::Status { json } => {
            let status = ozone::cmd::status::gather(&home, &load_cfg()?)
                .await
                .map_err(|e| anyhow::anyhow!("{e:#}\n  (is the ecosystem up? `ozone up`)"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                ozone::cmd::status::print(&status);
            }
            if !status.all_ready() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Validate => {
            let checks = ozone::cmd::validate::run(&home, &load_cfg()?).await;
            if ozone::cmd::validate::print(&checks) > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Install(InstallCommand::Systemd { dir, group }) => {
            for path in ozone::cmd::systemd::install(&home, &dir, &group)? {
                println!("wrote {}", path.display());
            }
            if nix::unistd::Uid::effective().is_root() {
                ozone::cmd::systemd::open_security_to_group(&home, &group)?;
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
                    if ozone::cmd::pki::verify(&home, &cfg) > 0 {
                        return Ok(ExitCode::FAILURE);
                    }
                }
                PkiCommand::Issue { kind, name } => {
                    ozone::cmd::pki::issue(&home, &cfg, kind.into(), &name).await?
                }
                PkiCommand::Renew { within } => {
                    let within = within
                        .map(|d| Duration::from_secs(d * 86_400))
                        .unwrap_or(cfg.certificate_authority.renew_before_expiry);
                    ozone::cmd::pki::renew(&home, &cfg, within).await?;
                }
                PkiCommand::Revoke { name, kind } => {
                    ozone::cmd::pki::revoke(&home, &cfg, kind.map(Into::into), &name).await?
                }
                PkiCommand::List => ozone::cmd::pki::list(&home)?,
            }
        }
        Command::Schema(SchemaCommand::Docs { out, check }) => {
            let stale = ozone::cmd::schema::docs(&out, check)?;
            if check && stale > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Bench(BenchCommand::Bus {
            messages,
            requests,
            sizes,
            rounds,
        }) => {
            eprintln!("ozone bench bus: raw async-nats vs the encrypted bus on one nats-server");
            let plan = ozone::cmd::bench_bus::Plan {
                messages: messages as usize,
                requests: requests as usize,
                sizes: sizes.into_iter().map(|s| s as usize).collect(),
                rounds: rounds as usize,
            };
            let rows = until_interrupted(ozone::cmd::bench_bus::run(&plan)).await?;
            ozone::cmd::bench_bus::print(&rows, &plan);
        }
        Command::Audit(AuditCommand::Tail {
            follow,
            since,
            auditor,
            keys,
        }) => {
            let n =
                ozone::cmd::audit::tail(&home, &load_cfg()?, &auditor, since, follow, keys).await?;
            eprintln!("{n} audit events");
        }
        Command::Models(ModelsCommand::Install { dir }) => {
            let dir = dir.unwrap_or_else(|| ozone::cmd::spark::models_dir(&home));
            ozone::cmd::spark::install(&dir, false)?;
        }
        Command::Models(ModelsCommand::List { dir }) => {
            ozone::cmd::spark::list(&dir.unwrap_or_else(|| ozone::cmd::spark::models_dir(&home)))?;
        }
        Command::Methodology(m) => {
            use ozone::cmd::methodology;
            match m {
                MethodologyCommand::List { json } => methodology::list(&home, json).await?,
                MethodologyCommand::Show { name, version } => {
                    methodology::show(&home, &name, version).await?
                }
                MethodologyCommand::Validate { file } => {
                    if !methodology::validate_file(&file)? {
                        return Ok(ExitCode::FAILURE);
                    }
                }
                MethodologyCommand::Register { file } => {
                    methodology::register(&home, &file).await?
                }
                MethodologyCommand::Deprecate { name, version } => {
                    methodology::deprecate(&home, &name, &version).await?
                }
            }
        }
        Command::Task(t) => {
            use ozone::cmd::task;
            let ok = match t {
                TaskCommand::Run {
                    methodology,
                    inputs,
                    version,
                    wait,
                    json,
                } => {
                    let o = task::RunOptions {
                        version,
                        inputs,
                        wait,
                        json,
                    };
                    task::run(&home, &methodology, &o).await?
                }
                TaskCommand::List { json } => task::list(&home, json).await.map(|()| true)?,
                TaskCommand::Show { id } => task::show(&home, &id).await.map(|()| true)?,
                TaskCommand::Watch { id, json } => task::watch(&home, &id, json).await?,
                TaskCommand::Cancel { id } => task::cancel(&home, &id).await.map(|()| true)?,
                TaskCommand::Approve { id, step } => {
                    task::approve(&home, &id, &step).await.map(|()| true)?
                }
            };
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Ask(a) => {
            let opts = ozone::cmd::spark::AskOptions {
                max_tokens: a.max_tokens,
                temperature: a.temperature,
                seed: a.seed,
                stop: a.stop,
                system: a.system,
            };
            ozone::cmd::spark::ask(&home, &a.prompt, &opts).await?;
        }
        Command::Spark(SparkCommand::Scale { workers, threads }) => {
            let n = ozone::cmd::spark::scale(&home, workers, threads)?;
            println!("{n} SPARK workers on this host");
        }
        Command::Bench(BenchCommand::Spark {
            tokens,
            embeds,
            models,
        }) => {
            let dir = models.unwrap_or_else(|| ozone::cmd::spark::models_dir(&home));
            eprintln!("ozone bench spark: SPARK over the bus vs in-process, 2 workers vs 1");
            let report =
                until_interrupted(ozone::cmd::bench_spark::run(&dir, tokens, embeds)).await?;
            ozone::cmd::bench_spark::print(&report);
        }
        Command::Supervise => ozone::cmd::supervise::run(&home).await?,
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
