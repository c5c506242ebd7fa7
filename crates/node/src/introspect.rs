//! What the node records about the commands it runs, for SLOWLOG, LATENCY and INFO's
//! `commandstats`, `errorstats` and `latencystats`: the slow log ring, the latency
//! monitor's per-event history, per-command counters with a latency histogram, and error
//! replies counted by their first word.
//!
//! No I/O and no clock: durations and times are passed in, so the logic is tested with data.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// Arguments a slow log entry keeps; the rest are summed up in the last one (Redis's
/// `SLOWLOG_ENTRY_MAX_ARGC`).
pub const SLOWLOG_ARGS_MAX: usize = 32;
/// Bytes of one argument a slow log entry keeps (Redis's `SLOWLOG_ENTRY_MAX_STRING`).
pub const SLOWLOG_ARG_BYTES_MAX: usize = 128;
/// Samples each latency event keeps: one per second at most (Redis's `LATENCY_TS_LEN`).
pub const LATENCY_HISTORY_LEN: usize = 160;
/// Distinct error prefixes counted; later ones are not tracked, so a client inventing
/// error words cannot grow the table (Redis's `ERROR_STATS_NUMBER`).
pub const ERROR_KINDS_MAX: usize = 128;
/// Distinct `command|subcommand` names counted; past it a subcommand counts under its
/// command.
pub const STAT_NAMES_MAX: usize = 1024;
/// Histogram buckets: bucket `k` counts durations of at most 2^k microseconds (the last
/// one, about 36 minutes, takes everything longer).
const HISTOGRAM_BUCKETS: usize = 32;
/// Bytes of a subcommand name that may become a `command|subcommand` statistic.
const SUBCOMMAND_NAME_BYTES_MAX: usize = 32;
/// Room for `command|subcommand` (command names are at most 32 bytes too).
pub const FULL_NAME_BYTES_MAX: usize = 2 * SUBCOMMAND_NAME_BYTES_MAX + 1;

/// One slow log entry, as SLOWLOG GET reports it.
#[derive(Debug, Clone)]
pub struct SlowEntry {
    pub id: u64,
    pub unix_secs: u64,
    pub duration_us: u64,
    pub args: Vec<Bytes>,
    pub addr: String,
    pub name: Bytes,
}

/// The slow log: the newest entries first, at most `slowlog-max-len` of them.
#[derive(Debug, Default)]
pub struct SlowLog {
    entries: VecDeque<SlowEntry>,
    next_id: u64,
}

impl SlowLog {
    /// Records a command; `args` are trimmed to what an entry keeps.
    pub fn push(
        &mut self,
        max_len: usize,
        unix_secs: u64,
        duration_us: u64,
        args: &[Bytes],
        addr: &str,
        name: &Bytes,
    ) {
        let entry = SlowEntry {
            id: self.next_id,
            unix_secs,
            duration_us,
            args: trimmed_args(args),
            addr: addr.to_string(),
            name: name.clone(),
        };
        self.next_id += 1;
        self.entries.push_front(entry);
        self.trim(max_len);
    }

    /// Drops the oldest entries beyond `max_len` (also after `slowlog-max-len` shrinks).
    pub fn trim(&mut self, max_len: usize) {
        self.entries.truncate(max_len);
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Newest first.
    pub fn iter(&self) -> impl Iterator<Item = &SlowEntry> {
        self.entries.iter()
    }
}

/// Redis's trimming: at most 32 arguments (the last says how many more there were), each
/// at most 128 bytes (with how many more bytes there were).
fn trimmed_args(args: &[Bytes]) -> Vec<Bytes> {
    let kept = if args.len() > SLOWLOG_ARGS_MAX {
        SLOWLOG_ARGS_MAX - 1
    } else {
        args.len()
    };
    let mut out: Vec<Bytes> = args[..kept]
        .iter()
        .map(|a| {
            if a.len() > SLOWLOG_ARG_BYTES_MAX {
                let mut v = a[..SLOWLOG_ARG_BYTES_MAX].to_vec();
                v.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - SLOWLOG_ARG_BYTES_MAX).as_bytes(),
                );
                Bytes::from(v)
            } else {
                a.clone()
            }
        })
        .collect();
    if kept < args.len() {
        out.push(Bytes::from(format!(
            "... ({} more arguments)",
            args.len() - kept
        )));
    }
    out
}

