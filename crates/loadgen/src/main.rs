//! `cacheplane-loadgen`: the loads redis-benchmark cannot make. Each operation of the
//! default mode GETs a key drawn from a Zipf distribution of popularity and, when the GET
//! finds nothing, SETs it (a read-through cache), so the hit ratio measures how well the
//! server's eviction keeps the popular keys (`bench/hitratio.sh`). `--mode fill` SETs every
//! key once instead; `--mode handshake` opens a new TLS connection per PING
//! (`bench/tls.sh`); `--mode command -- CMD ARGS` repeats one command line with random ids,
//! as redis-benchmark does but with a client cheap enough not to be the bottleneck
//! (`bench/datatypes.sh`, `bench/tls.sh`).
//!
//! Prints one line of `name=value` pairs: what was done, how long it took, the rates.

mod command;
mod conn;
mod handshake;
mod keys;
mod workload;
mod zipf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};

use conn::{Conn, Target};
use workload::{Counts, Until, Workload};

#[derive(Parser)]
#[command(
    name = "cacheplane-loadgen",
    about = "Loads for cacheplane's benchmarks: read-through with Zipf key popularity, fills, TLS handshakes, one repeated command"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 6379)]
    port: u16,
    #[arg(long, value_enum, default_value_t = Mode::ReadThrough)]
    mode: Mode,
    /// Connections, each with its own sequence of keys.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Commands sent per write on a connection (GETs; then the SETs of those that missed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pipeline: u64,
    /// Size of the key space (`key:000000000000` ...); fill mode SETs all of them, command
    /// mode draws `__rand_int__` below it.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=999_999_999_999))]
    keys: u64,
    /// Operations in the measured phase, over all connections.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Run the measured phase for this many seconds instead of --requests operations
    /// (read-through mode).
    #[arg(long)]
    duration: Option<f64>,
    /// Operations before the measured phase (not counted), to fill the cache.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Bytes in each value SET.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Zipf exponent of key popularity (0 is uniform).
    #[arg(long, default_value_t = 0.99)]
    zipf: f64,
    /// Seed of the key sequences (connection i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// SET with `EX` this many seconds (volatile-* policies evict only keys with a TTL).
    #[arg(long)]
    ttl: Option<u64>,
    /// Connect over TLS, trusting this CA certificate (PEM); handshake mode needs it.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: the name the server's certificate must carry.
    #[arg(long, default_value = "localhost")]
    tls_server_name: String,
    /// Command mode: the command line to repeat (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// GET a Zipf-popular key; SET it on a miss.
    ReadThrough,
    /// SET every key of the key space once (split among the connections).
    Fill,
    /// A new TLS connection for each PING, --requests of them (needs --tls-ca).
    Handshake,
    /// The command line after `--`, --requests times over all connections.
    Command,
}

/// A connection and its own random sequence, kept from the warm-up to the measured phase.
struct Session {
    conn: Conn,
    rng: fastrand::Rng,
}

// One thread: the benchmark pins the load generator to one core, where a multi-threaded
// runtime would only add cross-thread wake-ups.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(secs) = args.duration {
        anyhow::ensure!(
            secs.is_finite() && secs > 0.0,
            "--duration must be positive"
        );
    }
    let addr = format!("{}:{}", args.host, args.port);
    let target = match &args.tls_ca {
        Some(ca) => Target::tls(addr, handshake::client_config(ca)?, &args.tls_server_name)?,
        None => Target::plain(addr),
    };
    let command_mode = args.mode == Mode::Command;
    anyhow::ensure!(
        command_mode || args.command.is_empty(),
        "a command line after -- needs --mode command"
    );
    anyhow::ensure!(
        !command_mode || (args.duration.is_none() && args.warmup == 0 && args.ttl.is_none()),
        "--duration, --warmup and --ttl apply to read-through and fill, not --mode command"
    );
    match args.mode {
        Mode::Handshake => handshakes(&args, &target).await,
        Mode::Command => commands(&args, &target).await,
        Mode::ReadThrough | Mode::Fill => cache_load(&args, &target).await,
    }
}

async fn handshakes(args: &Args, target: &Target) -> anyhow::Result<()> {
    anyhow::ensure!(target.tls.is_some(), "--mode handshake needs --tls-ca");
    let run = handshake::run(target, args.connections, args.requests).await?;
    let secs = run.elapsed.as_secs_f64();
    println!(
        "mode=handshake connections={} handshakes={} seconds={secs:.3} handshakes_per_sec={:.0}",
        args.connections,
        run.done,
        run.done as f64 / secs,
    );
    Ok(())
}

async fn commands(args: &Args, target: &Target) -> anyhow::Result<()> {
    let template = Arc::new(command::Template::new(&args.command, args.keys)?);
    let sessions = connect_all(args, target).await?;
    let start = Instant::now();
    let n = args.connections;
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut session)| {
            let template = Arc::clone(&template);
            let r = share(args.requests, n, i as u64);
            let pipeline = args.pipeline;
            tokio::spawn(async move {
                let Session { conn, rng } = &mut session;
                command::run(conn, &template, rng, pipeline, r.end - r.start).await
            })
        })
        .collect();
    let mut total = Counts::default();
    for task in tasks {
        total.add(task.await.context("connection task")??);
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(message) = &total.first_error {
        anyhow::bail!("{} error replies, the first: {message}", total.errors);
    }
    println!(
        "mode=command connections={} pipeline={} requests={} seconds={secs:.3} requests_per_sec={:.0}",
        args.connections,
        args.pipeline,
        total.commands,
        total.commands as f64 / secs,
    );
    Ok(())
}

