//! Redis's conversions between replies and Lua values, both ways.
//!
//! A reply becomes a Lua value for `redis.call` (integers numbers, bulk strings strings,
//! nulls `false` in RESP2 and `nil` in RESP3, status `{ok=}`, errors `{err=}`, RESP3 types
//! as tagged tables); a script's return value becomes a reply for its caller (numbers are
//! truncated to integers, `false` is null, tables are arrays up to their first nil unless
//! tagged `err`, `ok`, `double`, `big_number`, `verbatim_string`, `map` or `set`).

use mlua::{Lua, Table, Value};
use resp::{Frame, ReplyBuf};

use crate::REPLY_DEPTH_MAX;

/// `{err = "CODE message"}` from either "-CODE message" or a bare "message" (code ERR), as
/// luaPushErrorBuff builds it.
pub(crate) fn error_table(lua: &Lua, text: &[u8]) -> mlua::Result<Table> {
    let (code, msg): (&[u8], &[u8]) = match text.strip_prefix(b"-") {
        Some(rest) => match rest.iter().position(|&b| b == b' ') {
            Some(sp) => (&rest[..sp], &rest[sp + 1..]),
            None => (b"ERR", rest),
        },
        None => (b"ERR", text),
    };
    let trim = |b: &u8| *b != b'\r' && *b != b'\n';
    let start = msg.iter().position(trim).unwrap_or(msg.len());
    let end = msg.iter().rposition(trim).map_or(start, |e| e + 1);
    let mut full = Vec::with_capacity(code.len() + 1 + end - start);
    full.extend_from_slice(code);
    full.push(b' ');
    full.extend_from_slice(&msg[start..end]);
    let t = lua.create_table()?;
    t.raw_set("err", lua.create_string(&full)?)?;
    Ok(t)
}

fn tagged(lua: &Lua, tag: &str, value: Value) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set(tag, value)?;
    Ok(Value::Table(t))
}

/// A command's reply as the Lua value a script receives.
pub(crate) fn frame_to_lua(lua: &Lua, frame: Frame, resp3: bool) -> mlua::Result<Value> {
    Ok(match frame {
        Frame::Integer(i) => Value::Number(i as f64),
        Frame::Bulk(b) => Value::String(lua.create_string(&b)?),
        Frame::Null if resp3 => Value::Nil,
        Frame::Null => Value::Boolean(false),
        Frame::Simple(s) => tagged(lua, "ok", Value::String(lua.create_string(&s)?))?,
        Frame::Error(e) => {
            let mut text = Vec::with_capacity(e.len() + 1);
            text.push(b'-');
            text.extend_from_slice(e.as_bytes());
            let t = error_table(lua, &text)?;
            t.raw_set("ignore_error_stats_update", true)?;
            Value::Table(t)
        }
        Frame::Array(items) | Frame::Push(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                t.raw_set(i + 1, frame_to_lua(lua, item, resp3)?)?;
            }
            Value::Table(t)
        }
        Frame::Map(pairs) => {
            let t = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, v) in pairs {
                t.raw_set(frame_to_lua(lua, k, resp3)?, frame_to_lua(lua, v, resp3)?)?;
            }
            tagged(lua, "map", Value::Table(t))?
        }
        Frame::Set(items) => {
            let t = lua.create_table_with_capacity(0, items.len())?;
            for item in items {
                t.raw_set(frame_to_lua(lua, item, resp3)?, true)?;
            }
            tagged(lua, "set", Value::Table(t))?
        }
        Frame::Double(d) => tagged(lua, "double", Value::Number(d))?,
        Frame::Boolean(b) => Value::Boolean(b),
        Frame::BigNumber(n) => tagged(lua, "big_number", Value::String(lua.create_string(&n)?))?,
        Frame::Verbatim { format, text } => {
            let t = lua.create_table()?;
            t.raw_set("string", lua.create_string(&text)?)?;
            t.raw_set("format", lua.create_string(&format)?)?;
            tagged(lua, "verbatim_string", Value::Table(t))?
        }
    })
}

