//! Client-side caching (CLIENT TRACKING): which clients may hold which keys in a local
//! cache, and the invalidation messages they get when one changes.
//!
//! Default mode remembers, per key, the clients that read it; a write to the key sends each
//! of them one invalidation and forgets the key until it is read again (Redis's design: the
//! table holds only what some client may still have cached). BCAST mode remembers nothing
//! per key: writes to keys under a subscribed prefix are collected and sent once per batch
//! of commands, one message per prefix. Messages are RESP3 pushes (`invalidate`), or, for a
//! RESP2 client redirecting to a subscriber, messages on `__redis__:invalidate`.
//!
//! Messages go through the target's outbox, so a client invalidated by its own command gets
//! the message after that command's reply, as Redis 7.0 orders them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use keyspace::{CmdError, Spec, flags};
use resp::{Protocol, ReplyBuf};

use crate::scripting::SCRIPT_CLIENT_ID;
use crate::state::State;

/// The pub/sub channel RESP2 clients receive redirected invalidations on.
const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";
/// Keys evicted from a full tracking table per command at first; each command that finds
/// the table still too full tries that much more (Redis's growing effort).
const EVICTION_EFFORT_KEYS: usize = 100;

/// A client's tracking options (present while tracking is on).
#[derive(Debug, Clone, Default)]
pub struct Mode {
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// CLIENT CACHING yes (OPTIN) or no (OPTOUT) was given for the next command.
    pub caching: bool,
    /// The client that receives this one's invalidations (0: itself).
    pub redirect: u64,
    /// The redirect target went away.
    pub broken_redirect: bool,
    pub prefixes: BTreeSet<Bytes>,
}

/// A BCAST prefix: its clients and the keys written under it since the last broadcast,
/// each with the client that wrote it last (for NOLOOP).
#[derive(Default)]
struct Prefix {
    clients: BTreeSet<u64>,
    pending: BTreeMap<Bytes, u64>,
}

/// The node's tracking tables.
#[derive(Default)]
pub struct Tracking {
    /// Default mode: key -> clients that may have it cached.
    keys: HashMap<Bytes, HashSet<u64>>,
    /// Client ids across all keys (INFO tracking_total_items).
    items: u64,
    prefixes: BTreeMap<Bytes, Prefix>,
    /// Clients with tracking on.
    pub clients: usize,
    /// Commands in a row that found the table over `tracking-table-max-keys`.
    eviction_rounds: usize,
    /// A command run by the running script read something (its declared keys get tracked).
    script_read: bool,
}

impl Tracking {
    pub fn total_keys(&self) -> usize {
        self.keys.len()
    }

    pub fn total_items(&self) -> u64 {
        self.items
    }

    pub fn total_prefixes(&self) -> usize {
        self.prefixes.len()
    }
}

/// What an invalidation says: these keys, or everything (a flush).
enum Payload<'a> {
    Keys(&'a [Bytes]),
    All,
}