async fn cache_load(args: &Args, target: &Target) -> anyhow::Result<()> {
    let zipf = zipf::Zipf::new(args.keys, args.zipf)
        .context("--zipf must be a finite number, 0 or more")?;
    let workload = Arc::new(Workload {
        keys: keys::KeyMap::new(args.keys),
        zipf,
        value: vec![b'v'; args.value_bytes],
        ttl_secs: args.ttl,
        pipeline: args.pipeline as usize,
    });
    let mut sessions = connect_all(args, target).await?;
    let n = sessions.len() as u64;
    let (mode, finished) = if args.mode == Mode::Fill {
        let ranges: Vec<_> = (0..n).map(|i| share(args.keys, n, i)).collect();
        let fill = run(&workload, sessions, |i| Phase::Fill(ranges[i].clone())).await?;
        ("fill", fill)
    } else {
        if args.warmup > 0 {
            let warmup = |i: usize| {
                let r = share(args.warmup, n, i as u64);
                Phase::ReadThrough(Until::Operations(r.end - r.start))
            };
            sessions = run(&workload, sessions, warmup).await?.sessions;
        }
        let deadline = args
            .duration
            .map(|secs| Instant::now() + Duration::from_secs_f64(secs));
        let measured = |i: usize| match deadline {
            Some(at) => Phase::ReadThrough(Until::Deadline(at)),
            None => {
                let r = share(args.requests, n, i as u64);
                Phase::ReadThrough(Until::Operations(r.end - r.start))
            }
        };
        ("read-through", run(&workload, sessions, measured).await?)
    };
    let Finished {
        counts, elapsed, ..
    } = finished;
    if let Some(message) = &counts.first_error {
        eprintln!("{} error replies, the first: {message}", counts.errors);
    }
    let secs = elapsed.as_secs_f64();
    let lookups = counts.hits + counts.misses;
    println!(
        "mode={mode} connections={} pipeline={} keys={} zipf={} requests={} hits={} misses={} errors={} hit_ratio={:.6} seconds={:.3} ops_per_sec={:.0} commands_per_sec={:.0}",
        args.connections,
        args.pipeline,
        args.keys,
        args.zipf,
        counts.operations,
        counts.hits,
        counts.misses,
        counts.errors,
        if lookups == 0 {
            0.0
        } else {
            counts.hits as f64 / lookups as f64
        },
        secs,
        counts.operations as f64 / secs,
        counts.commands as f64 / secs,
    );
    Ok(())
}

/// `--connections` sessions, connection `i` with the random sequence of `--seed` + `i`.
async fn connect_all(args: &Args, target: &Target) -> anyhow::Result<Vec<Session>> {
    let mut sessions = Vec::new();
    for i in 0..args.connections {
        sessions.push(Session {
            conn: Conn::connect(target).await?,
            rng: fastrand::Rng::with_seed(args.seed.wrapping_add(i)),
        });
    }
    Ok(sessions)
}

/// What one connection does in a phase.
enum Phase {
    ReadThrough(Until),
    Fill(std::ops::Range<u64>),
}

/// A phase run on every session.
struct Finished {
    /// The sessions, for the next phase.
    sessions: Vec<Session>,
    /// The sum over the sessions.
    counts: Counts,
    /// The phase's wall-clock time.
    elapsed: Duration,
}

/// Runs one phase on every session at once.
async fn run(
    workload: &Arc<Workload>,
    sessions: Vec<Session>,
    phase_of: impl Fn(usize) -> Phase,
) -> anyhow::Result<Finished> {
    let start = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut session)| {
            let workload = Arc::clone(workload);
            let phase = phase_of(i);
            tokio::spawn(async move {
                let counts = match phase {
                    Phase::ReadThrough(until) => {
                        workload
                            .read_through(&mut session.conn, &mut session.rng, until)
                            .await?
                    }
                    Phase::Fill(ids) => workload.fill(&mut session.conn, ids).await?,
                };
                anyhow::Ok((session, counts))
            })
        })
        .collect();
    let mut sessions = Vec::new();
    let mut total = Counts::default();
    for task in tasks {
        let (session, counts) = task.await.context("connection task")??;
        sessions.push(session);
        total.add(counts);
    }
    Ok(Finished {
        sessions,
        counts: total,
        elapsed: start.elapsed(),
    })
}

/// Connection `i`'s part of `total` items shared by `n` connections: a range, the first
/// `total % n` connections one item longer.
fn share(total: u64, n: u64, i: u64) -> std::ops::Range<u64> {
    let base = total / n;
    let extra = total % n;
    let start = i * base + i.min(extra);
    start..start + base + u64::from(i < extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_total_once() {
        for (total, n) in [(10, 3), (3, 10), (1_000_000, 50), (0, 4)] {
            let ranges: Vec<_> = (0..n).map(|i| share(total, n, i)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[n as usize - 1].end, total);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
        }
    }
}