/// One latency sample: the second it was taken and the worst latency of that second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub unix_secs: u64,
    pub latency_ms: u64,
}

/// An event's history: the last samples, oldest first, and the worst ever seen.
#[derive(Debug, Default)]
pub struct Series {
    pub samples: VecDeque<Sample>,
    pub max_ms: u64,
}

/// The latency monitor: events by name ("command", "fast-command", "expire-cycle", ...).
#[derive(Debug, Default)]
pub struct LatencyMonitor {
    events: Vec<(&'static str, Series)>,
}

impl LatencyMonitor {
    /// Adds a sample; several in one second keep the worst.
    pub fn add(&mut self, event: &'static str, unix_secs: u64, latency_ms: u64) {
        let series = match self.events.iter().position(|(e, _)| *e == event) {
            Some(i) => &mut self.events[i].1,
            None => {
                self.events.push((event, Series::default()));
                &mut self.events.last_mut().expect("just pushed").1
            }
        };
        series.max_ms = series.max_ms.max(latency_ms);
        match series.samples.back_mut() {
            Some(last) if last.unix_secs == unix_secs => {
                last.latency_ms = last.latency_ms.max(latency_ms);
            }
            _ => {
                if series.samples.len() == LATENCY_HISTORY_LEN {
                    series.samples.pop_front();
                }
                series.samples.push_back(Sample {
                    unix_secs,
                    latency_ms,
                });
            }
        }
    }

    pub fn get(&self, event: &[u8]) -> Option<(&'static str, &Series)> {
        self.events
            .iter()
            .find(|(e, _)| e.as_bytes() == event)
            .map(|(e, s)| (*e, s))
    }

    pub fn events(&self) -> impl Iterator<Item = (&'static str, &Series)> {
        self.events.iter().map(|(e, s)| (*e, s))
    }

