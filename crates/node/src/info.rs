//! The INFO report, with redis-server's section and field names.

use std::fmt::Write;

use bytes::Bytes;

use crate::state::State;

/// Bytes allocated by the whole process, as jemalloc counts them (INFO's
/// `allocator_allocated`; a node's `used_memory` is its own count, see `memory.rs`).
pub fn used_memory_bytes() -> u64 {
    use tikv_jemalloc_ctl::{epoch, stats};
    // Statistics are cached until the epoch advances.
    let _ = epoch::advance();
    stats::allocated::read().map(|n| n as u64).unwrap_or(0)
}

/// Resident bytes held by the allocator (`used_memory_rss` stand-in).
pub fn resident_memory_bytes() -> u64 {
    tikv_jemalloc_ctl::stats::resident::read()
        .map(|n| n as u64)
        .unwrap_or(0)
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2}G", b / 1024.0 / 1024.0 / 1024.0)
    }
}

/// Every section in report order, and the sets Redis prints for `default` and `all`
/// (`everything` is all of them).
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "commandstats",
    "errorstats",
    "latencystats",
    "keyspace",
    "storage",
];
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "errorstats",
    "keyspace",
];
/// `all` is every section but cacheplane's own (`storage`), which `everything` adds.
const NOT_IN_ALL: &[&str] = &["storage"];

