//! The `struct` library as Redis embeds it (Roberto Ierusalimschy's struct 0.2):
//! `struct.pack(fmt, ...)`, `struct.unpack(fmt, s [, pos])`, `struct.size(fmt)`.
//!
//! Formats: `>` `<` `=` byte order, `!n` alignment, `x` padding, `b B h H l L T i[n] I[n]`
//! integers, `f d` floats, `s` zero-terminated strings, `c[n]` fixed strings (`c0` in
//! unpack: length from the previous number).

use mlua::{Lua, MultiValue, Table, Value, Variadic};

/// Widest integer `i`/`I` may ask for (struct's MAXINTSIZE).
const INT_SIZE_MAX: usize = 32;
/// Largest count a format may give (`c`, `!`, `i`): struct's own bound on numbers read
/// from formats.
const FORMAT_NUMBER_MAX: usize = i32::MAX as usize;

fn err(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(msg.into())
}

struct Format<'a> {
    fmt: &'a [u8],
    pos: usize,
    little: bool,
    align: usize,
}

enum Item {
    Pad,
    Int { size: usize, signed: bool },
    Float,
    Double,
    ZString,
    Chars(usize),
}

impl Format<'_> {
    fn number(&mut self, default: usize) -> mlua::Result<usize> {
        let start = self.pos;
        while self.fmt.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        if start == self.pos {
            return Ok(default);
        }
        std::str::from_utf8(&self.fmt[start..self.pos])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n <= FORMAT_NUMBER_MAX)
            .ok_or_else(|| err("integral size out of limits"))
    }

    /// The next item, after applying any byte-order or alignment options before it.
    fn next(&mut self) -> mlua::Result<Option<(Item, usize)>> {
        loop {
            let Some(&c) = self.fmt.get(self.pos) else {
                return Ok(None);
            };
            self.pos += 1;
            let item = match c {
                b' ' => continue,
                b'>' => {
                    self.little = false;
                    continue;
                }
                b'<' | b'=' => {
                    self.little = c == b'<' || cfg!(target_endian = "little");
                    continue;
                }
                b'!' => {
                    self.align = self.number(8)?;
                    if !self.align.is_power_of_two() {
                        return Err(err("alignment must be power of 2"));
                    }
                    continue;
                }
                b'x' => Item::Pad,
                b'b' | b'B' => Item::Int {
                    size: 1,
                    signed: c == b'b',
                },
                b'h' | b'H' => Item::Int {
                    size: 2,
                    signed: c == b'h',
                },
                b'l' | b'L' | b'T' => Item::Int {
                    size: 8,
                    signed: c == b'l',
                },
                b'i' | b'I' => {
                    let size = self.number(4)?;
                    if size == 0 || size > INT_SIZE_MAX {
                        return Err(err(format!(
                            "integral size {size} is larger than limit of {INT_SIZE_MAX}"
                        )));
                    }
                    Item::Int {
                        size,
                        signed: c == b'i',
                    }
                }
                b'f' => Item::Float,
                b'd' => Item::Double,
                b's' => Item::ZString,
                b'c' => Item::Chars(self.number(1)?),
                other => return Err(err(format!("invalid format option '{}'", other as char))),
            };
            let size = match item {
                Item::Pad => 1,
                Item::Int { size, .. } => size,
                Item::Float => 4,
                Item::Double => 8,
                Item::ZString | Item::Chars(_) => 1,
            };
            return Ok(Some((item, size)));
        }
    }

    /// Padding before an item of `size` at `offset`.
    fn padding(&self, size: usize, offset: usize) -> usize {
        let align = size.min(self.align);
        if align <= 1 || !size.is_power_of_two() {
            return 0;
        }
        (align - (offset & (align - 1))) & (align - 1)
    }
}

fn format(fmt: &[u8]) -> Format<'_> {
    Format {
        fmt,
        pos: 0,
        little: cfg!(target_endian = "little"),
        align: 1,
    }
}

fn number_arg(args: &mut std::vec::IntoIter<Value>, n: usize) -> mlua::Result<f64> {
    match args.next() {
        Some(Value::Integer(i)) => Ok(i as f64),
        Some(Value::Number(x)) => Ok(x),
        Some(Value::String(s)) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                err(format!(
                    "bad argument #{n} to 'pack' (number expected, got string)"
                ))
            }),
        _ => Err(err(format!(
            "bad argument #{n} to 'pack' (number expected)"
        ))),
    }
}

