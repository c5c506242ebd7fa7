//! SLOWLOG and LATENCY: the replies over what `introspect` records.

use std::fmt::Write;

use bytes::Bytes;
use keyspace::CmdError;
use resp::ReplyBuf;

use crate::commands::help;
use crate::introspect::{CommandStat, Series};
use crate::state::State;

type Result<T> = std::result::Result<T, CmdError>;

/// Entries SLOWLOG GET answers without a count, as Redis does.
const SLOWLOG_GET_DEFAULT: usize = 10;

fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

fn unknown_sub(cmd: &str, sub: &[u8]) -> CmdError {
    CmdError::UnknownSubcommand {
        cmd: cmd.into(),
        sub: String::from_utf8_lossy(sub).into_owned(),
    }
}

pub fn slowlog(st: &mut State, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    let sub = &a[1];
    if is(sub, "get") && a.len() <= 3 {
        let count = match a.get(2) {
            None => SLOWLOG_GET_DEFAULT,
            Some(n) => {
                let n = resp::parse_i64(n).ok_or(CmdError::NotInteger)?;
                if n < -1 {
                    return Err(CmdError::other(
                        "ERR count should be greater than or equal to -1",
                    ));
                }
                usize::try_from(n).unwrap_or(usize::MAX)
            }
        };
        let n = count.min(st.intro.slowlog.len());
        out.array(n);
        for e in st.intro.slowlog.iter().take(n) {
            out.array(6);
            out.int(e.id as i64);
            out.int(e.unix_secs as i64);
            out.int(e.duration_us as i64);
            out.array(e.args.len());
            e.args.iter().for_each(|x| out.bulk(x));
            out.bulk(e.addr.as_bytes());
            out.bulk(&e.name);
        }
    } else if is(sub, "len") && a.len() == 2 {
        out.int(st.intro.slowlog.len() as i64);
    } else if is(sub, "reset") && a.len() == 2 {
        st.intro.slowlog.reset();
        out.ok();
    } else if is(sub, "help") && a.len() == 2 {
        help(
            out,
            &[
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Prints this help.",
            ],
        );
    } else {
        return Err(unknown_sub("SLOWLOG", sub));
    }
    Ok(())
}

pub fn latency(st: &mut State, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    let sub = &a[1];
    if is(sub, "history") && a.len() == 3 {
        match st.intro.latency.get(&a[2]) {
            None => out.array(0),
            Some((_, series)) => {
                out.array(series.samples.len());
                for s in &series.samples {
                    out.array(2);
                    out.int(s.unix_secs as i64);
                    out.int(s.latency_ms as i64);
                }
            }
        }
    } else if is(sub, "latest") && a.len() == 2 {
        let events: Vec<_> = st.intro.latency.events().collect();
        out.array(events.len());
        for (name, series) in events {
            let last = series
                .samples
                .back()
                .copied()
                .unwrap_or(crate::introspect::Sample {
                    unix_secs: 0,
                    latency_ms: 0,
                });
            out.array(4);
            out.bulk(name.as_bytes());
            out.int(last.unix_secs as i64);
            out.int(last.latency_ms as i64);
            out.int(series.max_ms as i64);
        }
    } else if is(sub, "graph") && a.len() == 3 {
        let Some((name, series)) = st.intro.latency.get(&a[2]) else {
            return Err(CmdError::other(format!(
                "ERR No samples available for event '{}'",
                String::from_utf8_lossy(&a[2])
            )));
        };
        out.verbatim(graph(name, series).as_bytes());
    } else if is(sub, "doctor") && a.len() == 2 {
        out.verbatim(doctor(st).as_bytes());
    } else if is(sub, "reset") {
        let n = if a.len() == 2 {
            st.intro.latency.reset(None)
        } else {
            a[2..].iter().map(|e| st.intro.latency.reset(Some(e))).sum()
        };
        out.int(n as i64);
    } else if is(sub, "histogram") {
        histogram(st, &a[2..], out);
    } else if is(sub, "help") && a.len() == 2 {
        help(
            out,
            &[
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DOCTOR",
                "    Return a human readable latency analysis report.",
                "GRAPH <event>",
                "    Return an ASCII latency graph for the <event> class.",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
                "    If no commands are specified then all histograms are replied.",
                "HELP",
                "    Prints this help.",
            ],
        );
    } else {
        return Err(unknown_sub("LATENCY", sub));
    }
    Ok(())
}

