//! The `cjson` library as Redis embeds it (lua-cjson 2.1's API and defaults): JSON to Lua
//! and back, numbers with 14 significant digits, `cjson.null`, depth limits that scripts
//! can lower and raise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mlua::{Lua, Table, Value};

/// lua-cjson's default nesting limit for both directions (1000 there), and the most a
/// script may set: encoding and decoding recurse on the calling thread's stack, which a
/// thousand levels can exhaust.
const DEPTH_DEFAULT: usize = 200;
const DEPTH_MAX: usize = 200;
/// An array may have at most this many holes per element before it counts as sparse
/// (lua-cjson's encode_sparse_array ratio and safe size).
const SPARSE_RATIO: usize = 2;
const SPARSE_SAFE: usize = 10;

struct Settings {
    encode_depth_max: AtomicUsize,
    decode_depth_max: AtomicUsize,
    encode_invalid_numbers: AtomicBool,
    decode_invalid_numbers: AtomicBool,
}

pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let settings = Arc::new(Settings {
        encode_depth_max: AtomicUsize::new(DEPTH_DEFAULT),
        decode_depth_max: AtomicUsize::new(DEPTH_DEFAULT),
        encode_invalid_numbers: AtomicBool::new(false),
        decode_invalid_numbers: AtomicBool::new(true),
    });
    let t = lua.create_table()?;
    let s = settings.clone();
    t.raw_set(
        "encode",
        lua.create_function(move |lua, v: Value| {
            let mut out = Vec::new();
            encode(&v, &s, 1, &mut out).map_err(mlua::Error::runtime)?;
            lua.create_string(&out)
        })?,
    )?;
    let s = settings.clone();
    t.raw_set(
        "decode",
        lua.create_function(move |lua, text: mlua::LuaString| {
            let bytes = text.as_bytes();
            let mut p = Parser {
                lua,
                text: &bytes,
                pos: 0,
                depth_max: s.decode_depth_max.load(Ordering::Relaxed),
            };
            p.skip_ws();
            let v = p.value(1).map_err(mlua::Error::runtime)?;
            p.skip_ws();
            if p.pos != p.text.len() {
                return Err(mlua::Error::runtime(format!(
                    "Expected the end but found invalid token at character {}",
                    p.pos + 1
                )));
            }
            Ok(v)
        })?,
    )?;
    let depth_setter = |which: fn(&Settings) -> &AtomicUsize| {
        let s = settings.clone();
        move |_: &Lua, n: Option<i64>| {
            let slot = which(&s);
            if let Some(n) = n {
                if n < 1 {
                    return Err(mlua::Error::runtime(
                        "bad argument #1 (expected integer between 1 and 2147483647)",
                    ));
                }
                slot.store((n as usize).min(DEPTH_MAX), Ordering::Relaxed);
            }
            Ok(slot.load(Ordering::Relaxed))
        }
    };
    t.raw_set(
        "encode_max_depth",
        lua.create_function(depth_setter(|s| &s.encode_depth_max))?,
    )?;
    t.raw_set(
        "decode_max_depth",
        lua.create_function(depth_setter(|s| &s.decode_depth_max))?,
    )?;
    let flag_setter = |which: fn(&Settings) -> &AtomicBool| {
        let s = settings.clone();
        move |_: &Lua, v: Option<Value>| {
            let slot = which(&s);
            match v {
                Some(Value::Boolean(b)) => slot.store(b, Ordering::Relaxed),
                Some(Value::String(s))
                    if s.as_bytes().as_ref() == b"on" || s.as_bytes().as_ref() == b"null" =>
                {
                    slot.store(true, Ordering::Relaxed)
                }
                Some(Value::String(_)) => slot.store(false, Ordering::Relaxed),
                _ => {}
            }
            Ok(slot.load(Ordering::Relaxed))
        }
    };
    t.raw_set(
        "encode_invalid_numbers",
        lua.create_function(flag_setter(|s| &s.encode_invalid_numbers))?,
    )?;
    t.raw_set(
        "decode_invalid_numbers",
        lua.create_function(flag_setter(|s| &s.decode_invalid_numbers))?,
    )?;
    // Accepted for compatibility; buffers and sparse-array handling are fixed here.
    t.raw_set(
        "encode_keep_buffer",
        lua.create_function(|_, v: Option<bool>| Ok(v.unwrap_or(true)))?,
    )?;
    t.raw_set(
        "encode_sparse_array",
        lua.create_function(|_, _: mlua::MultiValue| Ok((false, SPARSE_RATIO, SPARSE_SAFE)))?,
    )?;
    t.raw_set(
        "encode_number_precision",
        lua.create_function(|_, _: Option<i64>| Ok(14))?,
    )?;
    t.raw_set("null", Value::NULL)?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