/// CLIENT TRACKING on|off [REDIRECT id] [BCAST] [PREFIX p]... [OPTIN] [OPTOUT] [NOLOOP].
pub fn tracking_command(st: &mut State, id: u64, a: &[Bytes]) -> Result<(), CmdError> {
    let err = |m: &str| CmdError::other(format!("ERR {m}"));
    let mut mode = Mode::default();
    let mut prefixes: Vec<Bytes> = Vec::new();
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        let opt = &a[j];
        if opt.eq_ignore_ascii_case(b"redirect") && more {
            j += 1;
            if mode.redirect != 0 {
                return Err(err("A client can only redirect to a single other client"));
            }
            let target = resp::parse_i64(&a[j]).ok_or(CmdError::NotInteger)?;
            if target <= 0 || !st.clients.contains_key(&(target as u64)) {
                return Err(err("The client ID you want redirect to does not exist"));
            }
            mode.redirect = target as u64;
        } else if opt.eq_ignore_ascii_case(b"bcast") {
            mode.bcast = true;
        } else if opt.eq_ignore_ascii_case(b"optin") {
            mode.optin = true;
        } else if opt.eq_ignore_ascii_case(b"optout") {
            mode.optout = true;
        } else if opt.eq_ignore_ascii_case(b"noloop") {
            mode.noloop = true;
        } else if opt.eq_ignore_ascii_case(b"prefix") && more {
            j += 1;
            prefixes.push(a[j].clone());
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if a[2].eq_ignore_ascii_case(b"off") {
        disable(st, id);
        return Ok(());
    }
    if !a[2].eq_ignore_ascii_case(b"on") {
        return Err(CmdError::Syntax);
    }
    if !mode.bcast && !prefixes.is_empty() {
        return Err(err("PREFIX option requires BCAST mode to be enabled"));
    }
    let current = st.clients.get(&id).and_then(|c| c.tracking.as_ref());
    if current.is_some_and(|cur| cur.bcast != mode.bcast) {
        return Err(err(
            "You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.",
        ));
    }
    if mode.bcast && (mode.optin || mode.optout) {
        return Err(err("OPTIN and OPTOUT are not compatible with BCAST"));
    }
    if mode.optin && mode.optout {
        return Err(err("You can't specify both OPTIN mode and OPTOUT mode"));
    }
    if let Some(cur) = current
        && ((mode.optin && cur.optout) || (mode.optout && cur.optin))
    {
        return Err(err(
            "You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.",
        ));
    }
    if mode.bcast {
        check_prefix_collisions(current.map(|c| &c.prefixes), &prefixes)?;
        if prefixes.is_empty() {
            prefixes.push(Bytes::new());
        }
    }
    enable(st, id, mode, prefixes);
    Ok(())
}

/// Redis refuses prefixes of one client where one is a prefix of another.
fn check_prefix_collisions(
    existing: Option<&BTreeSet<Bytes>>,
    given: &[Bytes],
) -> Result<(), CmdError> {
    let overlap = |a: &[u8], b: &[u8]| {
        let n = a.len().min(b.len());
        a[..n] == b[..n]
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for (i, p) in given.iter().enumerate() {
        if let Some(old) = existing.into_iter().flatten().find(|old| overlap(old, p)) {
            return Err(CmdError::other(format!(
                "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                text(p),
                text(old)
            )));
        }
        if let Some(other) = given[i + 1..].iter().find(|q| overlap(p, q)) {
            return Err(CmdError::other(format!(
                "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                text(p),
                text(other)
            )));
        }
    }
    Ok(())
}

fn enable(st: &mut State, id: u64, mode: Mode, prefixes: Vec<Bytes>) {
    let Some(c) = st.clients.get_mut(&id) else {
        return;
    };
    let previous = c.tracking.take();
    if previous.is_none() {
        st.tracking.clients += 1;
    }
    // Re-enabling keeps the prefixes already subscribed (CLIENT TRACKING on BCAST PREFIX
    // adds to them) and the caching choice is dropped, as Redis clears its flags.
    let mut next = Mode {
        prefixes: previous.map(|p| p.prefixes).unwrap_or_default(),
        ..mode
    };
    for p in prefixes {
        st.tracking
            .prefixes
            .entry(p.clone())
            .or_default()
            .clients
            .insert(id);
        next.prefixes.insert(p);
    }
    c.tracking = Some(next);
    st.ks.track_writes = true;
}

/// Turns tracking off for a client (CLIENT TRACKING off, RESET, disconnect). Its ids left
/// in the key table are dropped lazily, when those keys are invalidated.
pub fn disable(st: &mut State, id: u64) {
    let Some(mode) = st.clients.get_mut(&id).and_then(|c| c.tracking.take()) else {
        return;
    };
    st.tracking.clients -= 1;
    for p in &mode.prefixes {
        if let Some(prefix) = st.tracking.prefixes.get_mut(p) {
            prefix.clients.remove(&id);
            if prefix.clients.is_empty() {
                st.tracking.prefixes.remove(p);
            }
        }
    }
    st.ks.track_writes = st.tracking.clients > 0;
    if !st.ks.track_writes {
        st.ks.take_written();
    }
}

/// CLIENT CACHING yes|no.
pub fn caching_command(st: &mut State, id: u64, a: &[Bytes]) -> Result<(), CmdError> {
    let Some(mode) = st.clients.get_mut(&id).and_then(|c| c.tracking.as_mut()) else {
        return Err(CmdError::other(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        ));
    };
    if a[2].eq_ignore_ascii_case(b"yes") {
        if !mode.optin {
            return Err(CmdError::other(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ));
        }
    } else if a[2].eq_ignore_ascii_case(b"no") {
        if !mode.optout {
            return Err(CmdError::other(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ));
        }
    } else {
        return Err(CmdError::Syntax);
    }
    mode.caching = true;
    Ok(())
}

/// CLIENT TRACKINGINFO.
pub fn info_reply(st: &State, id: u64, out: &mut ReplyBuf) {
    let mode = st.clients.get(&id).and_then(|c| c.tracking.as_ref());
    let mut flags = vec![if mode.is_some() { "on" } else { "off" }];
    if let Some(m) = mode {
        let pairs = [
            (m.bcast, "bcast"),
            (m.optin, "optin"),
            (m.optin && m.caching, "caching-yes"),
            (m.optout, "optout"),
            (m.optout && m.caching, "caching-no"),
            (m.noloop, "noloop"),
            (m.broken_redirect, "broken_redirect"),
        ];
        flags.extend(pairs.iter().filter(|(on, _)| *on).map(|(_, f)| *f));
    }
    out.map(3);
    out.bulk(b"flags");
    out.set(flags.len());
    flags.iter().for_each(|f| out.bulk(f.as_bytes()));
    out.bulk(b"redirect");
    out.int(redirect_of(st, id));
    out.bulk(b"prefixes");
    let prefixes: Vec<&Bytes> = mode
        .map(|m| m.prefixes.iter().collect())
        .unwrap_or_default();
    out.array(prefixes.len());
    prefixes.iter().for_each(|p| out.bulk(p));
}

/// CLIENT GETREDIR: the redirect target, 0 without one, -1 when tracking is off.
pub fn redirect_of(st: &State, id: u64) -> i64 {
    match st.clients.get(&id).and_then(|c| c.tracking.as_ref()) {
        Some(m) => m.redirect as i64,
        None => -1,
    }
}

/// After a command of client `id` (the script client for commands a script runs): sends
/// the invalidations its writes caused and remembers the keys it read. `in_exec`: inside
/// EXEC or a script, where CLIENT CACHING's choice still holds.
pub fn after_command(st: &mut State, id: u64, spec: &Spec, args: &[Bytes], in_exec: bool) {
    // A script's commands act for the client that ran the script.
    let current = if id == SCRIPT_CLIENT_ID {
        st.scripting.caller
    } else {
        id
    };
    if st.ks.has_written() {
        let (written, flushed) = st.ks.take_written();
        if flushed {
            invalidate_all(st);
        }
        for key in written {
            invalidate_key(st, key.as_bytes(), current, true);
        }
    }
    let ro_script = matches!(spec.name, "eval_ro" | "evalsha_ro" | "fcall_ro");
    if id == SCRIPT_CLIENT_ID {
        st.tracking.script_read |= spec.is(flags::READONLY);
    } else if spec.is(flags::READONLY) && !ro_script {
        remember(st, id, spec, args);
    }
    let script = crate::scripting::runs_script(spec.name);
    if script && id != SCRIPT_CLIENT_ID && std::mem::take(&mut st.tracking.script_read) {
        remember(st, id, spec, args);
    }
    let caching_itself = spec.name == "client" && args[1].eq_ignore_ascii_case(b"caching");
    // CLIENT CACHING's choice holds for the next command (all of a transaction's).
    if !in_exec
        && !caching_itself
        && let Some(c) = st.clients.get_mut(&id)
        && c.multi.is_none()
        && let Some(m) = c.tracking.as_mut()
    {
        m.caching = false;
    }
    limit_table(st);
}

/// Keys evicted to make room for client `id`'s command: their trackers hear of it now, and
/// `id` itself (tracking in RESP3 without redirect) in `out`, ahead of the command's reply,
/// as Redis orders it.
pub fn after_eviction(st: &mut State, id: u64, out: &mut ReplyBuf) {
    let (written, flushed) = st.ks.take_written();
    if flushed {
        invalidate_all(st);
    }
    let inline = st.clients.get(&id).is_some_and(|c| {
        c.protocol == Protocol::Resp3
            && c.tracking
                .as_ref()
                .is_some_and(|m| m.redirect == 0 && !m.bcast)
    });
    for key in written {
        if inline
            && let Some(ids) = st.tracking.keys.get_mut(key.as_bytes())
            && ids.remove(&id)
        {
            st.tracking.items -= 1;
            out.push(2);
            out.bulk(b"invalidate");
            out.array(1);
            out.bulk(key.as_bytes());
        }
        invalidate_key(st, key.as_bytes(), 0, true);
    }
    limit_table(st);
}

/// After the cron's active expiry: invalidations for the expired keys, and the broadcasts.
pub fn after_expiry(st: &mut State) {
    let (written, flushed) = st.ks.take_written();
    if flushed {
        invalidate_all(st);
    }
    for key in written {
        invalidate_key(st, key.as_bytes(), 0, true);
    }
    limit_table(st);
    broadcast(st);
}

/// Adds client `id` to the key table entries of the keys `args` names, as its mode allows.
fn remember(st: &mut State, id: u64, spec: &Spec, args: &[Bytes]) {
    let Some(m) = st.clients.get(&id).and_then(|c| c.tracking.as_ref()) else {
        return;
    };
    if m.bcast || (m.optin && !m.caching) || (m.optout && m.caching) {
        return;
    }
    for p in spec.keys(args) {
        let ids = st.tracking.keys.entry(args[p].clone()).or_default();
        if ids.insert(id) {
            st.tracking.items += 1;
        }
    }
}

/// A key changed (written by client `current`, 0 for none): its trackers hear of it once
/// and the key leaves the table; BCAST prefixes over it collect it when `bcast`.
fn invalidate_key(st: &mut State, key: &[u8], current: u64, bcast: bool) {
    if bcast {
        for (p, prefix) in st.tracking.prefixes.iter_mut() {
            if key.starts_with(p) {
                prefix.pending.insert(Bytes::copy_from_slice(key), current);
            }
        }
    }
    let Some(ids) = st.tracking.keys.remove(key) else {
        return;
    };
    st.tracking.items -= ids.len() as u64;
    let key = [Bytes::copy_from_slice(key)];
    for id in ids {
        let Some(m) = st.clients.get(&id).and_then(|c| c.tracking.as_ref()) else {
            continue;
        };
        // Keys read before switching to BCAST are not announced.
        if m.bcast || (m.noloop && id == current) {
            continue;
        }
        send(st, id, Payload::Keys(&key));
    }
}

/// A database was emptied: every tracking client hears "everything", and the key table is
/// dropped.
fn invalidate_all(st: &mut State) {
    let ids: Vec<u64> = st
        .clients
        .iter()
        .filter(|(_, c)| c.tracking.is_some())
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        send(st, id, Payload::All);
    }
    st.tracking.keys.clear();
    st.tracking.items = 0;
}

/// Sends the BCAST invalidations collected since the last call: per prefix, one message
/// with its keys to each of its clients (without the keys a NOLOOP client wrote itself).
pub fn broadcast(st: &mut State) {
    if st.tracking.prefixes.values().all(|p| p.pending.is_empty()) {
        return;
    }
    let prefixes = std::mem::take(&mut st.tracking.prefixes);
    let mut sends: Vec<(u64, Vec<Bytes>)> = Vec::new();
    for prefix in prefixes.values() {
        if prefix.pending.is_empty() {
            continue;
        }
        for &id in &prefix.clients {
            let noloop = st
                .clients
                .get(&id)
                .and_then(|c| c.tracking.as_ref())
                .is_some_and(|m| m.noloop);
            let keys: Vec<Bytes> = prefix
                .pending
                .iter()
                .filter(|(_, writer)| !noloop || **writer != id)
                .map(|(k, _)| k.clone())
                .collect();
            if !keys.is_empty() {
                sends.push((id, keys));
            }
        }
    }
    st.tracking.prefixes = prefixes;
    st.tracking
        .prefixes
        .values_mut()
        .for_each(|p| p.pending.clear());
    for (id, keys) in sends {
        send(st, id, Payload::Keys(&keys));
    }
}

/// Keeps the key table within `tracking-table-max-keys` by invalidating keys early.
fn limit_table(st: &mut State) {
    let max = usize::try_from(st.config.standard.int("tracking-table-max-keys")).unwrap_or(0);
    if max == 0 || st.tracking.keys.len() <= max {
        st.tracking.eviction_rounds = 0;
        return;
    }
    let effort = EVICTION_EFFORT_KEYS * (st.tracking.eviction_rounds + 1);
    for _ in 0..effort {
        let Some(key) = st.tracking.keys.keys().next().cloned() else {
            break;
        };
        invalidate_key(st, &key, 0, false);
        if st.tracking.keys.len() <= max {
            st.tracking.eviction_rounds = 0;
            return;
        }
    }
    st.tracking.eviction_rounds += 1;
}

/// Delivers one invalidation for client `id`: to it (RESP3), or to its redirect target
/// (RESP3 push, or a `__redis__:invalidate` message to a RESP2 subscriber).
fn send(st: &mut State, id: u64, payload: Payload) {
    let Some(redirect) = st
        .clients
        .get(&id)
        .and_then(|c| c.tracking.as_ref())
        .map(|m| m.redirect)
    else {
        return;
    };
    let target = if redirect == 0 {
        id
    } else if st.clients.contains_key(&redirect) {
        redirect
    } else {
        let Some(c) = st.clients.get_mut(&id) else {
            return;
        };
        if let Some(m) = c.tracking.as_mut() {
            m.broken_redirect = true;
        }
        if c.protocol == Protocol::Resp3 {
            let mut out = ReplyBuf::new(Protocol::Resp3);
            out.push(2);
            out.bulk(b"tracking-redir-broken");
            out.int(redirect as i64);
            if c.deliver(out.take(), &st.config.output_buffer_limits)
                == crate::state::Delivery::Overflowed
            {
                st.stats.client_output_buffer_limit_disconnections += 1;
            }
        }
        return;
    };
    let Some(t) = st.clients.get(&target) else {
        return;
    };
    let mut out = ReplyBuf::new(t.protocol);
    if t.protocol == Protocol::Resp3 {
        out.push(2);
        out.bulk(b"invalidate");
    } else if target != id && t.subscriptions() > 0 {
        out.push(3);
        out.bulk(b"message");
        out.bulk(INVALIDATE_CHANNEL);
    } else {
        // RESP2 has no pushes on the same connection.
        return;
    }
    match payload {
        Payload::Keys(keys) => {
            out.array(keys.len());
            keys.iter().for_each(|k| out.bulk(k));
        }
        Payload::All => out.null(),
    }
    if t.deliver(out.take(), &st.config.output_buffer_limits) == crate::state::Delivery::Overflowed
    {
        st.stats.client_output_buffer_limit_disconnections += 1;
    }
}