fn raw_string(t: &Table, key: &str) -> Option<mlua::LuaString> {
    match t.raw_get::<Value>(key) {
        Ok(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Writes a script's return value as the reply. `resp3`: the script chose RESP3
/// (redis.setresp), which decides how booleans are written.
pub(crate) fn write_reply(out: &mut ReplyBuf, v: &Value, resp3: bool, depth: usize) {
    match v {
        Value::String(s) => out.bulk(&s.as_bytes()),
        Value::Boolean(b) => {
            if resp3 {
                out.boolean(*b);
            } else if *b {
                out.int(1);
            } else {
                out.null();
            }
        }
        Value::Integer(i) => out.int(*i),
        // C's (long long) cast: truncation toward zero.
        Value::Number(n) => out.int(*n as i64),
        Value::Table(t) => write_table(out, t, resp3, depth),
        _ => out.null(),
    }
}

fn write_table(out: &mut ReplyBuf, t: &Table, resp3: bool, depth: usize) {
    if depth >= REPLY_DEPTH_MAX {
        out.error("ERR reached lua stack limit");
        return;
    }
    if let Some(e) = raw_string(t, "err") {
        out.error(&e.to_string_lossy());
        return;
    }
    if let Some(s) = raw_string(t, "ok") {
        out.simple(&s.to_string_lossy().replace(['\r', '\n'], " "));
        return;
    }
    match t.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => return out.double(d),
        Ok(Value::Integer(i)) => return out.double(i as f64),
        _ => {}
    }
    if let Some(n) = raw_string(t, "big_number") {
        out.big_number(&n.to_string_lossy().replace(['\r', '\n'], " "));
        return;
    }
    if let Ok(Value::Table(v)) = t.raw_get::<Value>("verbatim_string")
        && let (Some(format), Some(text)) = (raw_string(&v, "format"), raw_string(&v, "string"))
    {
        out.verbatim_as(&format.as_bytes(), &text.as_bytes());
        return;
    }
    if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
        out.map(count_pairs(&m));
        let _ = m.for_each::<Value, Value>(|k, v| {
            write_reply(out, &k, resp3, depth + 1);
            write_reply(out, &v, resp3, depth + 1);
            Ok(())
        });
        return;
    }
    if let Ok(Value::Table(s)) = t.raw_get::<Value>("set") {
        out.set(count_pairs(&s));
        let _ = s.for_each::<Value, Value>(|k, _| {
            write_reply(out, &k, resp3, depth + 1);
            Ok(())
        });
        return;
    }
    // Counted first, then written: holding every element at once would exhaust the slots
    // mlua keeps references in.
    let mut len = 0;
    while !matches!(t.raw_get::<Value>(len + 1), Ok(Value::Nil) | Err(_)) {
        len += 1;
    }
    out.array(len);
    for i in 1..=len {
        let item = t.raw_get::<Value>(i).unwrap_or(Value::Nil);
        write_reply(out, &item, resp3, depth + 1);
    }
}

pub(crate) fn count_pairs(t: &Table) -> usize {
    let mut n = 0;
    let _ = t.for_each::<Value, Value>(|_, _| {
        n += 1;
        Ok(())
    });
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use resp::Protocol;

    fn reply(lua: &Lua, code: &str, resp3: bool, protocol: Protocol) -> Vec<u8> {
        let v: Value = lua.load(code).eval().unwrap();
        let mut out = ReplyBuf::new(protocol);
        write_reply(&mut out, &v, resp3, 0);
        out.take()
    }

    #[test]
    fn lua_values_become_redis_replies() {
        let lua = Lua::new();
        let r2 = Protocol::Resp2;
        assert_eq!(reply(&lua, "return 100.5", false, r2), b":100\r\n");
        assert_eq!(reply(&lua, "return -3.9", false, r2), b":-3\r\n");
        assert_eq!(reply(&lua, "return true", false, r2), b":1\r\n");
        assert_eq!(reply(&lua, "return false", false, r2), b"$-1\r\n");
        assert_eq!(
            reply(&lua, "return {ok='fi\\nne'}", false, r2),
            b"+fi ne\r\n"
        );
        assert_eq!(
            reply(&lua, "return {err='ERR x'}", false, r2),
            b"-ERR x\r\n"
        );
        assert_eq!(
            reply(&lua, "return {1,'a',{2},nil,5}", false, r2),
            b"*3\r\n:1\r\n$1\r\na\r\n*1\r\n:2\r\n"
        );
        let r3 = Protocol::Resp3;
        assert_eq!(reply(&lua, "return false", true, r3), b"#f\r\n");
        assert_eq!(reply(&lua, "return {double=1.5}", true, r3), b",1.5\r\n");
        assert_eq!(
            reply(&lua, "return {map={a=1}}", true, r3),
            b"%1\r\n$1\r\na\r\n:1\r\n"
        );
        assert_eq!(
            reply(&lua, "return {map={a=1}}", true, r2),
            b"*2\r\n$1\r\na\r\n:1\r\n"
        );
        assert_eq!(
            reply(&lua, "return {set={a=true}}", true, r3),
            b"~1\r\n$1\r\na\r\n"
        );
    }

    #[test]
    fn a_self_referencing_table_is_cut_with_an_error() {
        let lua = Lua::new();
        let out = reply(
            &lua,
            "local a = {}; local b = {a}; a[1] = b; return a",
            false,
            Protocol::Resp2,
        );
        assert!(out.ends_with(b"-ERR reached lua stack limit\r\n"));
        assert_eq!(out.iter().filter(|&&b| b == b'*').count(), REPLY_DEPTH_MAX);
    }

    #[test]
    fn replies_become_lua_values() {
        let lua = Lua::new();
        let v = frame_to_lua(&lua, Frame::Null, false).unwrap();
        assert!(matches!(v, Value::Boolean(false)));
        assert!(matches!(
            frame_to_lua(&lua, Frame::Null, true).unwrap(),
            Value::Nil
        ));
        let Value::Table(t) =
            frame_to_lua(&lua, Frame::Error("WRONGTYPE Operation".into()), false).unwrap()
        else {
            panic!("an error becomes a table");
        };
        assert_eq!(t.raw_get::<String>("err").unwrap(), "WRONGTYPE Operation");
        let t = error_table(&lua, b"-NOCODE").unwrap();
        assert_eq!(t.raw_get::<String>("err").unwrap(), "ERR NOCODE");
        let t = error_table(&lua, b"plain message\r\n").unwrap();
        assert_eq!(t.raw_get::<String>("err").unwrap(), "ERR plain message");
    }
}
