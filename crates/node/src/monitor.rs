//! MONITOR: every command the node runs, as one line per command to the clients that asked,
//! in Redis's format (`+<secs>.<micros> [<db> <addr>] "cmd" "arg" ...`).

use bytes::Bytes;

use crate::scripting::SCRIPT_CLIENT_ID;
use crate::state::{Delivery, State};

/// Sends the line of `args`, run by client `id` in `db`, to every monitor.
pub fn feed(st: &mut State, id: u64, db: usize, name: &str, args: &[Bytes]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let who = if id == SCRIPT_CLIENT_ID {
        "lua".to_string()
    } else {
        st.clients
            .get(&id)
            .map(|c| c.addr.clone())
            .unwrap_or_default()
    };
    let redacted = crate::introspect::redacted(name, args);
    let args = redacted.as_deref().unwrap_or(args);
    let mut line = format!(
        "+{}.{:06} [{db} {who}] ",
        now.as_secs(),
        now.subsec_micros()
    )
    .into_bytes();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        repr(&mut line, a);
    }
    line.extend_from_slice(b"\r\n");
    st.monitors.retain(|m| st.clients.contains_key(m));
    let mut overflowed = 0;
    for m in &st.monitors {
        if let Some(c) = st.clients.get(m)
            && c.deliver(line.clone(), &st.config.output_buffer_limits) == Delivery::Overflowed
        {
            overflowed += 1;
        }
    }
    st.stats.client_output_buffer_limit_disconnections += overflowed;
}

/// Appends `bytes` quoted and escaped as Redis's `sdscatrepr` does.
fn repr(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            b if b.is_ascii_graphic() || b == b' ' => out.push(b),
            b => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_are_quoted_as_redis_does() {
        let mut out = Vec::new();
        super::repr(&mut out, b"a \"b\"\\\n\x01\xff");
        assert_eq!(out, b"\"a \\\"b\\\"\\\\\\n\\x01\\xff\"");
    }
}