fn pack(lua: &Lua, args: Variadic<Value>) -> mlua::Result<mlua::LuaString> {
    let mut args = args.into_iter().collect::<Vec<_>>().into_iter();
    let fmt = match args.next() {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        _ => return Err(err("bad argument #1 to 'pack' (string expected)")),
    };
    let mut f = format(&fmt);
    let mut out = Vec::new();
    let mut n = 2;
    while let Some((item, size)) = f.next()? {
        let pad = f.padding(size, out.len());
        out.resize(out.len() + pad, 0);
        match item {
            Item::Pad => out.push(0),
            Item::Int { size, .. } => {
                let v = number_arg(&mut args, n)? as i128;
                let bytes = v.to_le_bytes();
                let mut field: Vec<u8> = (0..size)
                    .map(|i| {
                        if i < 16 {
                            bytes[i]
                        } else if v < 0 {
                            0xff
                        } else {
                            0
                        }
                    })
                    .collect();
                if !f.little {
                    field.reverse();
                }
                out.extend_from_slice(&field);
                n += 1;
            }
            Item::Float | Item::Double => {
                let v = number_arg(&mut args, n)?;
                let mut field = if matches!(item, Item::Float) {
                    (v as f32).to_le_bytes().to_vec()
                } else {
                    v.to_le_bytes().to_vec()
                };
                if !f.little {
                    field.reverse();
                }
                out.extend_from_slice(&field);
                n += 1;
            }
            Item::ZString | Item::Chars(_) => {
                let s = match args.next() {
                    Some(Value::String(s)) => s.as_bytes().to_vec(),
                    Some(Value::Integer(i)) => i.to_string().into_bytes(),
                    Some(Value::Number(x)) => x.to_string().into_bytes(),
                    _ => {
                        return Err(err(format!(
                            "bad argument #{n} to 'pack' (string expected)"
                        )));
                    }
                };
                match item {
                    Item::ZString => {
                        out.extend_from_slice(&s);
                        out.push(0);
                    }
                    Item::Chars(len) => {
                        let len = if len == 0 { s.len() } else { len };
                        if s.len() < len {
                            return Err(err(format!(
                                "bad argument #{n} to 'pack' (string too short)"
                            )));
                        }
                        out.extend_from_slice(&s[..len]);
                    }
                    _ => unreachable!("only string items reach here"),
                }
                n += 1;
            }
        }
    }
    lua.create_string(&out)
}

fn unpack(
    lua: &Lua,
    (fmt, data, pos): (mlua::LuaString, mlua::LuaString, Option<i64>),
) -> mlua::Result<MultiValue> {
    let fmt = fmt.as_bytes().to_vec();
    let data = data.as_bytes().to_vec();
    let mut f = format(&fmt);
    let start = pos.unwrap_or(1);
    if start < 1 {
        return Err(err(
            "bad argument #3 to 'unpack' (offset must be 1 or greater)",
        ));
    }
    let mut at = start as usize - 1;
    let mut values: Vec<Value> = Vec::new();
    let short = || err("bad argument #2 to 'unpack' (data string too short)");
    while let Some((item, size)) = f.next()? {
        at += f.padding(size, at);
        match item {
            Item::Pad => at += 1,
            Item::Int { size, signed } => {
                let mut field = data.get(at..at + size).ok_or_else(short)?.to_vec();
                if !f.little {
                    field.reverse();
                }
                let mut v: i128 = 0;
                for (i, &b) in field.iter().enumerate().take(16) {
                    v |= (b as i128) << (8 * i);
                }
                if signed && size < 16 && field[size - 1] & 0x80 != 0 {
                    v -= 1i128 << (8 * size);
                }
                values.push(Value::Number(v as f64));
                at += size;
            }
            Item::Float | Item::Double => {
                let mut field = data.get(at..at + size).ok_or_else(short)?.to_vec();
                if !f.little {
                    field.reverse();
                }
                let v = if size == 4 {
                    f32::from_le_bytes(field.try_into().map_err(|_| short())?) as f64
                } else {
                    f64::from_le_bytes(field.try_into().map_err(|_| short())?)
                };
                values.push(Value::Number(v));
                at += size;
            }
            Item::ZString => {
                let rest = data.get(at..).ok_or_else(short)?;
                let end = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| err("unfinished string in data"))?;
                values.push(Value::String(lua.create_string(&rest[..end])?));
                at += end + 1;
            }
            Item::Chars(len) => {
                let len = if len == 0 {
                    // c0: the length is the previous value read.
                    match values.pop() {
                        Some(Value::Number(n)) if n >= 0.0 => n as usize,
                        _ => return Err(err("format 'c0' needs a previous size")),
                    }
                } else {
                    len
                };
                let s = data.get(at..at.saturating_add(len)).ok_or_else(short)?;
                values.push(Value::String(lua.create_string(s)?));
                at += len;
            }
        }
    }
    values.push(Value::Number((at + 1) as f64));
    Ok(MultiValue::from_iter(values))
}

fn size(_: &Lua, fmt: mlua::LuaString) -> mlua::Result<usize> {
    let fmt = fmt.as_bytes().to_vec();
    let mut f = format(&fmt);
    let mut total = 0usize;
    while let Some((item, size)) = f.next()? {
        total += f.padding(size, total);
        match item {
            Item::ZString => return Err(err("options 's' has no fixed size")),
            Item::Chars(len) => total = total.saturating_add(len),
            _ => total += size,
        }
    }
    Ok(total)
}

pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", lua.create_function(pack)?)?;
    t.raw_set("unpack", lua.create_function(unpack)?)?;
    t.raw_set("size", lua.create_function(size)?)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack_round_trip() {
        let lua = Lua::new();
        lua.globals().set("struct", library(&lua).unwrap()).unwrap();
        let ok: bool = lua
            .load(
                "local s = struct.pack('>HIb', 258, 100000, -2)
                 local a, b, c, next = struct.unpack('>HIb', s)
                 return #s == 7 and s:byte(1) == 1 and s:byte(2) == 2 and a == 258
                    and b == 100000 and c == -2 and next == 8
                    and struct.size('<i8d') == 16
                    and select(1, struct.unpack('s', struct.pack('s', 'hi'))) == 'hi'",
            )
            .eval()
            .unwrap();
        assert!(ok);
        assert!(lua.load("return struct.unpack('>I', 'ab')").exec().is_err());
        assert!(lua.load("return struct.pack('i99', 1)").exec().is_err());
    }
}