/// Renders the sections asked for (`default`/`all`/`everything` or names, any case; none =
/// default), each once, in report order.
pub fn render(st: &State, args: &[Bytes]) -> String {
    let wanted: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let asked = |name: &str| wanted.iter().any(|w| w == name);
    let everything = asked("everything");
    let all = everything || asked("all");
    let default = wanted.is_empty() || asked("default");
    let mut out = String::new();
    for section in SECTIONS {
        let included = asked(section)
            || everything
            || (all && !NOT_IN_ALL.contains(section))
            || (default && DEFAULT_SECTIONS.contains(section));
        if !included {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        section_text(st, section, &mut out);
    }
    out
}

fn section_text(st: &State, section: &str, o: &mut String) {
    let now_ms = st.ks.now_ms();
    let uptime = now_ms.saturating_sub(st.started_unix_ms) / 1000;
    match section {
        "server" => {
            let _ = write!(
                o,
                "# Server\r\nredis_version:{}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfigured_hz:{}\r\nexecutable:{}\r\nconfig_file:\r\nio_threads_active:0\r\ncacheplane_version:{}\r\n",
                crate::REDIS_VERSION,
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::process::id(),
                crate::run_id(),
                st.config.port,
                crate::unix_time_us(),
                uptime,
                uptime / 86400,
                st.config.hz,
                st.config.hz,
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                env!("CARGO_PKG_VERSION"),
            );
        }
        "clients" => {
            let pubsub = st
                .clients
                .values()
                .filter(|c| c.subscriptions() > 0)
                .count();
            let _ = write!(
                o,
                "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nclient_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:{}\r\ntracking_clients:{}\r\nclients_in_timeout_table:{}\r\npubsub_clients:{}\r\n",
                st.clients.len(),
                st.config.maxclients,
                st.blocked_clients(),
                st.tracking.clients,
                st.blocked_clients(),
                pubsub,
            );
        }
        "memory" => {
            let used = st.used_memory();
            let dataset = st.ks.dataset_bytes() as u64;
            let allocated = used_memory_bytes();
            let rss = resident_memory_bytes();
            let max = st.maxmemory();
            let _ = write!(
                o,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{}\r\nused_memory_peak_human:{}\r\nused_memory_overhead:{}\r\nused_memory_startup:0\r\nused_memory_dataset:{dataset}\r\nallocator_allocated:{allocated}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_not_counted_for_evict:0\r\nmem_clients_normal:{}\r\nmem_allocator:jemalloc-5.3.0\r\nlazyfree_pending_objects:0\r\nlazyfreed_objects:{}\r\n",
                human(used),
                human(rss),
                st.memory.peak_bytes.max(used),
                human(st.memory.peak_bytes.max(used)),
                used - dataset,
                human(max),
                st.ks.eviction.policy.name(),
                if used > 0 {
                    rss as f64 / used as f64
                } else {
                    0.0
                },
                st.memory.clients.total(),
                st.ks.stats.lazyfreed_objects,
            );
            let eval_lua = st.scripting.eval_ref().map_or(0, |e| e.used_memory());
            let (scripts, script_bytes) = st.scripting.eval_ref().map_or((0, 0), |e| e.scripts());
            let functions_lua = st
                .scripting
                .functions_ref()
                .map_or(0, |f| f.engine().used_memory());
            let _ = write!(
                o,
                "used_memory_lua:{eval_lua}\r\nused_memory_vm_eval:{eval_lua}\r\nused_memory_lua_human:{}\r\nused_memory_scripts_eval:{script_bytes}\r\nnumber_of_cached_scripts:{scripts}\r\nnumber_of_functions:{}\r\nnumber_of_libraries:{}\r\nused_memory_vm_functions:{functions_lua}\r\nused_memory_vm_total:{}\r\n",
                human(eval_lua as u64),
                st.scripting
                    .functions_ref()
                    .map_or(0, |f| f.function_count()),
                st.scripting
                    .functions_ref()
                    .map_or(0, |f| f.libraries().count()),
                eval_lua + functions_lua,
            );
        }
        "persistence" => {
            let _ = write!(
                o,
                "# Persistence\r\nloading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\ncurrent_fork_perc:0.00\r\ncurrent_save_keys_processed:{}\r\ncurrent_save_keys_total:{}\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_current_bgsave_time_sec:{}\r\nrdb_saves:{}\r\nrdb_last_cow_size:0\r\nrdb_last_load_keys_expired:{}\r\nrdb_last_load_keys_loaded:{}\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:{}\r\naof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:{}\r\naof_last_bgrewrite_status:{}\r\naof_last_write_status:{}\r\n",
                st.ks.snapshot_entries(),
                if st.rdb.job.is_some() {
                    st.ks.dbs_len_total()
                } else {
                    0
                },
                st.ks.dirty - st.rdb.dirty_at_last_save,
                st.rdb.bgsave_in_progress() as u8,
                st.rdb.last_save_unix,
                if st.rdb.last_bgsave_ok { "ok" } else { "err" },
                st.rdb.last_bgsave_secs.map_or(-1, |s| s as i64),
                st.rdb
                    .job
                    .as_ref()
                    .filter(|_| st.rdb.bgsave_in_progress())
                    .map_or(-1, |b| b.started.elapsed().as_secs() as i64),
                st.rdb.saves,
                st.rdb.last_load_keys_expired,
                st.rdb.last_load_keys_loaded,
                st.aof.is_some() as u8,
                st.rdb.aof_rewrite_in_progress() as u8,
                st.rdb.aof_rewrite_scheduled as u8,
                st.aof
                    .as_ref()
                    .and_then(|a| a.last_rewrite_secs)
                    .map_or(-1, |s| s as i64),
                st.aof
                    .as_ref()
                    .and_then(|a| a.rewrite.as_ref())
                    .map_or(-1, |r| r.started.elapsed().as_secs() as i64),
                if st.aof.as_ref().is_none_or(|a| a.last_rewrite_ok) {
                    "ok"
                } else {
                    "err"
                },
                if st.aof.as_ref().is_none_or(|a| a.last_write_ok) {
                    "ok"
                } else {
                    "err"
                },
            );
            if let Some(a) = &st.aof {
                let _ = write!(
                    o,
                    "aof_current_size:{}\r\naof_base_size:{}\r\naof_pending_rewrite:0\r\naof_buffer_length:{}\r\naof_pending_bio_fsync:0\r\naof_delayed_fsync:0\r\n",
                    a.base_bytes + a.incr_bytes,
                    a.base_bytes,
                    crate::aof::pending_bytes(a),
                );
            }
        }
        "stats" => {
            let s = &st.stats;
            let k = &st.ks.stats;
            let _ = write!(
                o,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:0\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nevicted_clients:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\ntotal_forks:0\r\ntotal_error_replies:{}\r\ntracking_total_keys:{}\r\ntracking_total_items:{}\r\ntracking_total_prefixes:{}\r\nclient_query_buffer_limit_disconnections:{}\r\nclient_output_buffer_limit_disconnections:{}\r\n",
                s.total_connections_received,
                s.total_commands_processed,
                s.total_net_input_bytes,
                s.total_net_output_bytes,
                s.rejected_connections,
                k.expired_keys,
                k.evicted_keys,
                s.evicted_clients,
                k.keyspace_hits,
                k.keyspace_misses,
                st.channels.len(),
                st.patterns.len(),
                st.intro.errors.total_error_replies,
                st.tracking.total_keys(),
                st.tracking.total_items(),
                st.tracking.total_prefixes(),
                s.client_query_buffer_limit_disconnections,
                s.client_output_buffer_limit_disconnections,
            );
        }
        "commandstats" => {
            o.push_str("# Commandstats\r\n");
            for (name, c) in st.intro.commands.sorted() {
                if c.calls == 0 && c.rejected_calls == 0 && c.failed_calls == 0 {
                    continue;
                }
                let per_call = if c.calls > 0 {
                    c.usec as f64 / c.calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    o,
                    "cmdstat_{name}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                    c.calls, c.usec, c.rejected_calls, c.failed_calls
                );
            }
        }
        "errorstats" => {
            o.push_str("# Errorstats\r\n");
            for (prefix, n) in st.intro.errors.sorted() {
                let _ = write!(o, "errorstat_{prefix}:count={n}\r\n");
            }
        }
        "latencystats" => {
            o.push_str("# Latencystats\r\n");
            if !st.intro.settings.latency_tracking {
                return;
            }
            let percentiles: Vec<f64> = st
                .config
                .standard
                .get("latency-tracking-info-percentiles")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            for (name, c) in st.intro.commands.sorted() {
                if c.histogram.total() == 0 {
                    continue;
                }
                let _ = write!(o, "latency_percentiles_usec_{name}:");
                for (i, p) in percentiles.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(o, "{sep}p{p}={:.3}", c.histogram.percentile_us(*p) as f64);
                }
                o.push_str("\r\n");
            }
        }
        "replication" => {
            o.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_repl_offset:0\r\n");
        }
        "cpu" => {
            let (user, sys) = crate::cpu_times();
            let _ = write!(
                o,
                "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n"
            );
        }
        "storage" => {
            // cacheplane's own section: the storage accounts.
            o.push_str("# Storage\r\n");
            let ship = &st.ship;
            let _ = write!(
                o,
                "restored_from:{}\r\n",
                ship.restored.as_deref().unwrap_or("")
            );
            match &ship.rdb {
                Some(r) => {
                    let r = r.status.lock().expect("backup status lock");
                    let _ = write!(
                        o,
                        "rdb_backup_enabled:1\r\nrdb_backups_ok:{}\r\nrdb_last_backup_status:{}\r\nrdb_last_backup_key:{}\r\n",
                        r.ok_total,
                        match r.last_ok {
                            None => "none",
                            Some(true) => "ok",
                            Some(false) => "err",
                        },
                        r.last_key.as_deref().unwrap_or(""),
                    );
                }
                None => o.push_str("rdb_backup_enabled:0\r\n"),
            }
            let appended = st.aof.as_ref().map_or(0, |a| a.appended);
            let _ = write!(o, "aof_shipping_targets:{}\r\n", ship.aof_targets.len());
            for (i, t) in ship.aof_targets.iter().enumerate() {
                let t = t.lock().expect("status lock");
                let _ = write!(
                    o,
                    "aof_target_{i}:account={},status={},backlog_bytes={},segments={},bases={}\r\n",
                    t.account,
                    if t.ok { "ok" } else { "err" },
                    appended.saturating_sub(t.shipped),
                    t.segments,
                    t.bases,
                );
            }
            let events = ship.events.lock().expect("event log lock");
            let _ = write!(o, "blob_events_total:{}\r\n", events.total);
        }
        "keyspace" => {
            o.push_str("# Keyspace\r\n");
            for db in 0..st.ks.db_count() {
                let d = st.ks.db(db);
                if !d.is_empty() {
                    let _ = write!(
                        o,
                        "db{db}:keys={},expires={},avg_ttl=0\r\n",
                        d.len(),
                        d.volatile_len()
                    );
                }
            }
        }
        _ => {}
    }
}
