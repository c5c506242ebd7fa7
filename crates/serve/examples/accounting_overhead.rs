//! What the soft-delete accounting costs per object-store event, next to what the event
//! stands for: an upload. Feeds a ledger the event stream of an AOF pipeline (a segment
//! written per second, the manifest and checksum list overwritten each time, a rewrite
//! every 100 segments retiring the old ones) and times the uploads of one segment and one
//! manifest to a real store. Run by bench/accounting.sh.
//!
//! Usage: accounting_overhead CONNECTION_STRING [events]

use std::time::Instant;

use accounting::{Event, EventKind, Ledger, Policy, PolicySource, Prices};
use bytes::Bytes;

const SEGMENT_BYTES: usize = 4 * 1024 * 1024;
const MANIFEST_BYTES: usize = 2 * 1024;
const UPLOADS: usize = 20;

fn events(n: usize) -> Vec<(String, u64, EventKind)> {
    let mut out = Vec::with_capacity(n);
    let mut seg = 0u64;
    let mut live: Vec<String> = Vec::new();
    while out.len() < n {
        seg += 1;
        let name = format!("caches/c/aof/appendonly.aof.{seg}.incr.aof");
        out.push((name.clone(), SEGMENT_BYTES as u64, EventKind::Write));
        live.push(name);
        for key in [
            "caches/c/aof/appendonly.aof.manifest",
            "caches/c/aof/appendonly.aof.checksums",
        ] {
            out.push((key.to_string(), MANIFEST_BYTES as u64, EventKind::Overwrite));
            out.push((key.to_string(), MANIFEST_BYTES as u64, EventKind::Write));
        }
        if seg.is_multiple_of(100) {
            for old in live.drain(..) {
                out.push((old, SEGMENT_BYTES as u64, EventKind::Delete));
            }
        }
    }
    out.truncate(n);
    out
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let conn = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: accounting_overhead CONNECTION_STRING [events]"))?;
    let n: usize = args.next().map_or(Ok(1_000_000), |s| s.parse())?;

    let stream = events(n);
    let mut ledger = Ledger::new(Prices::default());
    ledger.set_policy(
        "acct",
        Policy::SoftDelete { days: 7 },
        PolicySource::Reported,
    );
    let t = Instant::now();
    for (i, (key, bytes, kind)) in stream.iter().enumerate() {
        ledger.apply(&Event {
            account: "acct",
            key,
            bytes: *bytes,
            kind: *kind,
            // Three events per simulated second.
            at_ms: i as u64 * 333,
        });
    }
    let apply_ns = t.elapsed().as_nanos() as f64 / n as f64;
    let t = Instant::now();
    let report = ledger
        .report("acct", n as u64 * 333)
        .expect("the account is known");
    let report_us = t.elapsed().as_secs_f64() * 1e6;
    assert!(report.retained_bytes > 0);

    let runtime = tokio::runtime::Runtime::new()?;
    let account = blob::Account::parse(&conn)?;
    let store = blob::Store::open(&account, "bench/accounting", std::sync::Arc::new(|_| {}))?;
    let (segment_ms, manifest_ms) = runtime.block_on(async {
        let segment = Bytes::from(vec![7u8; SEGMENT_BYTES]);
        let manifest = Bytes::from(vec![b'm'; MANIFEST_BYTES]);
        let mut seg = Vec::new();
        let mut man = Vec::new();
        for i in 0..UPLOADS {
            let t = Instant::now();
            store
                .put_over(&format!("seg-{i}"), segment.clone(), 0)
                .await?;
            seg.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            store.put_over("manifest", manifest.clone(), 0).await?;
            man.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for i in 0..UPLOADS {
            store
                .delete(&format!("seg-{i}"), SEGMENT_BYTES as u64)
                .await?;
        }
        seg.sort_by(f64::total_cmp);
        man.sort_by(f64::total_cmp);
        anyhow::Ok((seg[UPLOADS / 2], man[UPLOADS / 2]))
    })?;
    println!("| per event | accounting | upload (median of {UPLOADS}) | accounting / upload |");
    println!("|---|---:|---:|---:|");
    println!(
        "| 4 MiB AOF segment | {apply_ns:.0} ns | {segment_ms:.2} ms | {:.1e} |",
        apply_ns / (segment_ms * 1e6)
    );
    println!(
        "| 2 KiB manifest overwrite | {apply_ns:.0} ns | {manifest_ms:.2} ms | {:.1e} |",
        apply_ns / (manifest_ms * 1e6)
    );
    println!();
    println!(
        "{n} events applied at {apply_ns:.0} ns each; a full report of the account took {report_us:.0} us"
    );
    Ok(())
}
