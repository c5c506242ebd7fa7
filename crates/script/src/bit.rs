//! The `bit` library (LuaBitOp's API, as Redis embeds it): 32-bit operations on Lua
//! numbers, results as signed 32-bit values.

use mlua::{Lua, Table, Value, Variadic};

/// LuaBitOp's number normalisation: round to the nearest integer, keep the low 32 bits.
pub(crate) fn tobit(v: &Value) -> mlua::Result<i32> {
    let n = match v {
        Value::Integer(i) => return Ok(*i as i32),
        Value::Number(n) => *n,
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or_else(|| {
                mlua::Error::runtime("bad argument to bit operation (number expected)")
            })?,
        _ => {
            return Err(mlua::Error::runtime(
                "bad argument to bit operation (number expected)",
            ));
        }
    };
    if !n.is_finite() {
        return Ok(0);
    }
    Ok(n.round_ties_even().rem_euclid(4_294_967_296.0) as u32 as i32)
}

fn fold(args: &Variadic<Value>, f: fn(i32, i32) -> i32) -> mlua::Result<i32> {
    let mut it = args.iter();
    let first = it
        .next()
        .ok_or_else(|| mlua::Error::runtime("bad argument #1 (number expected, got no value)"))?;
    let mut acc = tobit(first)?;
    for v in it {
        acc = f(acc, tobit(v)?);
    }
    Ok(acc)
}

pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("tobit", lua.create_function(|_, v: Value| tobit(&v))?)?;
    t.raw_set("bnot", lua.create_function(|_, v: Value| Ok(!tobit(&v)?))?)?;
    t.raw_set(
        "band",
        lua.create_function(|_, a: Variadic<Value>| fold(&a, |x, y| x & y))?,
    )?;
    t.raw_set(
        "bor",
        lua.create_function(|_, a: Variadic<Value>| fold(&a, |x, y| x | y))?,
    )?;
    t.raw_set(
        "bxor",
        lua.create_function(|_, a: Variadic<Value>| fold(&a, |x, y| x ^ y))?,
    )?;
    let shift = |f: fn(i32, u32) -> i32| {
        move |_: &Lua, (v, n): (Value, Value)| Ok(f(tobit(&v)?, (tobit(&n)? & 31) as u32))
    };
    t.raw_set(
        "lshift",
        lua.create_function(shift(|x, n| ((x as u32) << n) as i32))?,
    )?;
    t.raw_set(
        "rshift",
        lua.create_function(shift(|x, n| ((x as u32) >> n) as i32))?,
    )?;
    t.raw_set("arshift", lua.create_function(shift(|x, n| x >> n))?)?;
    t.raw_set(
        "rol",
        lua.create_function(shift(|x, n| (x as u32).rotate_left(n) as i32))?,
    )?;
    t.raw_set(
        "ror",
        lua.create_function(shift(|x, n| (x as u32).rotate_right(n) as i32))?,
    )?;
    t.raw_set(
        "bswap",
        lua.create_function(|_, v: Value| Ok((tobit(&v)? as u32).swap_bytes() as i32))?,
    )?;
    t.raw_set(
        "tohex",
        lua.create_function(|_, (v, n): (Value, Option<Value>)| {
            let x = tobit(&v)? as u32;
            let n = match n {
                Some(n) => tobit(&n)?,
                None => 8,
            };
            let (upper, digits) = (n < 0, n.unsigned_abs().min(8) as usize);
            let text = if upper {
                format!("{x:08X}")
            } else {
                format!("{x:08x}")
            };
            Ok(text[8 - digits..].to_owned())
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_match_luabitop() {
        let lua = Lua::new();
        lua.globals().set("bit", library(&lua).unwrap()).unwrap();
        let check = |code: &str| {
            assert!(lua.load(code).eval::<bool>().unwrap(), "{code}");
        };
        check("return bit.tobit(0xffffffff) == -1");
        check("return bit.tobit(2^32 + 5) == 5");
        check("return bit.bor(1,2,4,8,16,32,64,128) == 255");
        check("return bit.bxor(1,2) == 3 and bit.band(7, 12) == 4");
        check("return bit.bnot(0) == -1");
        check("return bit.lshift(1, 31) == -2147483648 and bit.rshift(-1, 28) == 15");
        check("return bit.arshift(-256, 4) == -16");
        check("return bit.rol(0x12345678, 8) == 0x34567812");
        check("return bit.tohex(255) == '000000ff' and bit.tohex(-1, -4) == 'FFFF'");
        check("return bit.bswap(0x12345678) == 0x78563412");
    }
}
