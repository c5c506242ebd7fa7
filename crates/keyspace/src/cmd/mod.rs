//! The data commands, one file per type family. Each function parses its arguments, applies
//! itself to the keyspace and writes its reply; the table in `table.rs` names them.

pub mod bits;
pub mod geo;
pub mod hashes;
pub mod hll;
pub mod keys;
pub mod lists;
pub mod sets;
pub mod sort;
pub mod streams;
pub mod strings;
#[cfg(test)]
mod tests;
pub mod zsets;

/// Absolute expiry from a relative or absolute time argument, checked like Redis
/// (`invalid expire time in '<cmd>' command` for non-positive or overflowing values).
pub(crate) fn expire_at(
    now_ms: u64,
    amount: i64,
    unit_ms: i64,
    absolute: bool,
    cmd: &str,
) -> Result<u64, crate::CmdError> {
    let invalid = || crate::CmdError::other(format!("ERR invalid expire time in '{cmd}' command"));
    if amount <= 0 {
        return Err(invalid());
    }
    let ms = amount.checked_mul(unit_ms).ok_or_else(invalid)?;
    let at = if absolute {
        ms
    } else {
        ms.checked_add(now_ms as i64).ok_or_else(invalid)?
    };
    Ok(at as u64)
}
