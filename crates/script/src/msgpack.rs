//! The `cmsgpack` library as Redis embeds it (lua_cmsgpack 0.4's API and encodings):
//! `pack(...)`, `unpack(s)`, `unpack_one(s, offset)`, `unpack_limit(s, limit, offset)`.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

/// Tables nested deeper than this are packed as nil (lua_cmsgpack's
/// LUACMSGPACK_MAX_NESTING), which also ends self-references.
const PACK_NESTING_MAX: usize = 16;
/// Containers nested deeper than this in an input are refused: decoding recurses.
const UNPACK_NESTING_MAX: usize = 200;

pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.is_empty() {
                return Err(mlua::Error::runtime("MessagePack pack needs input."));
            }
            let mut out = Vec::new();
            for v in args.iter() {
                pack(v, 0, &mut out)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, s: mlua::LuaString| unpack_full(lua, &s.as_bytes(), 0, 0))?,
    )?;
    t.raw_set(
        "unpack_one",
        lua.create_function(|lua, (s, offset): (mlua::LuaString, Option<i64>)| {
            unpack_full(lua, &s.as_bytes(), 1, offset.unwrap_or(0))
        })?,
    )?;
    t.raw_set(
        "unpack_limit",
        lua.create_function(
            |lua, (s, limit, offset): (mlua::LuaString, i64, Option<i64>)| {
                unpack_full(lua, &s.as_bytes(), limit, offset.unwrap_or(0))
            },
        )?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    Ok(t)
}