/// LATENCY HISTOGRAM: every command with calls, or the ones named (a command with
/// subcommands stands for all of them); names without data are skipped.
fn histogram(st: &State, names: &[Bytes], out: &mut ReplyBuf) {
    let all = st.intro.commands.sorted();
    let with_data = |s: &&(&str, &CommandStat)| s.1.histogram.total() > 0;
    let chosen: Vec<&(&str, &CommandStat)> = if names.is_empty() {
        all.iter().filter(with_data).collect()
    } else {
        let mut chosen = Vec::new();
        for n in names {
            let n = String::from_utf8_lossy(n).to_ascii_lowercase();
            for entry in all.iter().filter(with_data) {
                let parent = entry.0.split('|').next().unwrap_or(entry.0);
                if (entry.0 == n || (parent == n && entry.0.contains('|')))
                    && !chosen
                        .iter()
                        .any(|c: &&(&str, &CommandStat)| c.0 == entry.0)
                {
                    chosen.push(entry);
                }
            }
        }
        chosen
    };
    out.map(chosen.len());
    for (name, stat) in chosen {
        out.bulk(name.as_bytes());
        out.map(2);
        out.bulk(b"calls");
        out.int(stat.histogram.total() as i64);
        out.bulk(b"histogram_usec");
        let buckets = stat.histogram.cumulative();
        out.map(buckets.len());
        for (bound, count) in buckets {
            out.int(bound as i64);
            out.int(count as i64);
        }
    }
}

/// Columns a LATENCY GRAPH draws, one per sample, newest on the right.
const GRAPH_COLUMNS_MAX: usize = 80;
/// Rows of the LATENCY GRAPH plot.
const GRAPH_ROWS: u64 = 4;

/// An ASCII chart of an event's samples: one column per sample, `#` up to its height.
fn graph(name: &str, series: &Series) -> String {
    let samples: Vec<_> = series
        .samples
        .iter()
        .rev()
        .take(GRAPH_COLUMNS_MAX)
        .rev()
        .collect();
    let min = samples.iter().map(|s| s.latency_ms).min().unwrap_or(0);
    let max = samples.iter().map(|s| s.latency_ms).max().unwrap_or(0);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{name} - high {max} ms, low {min} ms (all time high {} ms)",
        series.max_ms
    );
    o.push_str(&"-".repeat(GRAPH_COLUMNS_MAX));
    o.push('\n');
    for row in (1..=GRAPH_ROWS).rev() {
        for s in &samples {
            let height = if max == 0 {
                0
            } else {
                (s.latency_ms * GRAPH_ROWS).div_ceil(max)
            };
            o.push(if height >= row { '#' } else { ' ' });
        }
        o.push('\n');
    }
    o
}

/// A short report: each event's worst and average latency, with what usually causes it.
fn doctor(st: &State) -> String {
    if st.intro.latency.is_empty() {
        return "No latency spike was observed since this node started (or since LATENCY RESET).\n\
                Latency monitoring records events that take at least latency-monitor-threshold \
                milliseconds (0 disables it).\n"
            .into();
    }
    let mut o = String::from("Latency events observed:\n\n");
    for (i, (name, series)) in st.intro.latency.events().enumerate() {
        let n = series.samples.len().max(1) as u64;
        let avg = series.samples.iter().map(|s| s.latency_ms).sum::<u64>() / n;
        let _ = writeln!(
            o,
            "{}. {name}: {} latency spikes (average {avg}ms, worst {}ms).",
            i + 1,
            series.samples.len(),
            series.max_ms
        );
    }
    o.push_str("\nAdvice:\n");
    for (name, _) in st.intro.latency.events() {
        let advice = match name {
            "command" | "fast-command" => {
                "- slow commands: check SLOWLOG GET for the commands involved; O(N) commands on large values block every client."
            }
            "expire-cycle" => {
                "- expire-cycle: many keys expiring at once, or large values expiring; spread expiry times."
            }
            _ => continue,
        };
        o.push_str(advice);
        o.push('\n');
    }
    o
}