    /// Forgets one event (`Some`) or all; answers how many were forgotten.
    pub fn reset(&mut self, event: Option<&[u8]>) -> usize {
        let before = self.events.len();
        match event {
            Some(name) => self.events.retain(|(e, _)| e.as_bytes() != name),
            None => self.events.clear(),
        }
        before - self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Durations in power-of-two buckets of microseconds (a coarse stand-in for Redis's HDR
/// histogram: LATENCY HISTOGRAM prints the same shape, bucket bound then cumulative count).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    buckets: [u64; HISTOGRAM_BUCKETS],
    total: u64,
}

impl Histogram {
    pub fn record(&mut self, duration_us: u64) {
        let k = if duration_us <= 1 {
            0
        } else {
            (64 - (duration_us - 1).leading_zeros()) as usize
        };
        self.buckets[k.min(HISTOGRAM_BUCKETS - 1)] += 1;
        self.total += 1;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// `(bucket bound in µs, calls at or under it)` for each bucket that adds calls.
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut sum = 0;
        let mut out = Vec::new();
        for (k, n) in self.buckets.iter().enumerate() {
            if *n > 0 {
                sum += n;
                out.push((1u64 << k, sum));
            }
        }
        out
    }

    /// The bucket bound under which `percentile` percent of the calls fall.
    pub fn percentile_us(&self, percentile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let wanted = ((percentile / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut sum = 0;
        for (k, n) in self.buckets.iter().enumerate() {
            sum += n;
            if sum >= wanted {
                return 1u64 << k;
            }
        }
        1u64 << (HISTOGRAM_BUCKETS - 1)
    }
}

/// One command's counters (INFO commandstats, LATENCY HISTOGRAM).
#[derive(Debug, Clone, Default)]
pub struct CommandStat {
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
    pub histogram: Histogram,
}

/// Per-command counters, by `command` or `command|subcommand` name.
#[derive(Debug, Default)]
pub struct CommandStats {
    /// Commands counted under their own name, at their place in the command table: one
    /// index per call, no hashing (this runs after every command). Boxed, so a node that
    /// ran few commands holds a pointer per command.
    by_command: Vec<Option<Box<CommandStat>>>,
    /// `command|subcommand` names, built from what clients sent (at most `STAT_NAMES_MAX`).
    by_subcommand: HashMap<Box<str>, CommandStat, foldhash::fast::RandomState>,
}

/// Whether the command's first argument names a subcommand, counted as
/// `command|subcommand`.
fn is_container(name: &str) -> bool {
    matches!(
        name,
        "acl"
            | "client"
            | "command"
            | "config"
            | "function"
            | "latency"
            | "memory"
            | "object"
            | "pubsub"
            | "script"
            | "slowlog"
            | "xgroup"
            | "xinfo"
            | "cluster"
            | "module"
    )
}

impl CommandStats {
    /// The counters of the command `args` ran as, created on first use.
    pub fn entry(&mut self, spec: &'static keyspace::Spec, args: &[Bytes]) -> &mut CommandStat {
        let mut buf = [0u8; FULL_NAME_BYTES_MAX];
        self.entry_named(spec, subcommand_name(spec.name, args, &mut buf))
    }

    /// [`Self::entry`] for a command whose `command|subcommand` name is known already.
    pub fn entry_named(
        &mut self,
        spec: &'static keyspace::Spec,
        subcommand: Option<&str>,
    ) -> &mut CommandStat {
        if self.by_command.is_empty() {
            self.by_command
                .resize_with(keyspace::commands().len(), || None);
        }
        if let Some(full) = subcommand {
            if self.by_subcommand.contains_key(full) {
                return self.by_subcommand.get_mut(full).expect("looked up above");
            }
            if self.by_subcommand.len() < STAT_NAMES_MAX {
                return self.by_subcommand.entry(full.into()).or_default();
            }
        }
        self.by_command[spec.index()].get_or_insert_default()
    }

    pub fn get(&self, name: &str) -> Option<&CommandStat> {
        keyspace::lookup(name.as_bytes())
            .and_then(|spec| self.by_command.get(spec.index())?.as_deref())
            .or_else(|| self.by_subcommand.get(name))
    }

    /// Every command with counters, sorted by name.
    pub fn sorted(&self) -> Vec<(&str, &CommandStat)> {
        let mut v: Vec<(&str, &CommandStat)> = self
            .by_command
            .iter()
            .zip(keyspace::commands())
            .filter_map(|(s, spec)| Some((spec.name, s.as_deref()?)))
            .chain(self.by_subcommand.iter().map(|(k, s)| (&**k, s)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    pub fn reset(&mut self) {
        self.by_command.clear();
        self.by_subcommand.clear();
    }
}

/// `command|subcommand` in `buf` for a container command with a plausible subcommand name.
pub fn subcommand_name<'b>(
    name: &str,
    args: &[Bytes],
    buf: &'b mut [u8; FULL_NAME_BYTES_MAX],
) -> Option<&'b str> {
    if !is_container(name) {
        return None;
    }
    let sub = args.get(1)?;
    if sub.is_empty()
        || sub.len() > SUBCOMMAND_NAME_BYTES_MAX
        || !sub.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return None;
    }
    let len = name.len() + 1 + sub.len();
    buf[..name.len()].copy_from_slice(name.as_bytes());
    buf[name.len()] = b'|';
    buf[name.len() + 1..len].copy_from_slice(sub);
    buf[name.len() + 1..len].make_ascii_lowercase();
    std::str::from_utf8(&buf[..len]).ok()
}

/// Error replies counted by their first word (`ERR`, `WRONGTYPE`, ...).
#[derive(Debug, Default)]
pub struct ErrorStats {
    by_prefix: Vec<(Box<str>, u64)>,
    pub total_error_replies: u64,
}

impl ErrorStats {
    /// Counts an error reply given its text (without the leading `-`).
    pub fn record(&mut self, text: &[u8]) {
        self.total_error_replies += 1;
        let end = text
            .iter()
            .position(|b| *b == b' ' || *b == b'\r')
            .unwrap_or(text.len());
        let prefix = &text[..end];
        if let Some((_, n)) = self
            .by_prefix
            .iter_mut()
            .find(|(p, _)| p.as_bytes() == prefix)
        {
            *n += 1;
        } else if self.by_prefix.len() < ERROR_KINDS_MAX {
            self.by_prefix
                .push((String::from_utf8_lossy(prefix).into(), 1));
        }
    }

    /// Prefixes with their counts, sorted by prefix.
    pub fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.by_prefix.iter().map(|(p, n)| (&**p, *n)).collect();
        v.sort();
        v
    }

    pub fn reset(&mut self) {
        *self = ErrorStats::default();
    }
}

/// Settings read on every command, kept parsed (CONFIG SET refreshes them).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Microseconds; negative disables the slow log.
    pub slowlog_slower_than_us: i64,
    pub slowlog_max_len: usize,
    /// Milliseconds; 0 disables the latency monitor.
    pub latency_threshold_ms: u64,
    pub latency_tracking: bool,
}

impl Settings {
    pub fn from_config(standard: &crate::config::Standard) -> Settings {
        Settings {
            slowlog_slower_than_us: standard.int("slowlog-log-slower-than"),
            slowlog_max_len: usize::try_from(standard.int("slowlog-max-len")).unwrap_or(0),
            latency_threshold_ms: u64::try_from(standard.int("latency-monitor-threshold"))
                .unwrap_or(0),
            latency_tracking: standard.get("latency-tracking").as_deref() != Some("no"),
        }
    }
}

/// Everything above, as the node keeps it.
#[derive(Debug)]
pub struct Introspection {
    pub slowlog: SlowLog,
    pub latency: LatencyMonitor,
    pub commands: CommandStats,
    pub errors: ErrorStats,
    pub settings: Settings,
    /// When the command about to run started, in `monotonic_us` microseconds (the previous
    /// one's end, or the batch's start): one clock read per command measures it.
    pub clock_us: u64,
}

impl Introspection {
    pub fn new(standard: &crate::config::Standard) -> Introspection {
        Introspection {
            slowlog: SlowLog::default(),
            latency: LatencyMonitor::default(),
            commands: CommandStats::default(),
            errors: ErrorStats::default(),
            settings: Settings::from_config(standard),
            clock_us: 0,
        }
    }

    /// Adds a latency sample when the monitor is on and `latency_ms` reaches its threshold.
    pub fn latency_sample(&mut self, event: &'static str, unix_secs: u64, latency_ms: u64) {
        let threshold = self.settings.latency_threshold_ms;
        if threshold > 0 && latency_ms >= threshold {
            self.latency.add(event, unix_secs, latency_ms);
        }
    }

    /// Whether a command that took `duration_us` belongs in the slow log.
    pub fn is_slow(&self, duration_us: u64) -> bool {
        let t = self.settings.slowlog_slower_than_us;
        t >= 0 && duration_us >= t as u64
    }
}

/// The arguments a log shows for a command that carries secrets (AUTH, HELLO's AUTH,
/// CONFIG SET of a password, ACL SETUSER, MIGRATE's AUTH), `None` when nothing is hidden.
pub fn redacted(name: &str, args: &[Bytes]) -> Option<Vec<Bytes>> {
    const HIDDEN: &[u8] = b"(redacted)";
    let hide_from = |from: usize| -> Vec<Bytes> {
        args.iter()
            .enumerate()
            .map(|(i, a)| {
                if i >= from {
                    Bytes::from_static(HIDDEN)
                } else {
                    a.clone()
                }
            })
            .collect()
    };
    let eq = |i: usize, s: &str| {
        args.get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(s.as_bytes()))
    };
    match name {
        "auth" => Some(hide_from(1)),
        "acl" if eq(1, "setuser") => Some(hide_from(2)),
        "config" if eq(1, "set") => {
            let mut v = args.to_vec();
            let mut i = 2;
            let mut any = false;
            while i + 1 < v.len() {
                let p = &v[i];
                if p.eq_ignore_ascii_case(b"masterauth")
                    || p.eq_ignore_ascii_case(b"masteruser")
                    || p.eq_ignore_ascii_case(b"requirepass")
                    || p.eq_ignore_ascii_case(b"tls-key-file-pass")
                    || p.eq_ignore_ascii_case(b"tls-client-key-file-pass")
                {
                    v[i + 1] = Bytes::from_static(HIDDEN);
                    any = true;
                }
                i += 2;
            }
            any.then_some(v)
        }
        "hello" | "migrate" => {
            let mut v = args.to_vec();
            let mut any = false;
            let mut i = 1;
            while i < v.len() {
                let n = if v[i].eq_ignore_ascii_case(b"auth") {
                    if name == "hello" { 2 } else { 1 }
                } else if v[i].eq_ignore_ascii_case(b"auth2") {
                    2
                } else {
                    0
                };
                for slot in v.iter_mut().skip(i + 1).take(n) {
                    *slot = Bytes::from_static(HIDDEN);
                    any = true;
                }
                i += 1 + n;
            }
            any.then_some(v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn slowlog_keeps_the_newest_up_to_its_length() {
        let mut log = SlowLog::default();
        for i in 0..100 {
            log.push(10, i, i, &[b("ping")], "127.0.0.1:1", &Bytes::new());
        }
        assert_eq!(log.len(), 10);
        let ids: Vec<u64> = log.iter().map(|e| e.id).collect();
        assert_eq!(ids, (90..100).rev().collect::<Vec<_>>());
        log.trim(1);
        assert_eq!(log.iter().next().unwrap().id, 99);
        log.reset();
        assert!(log.is_empty());
    }

    #[test]
    fn slowlog_trims_arguments_like_redis() {
        let mut args = vec![b("sadd"), b("set")];
        args.extend((3..=33).map(|i| b(&i.to_string())));
        let t = trimmed_args(&args);
        assert_eq!(t.len(), 32);
        assert_eq!(t[31], b("... (2 more arguments)"));
        assert_eq!(t[30], b("31"));
        let long = "A".repeat(129);
        let t = trimmed_args(&[b("sadd"), b("set"), b(&long)]);
        assert_eq!(t[2], b(&format!("{}... (1 more bytes)", "A".repeat(128))));
    }

    #[test]
    fn latency_keeps_the_worst_of_a_second_and_a_bounded_history() {
        let mut m = LatencyMonitor::default();
        m.add("command", 10, 5);
        m.add("command", 10, 9);
        m.add("command", 10, 3);
        let (_, s) = m.get(b"command").unwrap();
        assert_eq!(s.samples.len(), 1);
        assert_eq!(s.samples[0].latency_ms, 9);
        for t in 11..400 {
            m.add("command", t, 1);
        }
        let (_, s) = m.get(b"command").unwrap();
        assert_eq!(s.samples.len(), LATENCY_HISTORY_LEN);
        assert_eq!(s.max_ms, 9);
        assert_eq!(m.reset(Some(b"nope")), 0);
        assert_eq!(m.reset(None), 1);
        assert!(m.is_empty());
    }

    #[test]
    fn histogram_is_cumulative_by_power_of_two() {
        let mut h = Histogram::default();
        for d in [0, 1, 2, 3, 1000] {
            h.record(d);
        }
        assert_eq!(h.cumulative(), vec![(1, 2), (2, 3), (4, 4), (1024, 5)]);
        assert_eq!(h.percentile_us(50.0), 2);
        assert_eq!(h.percentile_us(100.0), 1024);
    }

    #[test]
    fn stats_name_subcommands_of_containers_only() {
        let mut s = CommandStats::default();
        let spec = |name: &str| keyspace::lookup(name.as_bytes()).expect("a command");
        s.entry(spec("client"), &[b("client"), b("ID")]).calls += 1;
        s.entry(spec("get"), &[b("get"), b("k")]).calls += 1;
        s.entry(spec("client"), &[b("client"), b("bad name")]).calls += 1;
        let names: Vec<&str> = s.sorted().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["client", "client|id", "get"]);
    }

    #[test]
    fn errors_count_by_first_word_within_a_bound() {
        let mut e = ErrorStats::default();
        e.record(b"ERR wrong");
        e.record(b"ERR other");
        e.record(b"WRONGTYPE Operation");
        for i in 0..500 {
            e.record(format!("X{i} y").as_bytes());
        }
        assert_eq!(e.sorted().len(), ERROR_KINDS_MAX);
        assert_eq!(e.total_error_replies, 503);
        assert_eq!(e.sorted()[0], ("ERR", 2));
    }

    #[test]
    fn secrets_are_redacted() {
        let r = redacted("config", &[b("config"), b("set"), b("masterauth"), b("x")]).unwrap();
        assert_eq!(r[3], b("(redacted)"));
        assert!(redacted("config", &[b("config"), b("set"), b("hz"), b("1")]).is_none());
        let r = redacted(
            "migrate",
            &[
                b("migrate"),
                b("h"),
                b("p"),
                b("key"),
                b("9"),
                b("5000"),
                b("AUTH2"),
                b("u"),
                b("p"),
            ],
        )
        .unwrap();
        assert_eq!(r[7], b("(redacted)"));
        assert_eq!(r[8], b("(redacted)"));
        assert_eq!(
            redacted("auth", &[b("auth"), b("pw")]).unwrap()[1],
            b("(redacted)")
        );
    }
}
