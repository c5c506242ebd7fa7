//! Numbers as Redis reads and prints them.

/// Parses a decimal integer the way Redis's `string2ll` does: no spaces, no leading `+`,
/// no leading zeros (except "0" itself), no overflow.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [] => return None,
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 20 || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Parses a float as Redis's `string2d`/`strtold` users accept it: no surrounding spaces,
/// `inf`/`-inf` allowed, NaN refused.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty()
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace)
    {
        return None;
    }
    let v: f64 = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        lower if lower.contains("nan") || lower.contains("inf") => return None,
        _ => text.parse().ok()?,
    };
    if v.is_nan() { None } else { Some(v) }
}

/// Formats a double as C's `printf("%.17g")`, which is how Redis 7.0 replies with scores.
pub fn format_double(v: f64, out: &mut Vec<u8>) {
    use std::io::Write;
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    // 17 significant digits in scientific form tell us the decimal exponent %g would use.
    let sci = format!("{v:.16e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent in {:e} output");
    let exp: i32 = exp.parse().expect("integer exponent");
    if !(-4..17).contains(&exp) {
        let m = trim_fraction(mantissa);
        let _ = write!(
            out,
            "{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    } else {
        let decimals = (16 - exp).max(0) as usize;
        let fixed = format!("{v:.decimals$}");
        out.extend_from_slice(trim_fraction(&fixed).as_bytes());
    }
}

/// Formats a double as Redis's "human" long double text (`%.17Lf` without trailing zeros, "-0"
/// printed as "0"): how GEOPOS and WITHCOORD print coordinates.
pub fn format_double_human(v: f64, out: &mut Vec<u8>) {
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    // Rust, like glibc's printf, rounds the exact binary value, so the digits agree.
    let fixed = format!("{v:.17}");
    match trim_fraction(&fixed) {
        "-0" => out.push(b'0'),
        t => out.extend_from_slice(t.as_bytes()),
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g17(v: f64) -> String {
        let mut out = Vec::new();
        format_double(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn doubles_print_like_printf_g17() {
        assert_eq!(g17(1.1), "1.1000000000000001");
        assert_eq!(g17(1.5), "1.5");
        assert_eq!(g17(10.0), "10");
        assert_eq!(g17(-3.0), "-3");
        assert_eq!(g17(0.0001), "0.0001");
        assert_eq!(g17(0.00001), "1.0000000000000001e-05");
        assert_eq!(g17(1e17), "1e+17");
        assert_eq!(g17(123456789012345678.0), "1.2345678901234568e+17");
        assert_eq!(g17(f64::INFINITY), "inf");
        assert_eq!(g17(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn human_doubles_print_like_redis_ld2string() {
        let human = |v: f64| {
            let mut out = Vec::new();
            format_double_human(v, &mut out);
            String::from_utf8(out).unwrap()
        };
        // GEOPOS of Palermo (13.361389 38.115556) in redis-server 7.0.
        assert_eq!(human(13.361389338970184), "13.36138933897018433");
        assert_eq!(human(38.115_556_395_496_3), "38.11555639549629859");
        assert_eq!(human(-0.0), "0");
        assert_eq!(human(2.5), "2.5");
        assert_eq!(human(10.0), "10");
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"9223372036854775808"[..],
            b"01",
            b"-0",
            b"+1",
            b" 1",
            b"1 ",
            b"",
            b"-",
            b"1.0",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Accepts what Redis's string2ll accepts: exactly the strings that parse as an
        /// i64 and print back unchanged.
        #[test]
        fn canonical_integers_as_defined(s in "-?[0-9]{0,21}|[-+0-9a ]{0,4}", v in proptest::num::i64::ANY) {
            let reference = |s: &str| s.parse::<i64>().ok().filter(|v| v.to_string() == s);
            proptest::prop_assert_eq!(parse_i64(s.as_bytes()), reference(&s));
            let printed = v.to_string();
            proptest::prop_assert_eq!(parse_i64(printed.as_bytes()), Some(v));
        }
    }

    #[test]
    fn floats_refuse_nan_and_spaces() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"abc"), None);
    }
}