fn pack_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        match n {
            0..=127 => out.push(n as u8),
            128..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                out.push(0xcf);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn pack_number(n: f64, out: &mut Vec<u8>) {
    // lua_cmsgpack: integral values that fit an int64 are integers; other numbers are
    // float32 when exact in it, float64 otherwise.
    // (An infinite or NaN n fails the range or fract test.)
    if n.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) {
        pack_int(n as i64, out);
    } else if (n as f32) as f64 == n || n.is_nan() {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn pack_len(len: usize, fix: u8, fix_max: usize, tags: [u8; 2], out: &mut Vec<u8>) {
    if len <= fix_max {
        out.push(fix | len as u8);
    } else if len <= 0xffff {
        out.push(tags[0]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(tags[1]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// `Some(n)` when the table's keys are exactly 1..=n (lua_cmsgpack's array test).
fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
    let (mut max, mut count) = (0usize, 0usize);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let i = match k {
            Value::Integer(i) if i > 0 => i as usize,
            Value::Number(n) if n > 0.0 && n.fract() == 0.0 => n as usize,
            _ => return Ok(None),
        };
        max = max.max(i);
        count += 1;
    }
    Ok((max == count).then_some(max))
}

fn pack(v: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => pack_int(*i, out),
        Value::Number(n) => pack_number(*n, out),
        Value::String(s) => {
            let s = s.as_bytes();
            if s.len() < 32 {
                out.push(0xa0 | s.len() as u8);
            } else if s.len() <= 0xff {
                out.extend_from_slice(&[0xd9, s.len() as u8]);
            } else {
                pack_len(s.len(), 0, 0, [0xda, 0xdb], out);
            }
            out.extend_from_slice(&s);
        }
        Value::Table(t) if level < PACK_NESTING_MAX => match array_len(t)? {
            Some(len) => {
                pack_len(len, 0x90, 15, [0xdc, 0xdd], out);
                for i in 1..=len {
                    pack(&t.raw_get::<Value>(i)?, level + 1, out)?;
                }
            }
            None => {
                pack_len(crate::convert::count_pairs(t), 0x80, 15, [0xde, 0xdf], out);
                t.for_each::<Value, Value>(|k, v| {
                    pack(&k, level + 1, out)?;
                    pack(&v, level + 1, out)
                })?;
            }
        },
        _ => out.push(0xc0),
    }
    Ok(())
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad() -> mlua::Error {
    mlua::Error::runtime("Bad data format in input.")
}

fn missing() -> mlua::Error {
    mlua::Error::runtime("Missing bytes in input.")
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> mlua::Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(missing)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> mlua::Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    fn value(&mut self, lua: &Lua, depth: usize) -> mlua::Result<Value> {
        if depth > UNPACK_NESTING_MAX {
            return Err(bad());
        }
        let tag = self.take(1)?[0];
        let string = |c: &mut Self, n: usize| -> mlua::Result<Value> {
            let s = c.take(n)?;
            Ok(Value::String(lua.create_string(s)?))
        };
        Ok(match tag {
            0x00..=0x7f => Value::Number(tag as f64),
            0x80..=0x8f => self.map(lua, (tag & 0x0f) as usize, depth)?,
            0x90..=0x9f => self.array(lua, (tag & 0x0f) as usize, depth)?,
            0xa0..=0xbf => string(self, (tag & 0x1f) as usize)?,
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xc4 | 0xd9 => {
                let n = self.be(1)? as usize;
                string(self, n)?
            }
            0xc5 | 0xda => {
                let n = self.be(2)? as usize;
                string(self, n)?
            }
            0xc6 | 0xdb => {
                let n = self.be(4)? as usize;
                string(self, n)?
            }
            0xca => Value::Number(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => Value::Number(f64::from_bits(self.be(8)?)),
            0xcc => Value::Number(self.be(1)? as f64),
            0xcd => Value::Number(self.be(2)? as f64),
            0xce => Value::Number(self.be(4)? as f64),
            0xcf => Value::Number(self.be(8)? as f64),
            0xd0 => Value::Number(self.be(1)? as u8 as i8 as f64),
            0xd1 => Value::Number(self.be(2)? as u16 as i16 as f64),
            0xd2 => Value::Number(self.be(4)? as u32 as i32 as f64),
            0xd3 => Value::Number(self.be(8)? as i64 as f64),
            0xdc => {
                let n = self.be(2)? as usize;
                self.array(lua, n, depth)?
            }
            0xdd => {
                let n = self.be(4)? as usize;
                self.array(lua, n, depth)?
            }
            0xde => {
                let n = self.be(2)? as usize;
                self.map(lua, n, depth)?
            }
            0xdf => {
                let n = self.be(4)? as usize;
                self.map(lua, n, depth)?
            }
            0xe0..=0xff => Value::Number(tag as i8 as f64),
            _ => return Err(bad()),
        })
    }

    fn array(&mut self, lua: &Lua, n: usize, depth: usize) -> mlua::Result<Value> {
        // Every element takes at least a byte: the input bounds the allocation.
        let t = lua.create_table_with_capacity(n.min(self.buf.len() - self.pos), 0)?;
        for i in 1..=n {
            t.raw_set(i, self.value(lua, depth + 1)?)?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, lua: &Lua, n: usize, depth: usize) -> mlua::Result<Value> {
        let t = lua.create_table_with_capacity(0, n.min(self.buf.len() - self.pos))?;
        for _ in 0..n {
            let k = self.value(lua, depth + 1)?;
            let v = self.value(lua, depth + 1)?;
            if k != Value::Nil {
                t.raw_set(k, v)?;
            }
        }
        Ok(Value::Table(t))
    }
}

/// lua_cmsgpack's mp_unpack_full: up to `limit` objects (0: all) from `offset`; with a
/// limit, the offset of what follows (-1 at the end) comes first.
fn unpack_full(lua: &Lua, buf: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    if offset < 0 || limit < 0 {
        return Err(mlua::Error::runtime(format!(
            "Invalid request to unpack with offset of {offset} and limit of {limit}."
        )));
    }
    if offset as usize > buf.len() {
        return Err(mlua::Error::runtime(format!(
            "Start offset {offset} greater than input length {}.",
            buf.len()
        )));
    }
    let mut c = Cursor {
        buf,
        pos: offset as usize,
    };
    let mut values = Vec::new();
    while c.pos < buf.len() && (limit == 0 || (values.len() as i64) < limit) {
        values.push(c.value(lua, 0)?);
    }
    if limit > 0 {
        let next = if c.pos >= buf.len() { -1 } else { c.pos as i64 };
        values.insert(0, Value::Number(next as f64));
    }
    Ok(MultiValue::from_iter(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(lua: &Lua, code: &str) -> String {
        let s: mlua::LuaString = lua.load(code).eval().unwrap();
        s.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn encodings_match_lua_cmsgpack() {
        let lua = Lua::new();
        lua.globals()
            .set("cmsgpack", library(&lua).unwrap())
            .unwrap();
        assert_eq!(hex(&lua, "return cmsgpack.pack(0.1)"), "cb3fb999999999999a");
        assert_eq!(
            hex(&lua, "return cmsgpack.pack(-1099511627776)"),
            "d3ffffff0000000000"
        );
        assert_eq!(hex(&lua, "return cmsgpack.pack(1.5)"), "ca3fc00000");
        assert_eq!(
            hex(&lua, "return cmsgpack.pack({1,2}, 'ab', true)"),
            "920102a26162c3"
        );
        let ok: bool = lua
            .load(
                "local t = {s = string.rep('x', 300), n = -100000, a = {1, {2}}}
                 local r = cmsgpack.unpack(cmsgpack.pack(t))
                 local off, one = cmsgpack.unpack_one(cmsgpack.pack(1, 2), 0)
                 return r.s == t.s and r.n == t.n and r.a[2][1] == 2 and off == 1 and one == 1",
            )
            .eval()
            .unwrap();
        assert!(ok);
    }

    #[test]
    fn bad_input_is_an_error() {
        let lua = Lua::new();
        assert!(unpack_full(&lua, b"\xdd\xff\xff\xff\xff", 0, 0).is_err());
        assert!(unpack_full(&lua, &[0x91; 5000], 0, 0).is_err());
        let mut nested = vec![0x91; 150];
        nested.push(0xc0);
        assert!(unpack_full(&lua, &nested, 0, 0).is_ok());
        assert!(unpack_full(&lua, b"\xc1", 0, 0).is_err());
    }
}
