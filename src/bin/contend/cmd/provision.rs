//! `contend provision`: servers up, a command run against them, servers down.

use std::process::Stdio;

use crate::cli::ProvisionCommand;
use crate::cmd::Outcome;
use anyhow::Context;
use contend::provision::{provision, ProvisionOptions, Servers};
use tokio::signal::unix::{signal, SignalKind};

pub async fn run(args: ProvisionCommand) -> anyhow::Result<Outcome> {
    let options = ProvisionOptions::try_from(args.servers)?;
    let servers = provision(&options).await?;
    let pg = &servers.postgres;
    eprintln!(
        "contend: PostgreSQL {} at {} (max_connections {}), Redis {}",
        pg.version,
        pg.masked_url(),
        pg.max_connections,
        servers
            .redis
            .as_ref()
            .map_or("none".to_string(), |r| format!("{} at {}", r.version, r.masked_url()))
    );
    let outcome = if args.command.is_empty() {
        wait_for_signal(&servers).await
    } else {
        run_command(&servers, &args.command).await
    };
    servers.shutdown().await;
    outcome
}

/// Prints the URLs (the user asked for them: passwords included) and waits
/// for Ctrl-C or SIGTERM.
async fn wait_for_signal(servers: &Servers) -> anyhow::Result<Outcome> {
    println!("DATABASE_URL={}", servers.postgres.url);
    if let Some(redis) = &servers.redis {
        println!("REDIS_URL={}", redis.url);
    }
    eprintln!("contend: servers up; Ctrl-C stops them");
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        _ = hangup.recv() => {}
    }
    eprintln!("contend: stopping servers");
    Ok(Outcome::Ok)
}

/// Runs the user's command with the servers' URLs in its environment and
/// returns its exit status. Signals that would end contend stop the command
/// first, so the servers are always torn down.
async fn run_command(servers: &Servers, command: &[String]) -> anyhow::Result<Outcome> {
    let mut child = tokio::process::Command::new(&command[0]);
    child
        .args(&command[1..])
        .env("DATABASE_URL", &servers.postgres.url)
        .env("CONTEND_MAX_CONNECTIONS", servers.postgres.max_connections.to_string())
        .stdin(Stdio::inherit());
    match &servers.redis {
        Some(redis) => child.env("REDIS_URL", &redis.url),
        None => child.env_remove("REDIS_URL"),
    };
    let mut child = child.spawn().with_context(|| format!("cannot run `{}`", command[0]))?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the command")?,
            // A terminal Ctrl-C reaches the command too; wait for it to end.
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
                }
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(Outcome::CommandExited(code.clamp(0, 255) as u8))
}