/// `%.14g`, as lua-cjson formats numbers.
pub(crate) fn format_g14(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if n == 0.0 {
        return if n.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let exp = n.abs().log10().floor() as i32;
    // Round to 14 significant digits first: the exponent may change (9.99...e5 -> 1e6).
    let sci = format!("{:.13e}", n);
    let (mantissa, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i32 = e.parse().unwrap_or(exp);
    if !(-4..14).contains(&e) {
        let m = trim_zeros(mantissa);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else {
        let decimals = (13 - e).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, n)).to_owned()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) | Value::Error(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..0x20 | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn encode_number(n: f64, s: &Settings, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() && !s.encode_invalid_numbers.load(Ordering::Relaxed) {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(format_g14(n).as_bytes());
    Ok(())
}

/// The array length lua-cjson sees: `Some(max)` when every key is a positive integer and the
/// array is not excessively sparse; `None` for an object.
fn array_length(t: &Table) -> Result<Option<usize>, String> {
    let (mut max, mut count) = (0usize, 0usize);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let index = match k {
            Value::Integer(i) if i >= 1 => i as usize,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n as usize,
            _ => return Ok(None),
        };
        max = max.max(index);
        count += 1;
    }
    if max > SPARSE_SAFE && max > count * SPARSE_RATIO {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok((max > 0).then_some(max))
}

fn encode(v: &Value, s: &Settings, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => encode_number(*i as f64, s, out)?,
        Value::Number(n) => encode_number(*n, s, out)?,
        Value::String(text) => encode_string(&text.as_bytes(), out),
        Value::Table(t) => {
            if depth > s.encode_depth_max.load(Ordering::Relaxed) {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            match array_length(t)? {
                Some(len) => {
                    out.push(b'[');
                    for i in 1..=len {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                        encode(&item, s, depth + 1, out)?;
                    }
                    out.push(b']');
                }
                None => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.clone().pairs::<Value, Value>() {
                        let (k, item) = pair.map_err(|e| e.to_string())?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::String(key) => encode_string(&key.as_bytes(), out),
                            Value::Integer(i) => {
                                encode_string(format_g14(*i as f64).as_bytes(), out)
                            }
                            Value::Number(n) => encode_string(format_g14(*n).as_bytes(), out),
                            other => {
                                return Err(format!(
                                    "Cannot serialise {}: table key must be a number or string",
                                    type_name(other)
                                ));
                            }
                        }
                        out.push(b':');
                        encode(&item, s, depth + 1, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                type_name(other)
            ));
        }
    }
    Ok(())
}

struct Parser<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    pos: usize,
    depth_max: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.text.len()
            && matches!(self.text[self.pos], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.pos += 1;
        }
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!(
            "Expected {what} but found invalid token at character {}",
            self.pos + 1
        ))
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        let lua_err = |e: mlua::Error| e.to_string();
        match self.text.get(self.pos) {
            Some(b'{') | Some(b'[') if depth > self.depth_max => Err(format!(
                "Found too many nested data structures ({depth}) at character {}",
                self.pos + 1
            )),
            Some(b'{') => {
                self.pos += 1;
                let t = self.lua.create_table().map_err(lua_err)?;
                self.skip_ws();
                if self.text.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                loop {
                    self.skip_ws();
                    if self.text.get(self.pos) != Some(&b'"') {
                        return self.fail("object key string");
                    }
                    let key = self.string()?;
                    self.skip_ws();
                    if self.text.get(self.pos) != Some(&b':') {
                        return self.fail("colon");
                    }
                    self.pos += 1;
                    self.skip_ws();
                    let v = self.value(depth + 1)?;
                    t.raw_set(self.lua.create_string(&key).map_err(lua_err)?, v)
                        .map_err(lua_err)?;
                    self.skip_ws();
                    match self.text.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Value::Table(t));
                        }
                        _ => return self.fail("comma or object end"),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let t = self.lua.create_table().map_err(lua_err)?;
                self.skip_ws();
                if self.text.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                let mut i = 1;
                loop {
                    self.skip_ws();
                    let v = self.value(depth + 1)?;
                    t.raw_set(i, v).map_err(lua_err)?;
                    i += 1;
                    self.skip_ws();
                    match self.text.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Table(t));
                        }
                        _ => return self.fail("comma or array end"),
                    }
                }
            }
            Some(b'"') => {
                let s = self.string()?;
                Ok(Value::String(self.lua.create_string(&s).map_err(lua_err)?))
            }
            Some(b't') if self.text[self.pos..].starts_with(b"true") => {
                self.pos += 4;
                Ok(Value::Boolean(true))
            }
            Some(b'f') if self.text[self.pos..].starts_with(b"false") => {
                self.pos += 5;
                Ok(Value::Boolean(false))
            }
            Some(b'n') if self.text[self.pos..].starts_with(b"null") => {
                self.pos += 4;
                Ok(Value::NULL)
            }
            Some(b'-' | b'0'..=b'9' | b'i' | b'I' | b'n' | b'N') => self.number(),
            _ => self.fail("value"),
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self.pos < self.text.len()
            && matches!(self.text[self.pos], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9' | b'x' | b'X' | b'a'..=b'd' | b'f' | b'A'..=b'D' | b'F' | b'i' | b'n' | b'I' | b'N')
        {
            self.pos += 1;
        }
        let token = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("");
        let lower = token.to_ascii_lowercase();
        let n = match lower.as_str() {
            "inf" | "infinity" => f64::INFINITY,
            "-inf" | "-infinity" => f64::NEG_INFINITY,
            "nan" | "-nan" => f64::NAN,
            _ => match token.parse::<f64>() {
                Ok(n) => n,
                Err(_) => {
                    self.pos = start;
                    return self.fail("value");
                }
            },
        };
        Ok(Value::Number(n))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or("Expected value but found invalid unicode escape code")?;
        let s = std::str::from_utf8(digits).map_err(|_| "invalid unicode escape code")?;
        let v = u32::from_str_radix(s, 16).map_err(|_| {
            format!(
                "Expected value but found invalid unicode escape code at character {}",
                self.pos + 1
            )
        })?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.text.get(self.pos) {
                None => return self.fail("string end"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = *self.text.get(self.pos).ok_or("unexpected end of string")?;
                    self.pos += 1;
                    match c {
                        b'"' | b'\\' | b'/' => out.push(c),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp)
                                && self.text[self.pos..].starts_with(b"\\u")
                            {
                                self.pos += 2;
                                let low = self.hex4()?;
                                cp = 0x10000
                                    + ((cp - 0xd800) << 10)
                                    + (low.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.fail("valid escape"),
                    }
                }
                Some(&b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        let lua = Lua::new();
        lua.globals().set("cjson", library(&lua).unwrap()).unwrap();
        lua
    }

    #[test]
    fn numbers_format_as_lua_cjson() {
        assert_eq!(format_g14(100.0), "100");
        assert_eq!(format_g14(0.1), "0.1");
        assert_eq!(format_g14(1e20), "1e+20");
        assert_eq!(format_g14(0.0003), "0.0003");
        assert_eq!(format_g14(1.0 / 3.0), "0.33333333333333");
        assert_eq!(format_g14(123456789012345.0), "1.2345678901234e+14");
    }

    #[test]
    fn round_trips_and_errors() {
        let lua = lua();
        let s: String = lua
            .load("return cjson.encode({1, 'a/b', {x = true}, cjson.null})")
            .eval()
            .unwrap();
        assert_eq!(s, r#"[1,"a\/b",{"x":true},null]"#);
        let s: String = lua
            .load(r#"return table.concat(cjson.decode("[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]"), " ")"#)
            .eval()
            .unwrap();
        assert_eq!(s, "0 -5000 -1 0.0003 1023.2 0");
        assert_eq!(
            lua.load("return cjson.encode({})")
                .eval::<String>()
                .unwrap(),
            "{}"
        );
        assert!(
            lua.load("return cjson.encode({[false] = 1})")
                .eval::<String>()
                .is_err()
        );
        assert!(
            lua.load("return cjson.encode({[1] = 1, [100] = 2})")
                .eval::<String>()
                .is_err()
        );
        assert!(
            lua.load("cjson.decode_max_depth(1) return cjson.decode('[[1]]')")
                .exec()
                .is_err()
        );
        assert!(lua.load("return cjson.decode('[1,')").exec().is_err());
        let v: String = lua
            .load(r#"return cjson.decode([["\u00e9\ud83d\ude00"]])"#)
            .eval()
            .unwrap();
        assert_eq!(v, "é😀");
        // The deepest document the limits allow decodes and encodes on a thread's stack.
        let lua = self::tests::lua();
        let deep = format!("{}{}", "[".repeat(DEPTH_MAX), "]".repeat(DEPTH_MAX));
        let v: Value = lua
            .load(format!("return cjson.decode('{deep}')"))
            .eval()
            .unwrap();
        let f: mlua::Function = lua
            .load("return function(v) return cjson.encode(v) end")
            .eval()
            .unwrap();
        assert_eq!(f.call::<String>(v).unwrap().len(), deep.len());
    }
}
