//! Redis 7 multi-part AOF: the manifest that names the base and incremental files, the file
//! names Redis uses, a streaming reader of the logged commands, and the checksum list that
//! cacheplane stores beside a shipped AOF.

use std::fmt;
use std::io::{BufRead, Read};

use crate::FormatError;

/// The role of a file in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The snapshot the log starts from (`b`).
    Base,
    /// A file of a previous generation, awaiting deletion (`h`).
    History,
    /// Commands appended after the base (`i`).
    Incr,
}

impl FileKind {
    fn code(self) -> char {
        match self {
            FileKind::Base => 'b',
            FileKind::History => 'h',
            FileKind::Incr => 'i',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AofFile {
    pub name: String,
    pub seq: u64,
    pub kind: FileKind,
}

/// Longest manifest line Redis accepts.
pub const MANIFEST_LINE_MAX_BYTES: usize = 1024;

/// Largest `seq` a manifest may name: Redis keeps it in a `long long`, and the number of the
/// file after it (`seq + 1`, which the node computes) must not overflow.
pub const SEQ_MAX: u64 = i64::MAX as u64;

/// The manifest: at most one base, then history files, then incr files in `seq` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub base: Option<AofFile>,
    pub history: Vec<AofFile>,
    pub incrs: Vec<AofFile>,
}

/// `appendonly.aof.3.base.rdb` and friends.
pub fn base_name(appendfilename: &str, seq: u64, rdb_preamble: bool) -> String {
    format!(
        "{appendfilename}.{seq}.base.{}",
        if rdb_preamble { "rdb" } else { "aof" }
    )
}

pub fn incr_name(appendfilename: &str, seq: u64) -> String {
    format!("{appendfilename}.{seq}.incr.aof")
}

pub fn manifest_name(appendfilename: &str) -> String {
    format!("{appendfilename}.manifest")
}

/// Quotes a value the way Redis's `sdscatrepr` does when it has to.
fn quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'' && b != b'\\')
    {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for b in v.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Splits a line like Redis's `sdssplitargs` (double quotes with escapes, single quotes).
/// Words are built as bytes, so a `\xNN` escape is one byte, as [`quote`] writes each byte of
/// a UTF-8 name; a word that is then not UTF-8 is refused with the line.
fn split_args(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let push =
        |cur: &mut Vec<u8>, c: char| cur.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Some(out);
        };
        let mut cur = Vec::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                let c = chars.next()?;
                if c == first {
                    if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                        return None;
                    }
                    break;
                }
                if c == '\\' && first == '"' {
                    match chars.next()? {
                        'n' => cur.push(b'\n'),
                        'r' => cur.push(b'\r'),
                        't' => cur.push(b'\t'),
                        'x' => {
                            let (hi, lo) =
                                (chars.next()?.to_digit(16)?, chars.next()?.to_digit(16)?);
                            cur.push((hi * 16 + lo) as u8);
                        }
                        other => push(&mut cur, other),
                    }
                } else {
                    push(&mut cur, c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                push(&mut cur, c);
                chars.next();
            }
        }
        out.push(String::from_utf8(cur).ok()?);
    }
}

impl Manifest {
    /// Parses a manifest with Redis's rules: `file <name> seq <n> type <b|h|i>` per line
    /// (keys in any order, unknown keys ignored), `#` comments, at most one base, incr
    /// files in strictly increasing `seq` (each at most [`SEQ_MAX`]), bare file names only.
    pub fn parse(text: &str) -> Result<Manifest, FormatError> {
        let mut m = Manifest::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let bad = |reason: &str| FormatError::BadManifest {
                line,
                reason: reason.to_string(),
            };
            if raw.len() > MANIFEST_LINE_MAX_BYTES {
                return Err(bad("line too long"));
            }
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let args =
                split_args(trimmed).ok_or_else(|| bad("unbalanced quotes or a bad escape"))?;
            if args.len() % 2 != 0 {
                return Err(bad("odd number of words"));
            }
            let (mut name, mut seq, mut kind) = (None, None, None);
            for kv in args.chunks(2) {
                match kv[0].as_str() {
                    "file" => name = Some(kv[1].clone()),
                    "seq" => {
                        let n = kv[1]
                            .parse::<u64>()
                            .map_err(|_| bad("seq is not a number"))?;
                        if n > SEQ_MAX {
                            return Err(bad("seq is out of range"));
                        }
                        seq = Some(n);
                    }
                    "type" => {
                        kind = Some(match kv[1].as_str() {
                            "b" => FileKind::Base,
                            "h" => FileKind::History,
                            "i" => FileKind::Incr,
                            _ => return Err(bad("unknown file type")),
                        })
                    }
                    _ => {}
                }
            }
            let (Some(name), Some(seq), Some(kind)) = (name, seq, kind) else {
                return Err(bad("missing file, seq or type"));
            };
            if name.is_empty() || name.contains('/') {
                return Err(bad("file names must be bare names"));
            }
            let file = AofFile { name, seq, kind };
            match kind {
                FileKind::Base => {
                    if m.base.replace(file).is_some() {
                        return Err(bad("more than one base file"));
                    }
                }
                FileKind::History => m.history.push(file),
                FileKind::Incr => {
                    if m.incrs.last().is_some_and(|last| last.seq >= file.seq) {
                        return Err(bad("incr files out of order"));
                    }
                    m.incrs.push(file);
                }
            }
        }
        Ok(m)
    }

    /// The manifest text, in Redis's order: base, history, incr.
    pub fn to_text(&self) -> String {
        self.base
            .iter()
            .chain(&self.history)
            .chain(&self.incrs)
            .map(|f| {
                format!(
                    "file {} seq {} type {}\n",
                    quote(&f.name),
                    f.seq,
                    f.kind.code()
                )
            })
            .collect()
    }

    /// Files to load, in order: the base, then every incr file.
    pub fn load_order(&self) -> impl Iterator<Item = &AofFile> {
        self.base.iter().chain(&self.incrs)
    }

    pub fn next_incr_seq(&self) -> u64 {
        self.incrs.last().map_or(1, |f| f.seq + 1)
    }
}

/// One line of the checksum list stored beside a shipped AOF (`<name> <bytes> <crc64 hex>`):
/// what a restore verifies each downloaded file against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumLine {
    /// A bare file name, as the manifest names it.
    pub name: String,
    pub bytes: u64,
    pub crc64: u64,
}

impl fmt::Display for ChecksumLine {
    /// The line as stored, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:016x}", self.name, self.bytes, self.crc64)
    }
}

/// Parses a checksum list: per line a bare file name, the size in decimal and the CRC-64 in
/// 1 to 16 hex digits, separated by single spaces; blank lines are skipped. Lines come back
/// in file order, repeated names included (the list is a union of two manifests' lines).
/// A malformed line is an error naming it: a restore must not skip a file's check because
/// its line was unreadable.
pub fn parse_checksums(text: &str) -> Result<Vec<ChecksumLine>, FormatError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let bad = |reason: &str| FormatError::BadChecksumLine {
            line: i + 1,
            reason: reason.to_string(),
        };
        if raw.is_empty() {
            continue;
        }
        let words: Vec<&str> = raw.splitn(4, ' ').collect();
        let [name, bytes, crc] = words[..] else {
            return Err(bad("expected <name> <bytes> <crc64 hex>"));
        };
        if name.is_empty() || name.contains('/') {
            return Err(bad("file names must be bare names"));
        }
        // ASCII digits only: `str::parse` and `from_str_radix` would also take a leading `+`.
        let bytes = Some(bytes)
            .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| bad("size is not a number"))?;
        let crc64 = Some(crc)
            .filter(|w| (1..=16).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|w| u64::from_str_radix(w, 16).ok())
            .ok_or_else(|| bad("crc64 is not 1-16 hex digits"))?;
        out.push(ChecksumLine {
            name: name.to_string(),
            bytes,
            crc64,
        });
    }
    Ok(out)
}

/// Longest argument an AOF command may carry (Redis's `proto-max-bulk-len`).
pub const ARG_LEN_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Most arguments one logged command may have.
pub const ARGS_MAX: u64 = i32::MAX as u64;
/// Arguments reserved up front for a command, whatever its header declares: the vector grows
/// as arguments actually arrive, so a torn or forged `*2147483647` costs nothing.
const ARGS_RESERVE_MAX: u64 = 64;
/// Bytes reserved up front for an argument, whatever its `$` line declares; the rest grows
/// as the bytes are read.
const ARG_RESERVE_MAX_BYTES: u64 = 64 * 1024;

/// Reads logged commands (RESP arrays of bulk strings) one at a time.
pub struct CommandReader<R> {
    inner: R,
    offset: u64,
}

/// Where a command log stopped being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// Every byte was part of a whole command.
    Clean,
    /// The log ends inside a command that starts at `offset`: a torn write.
    Truncated { offset: u64 },
}

impl<R: BufRead> CommandReader<R> {
    pub fn new(inner: R) -> Self {
        CommandReader { inner, offset: 0 }
    }

    /// Byte offset just after the last whole command read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn line(&mut self, buf: &mut Vec<u8>) -> Result<bool, FormatError> {
        buf.clear();
        // Header lines are short; a missing newline within this bound is corruption.
        let n = self.inner.by_ref().take(64).read_until(b'\n', buf)?;
        if n == 0 || !buf.ends_with(b"\r\n") {
            return Ok(false);
        }
        buf.truncate(buf.len() - 2);
        Ok(true)
    }

    /// The next command, `Ok(None)` at the end of the log (see [`LogEnd`] through
    /// [`CommandReader::next_or_end`]).
    pub fn next_or_end(&mut self) -> Result<Result<Vec<Vec<u8>>, LogEnd>, FormatError> {
        let start = self.offset;
        let truncated = Ok(Err(LogEnd::Truncated { offset: start }));
        let mut line = Vec::with_capacity(32);
        let mut consumed = 0u64;
        if self.inner.fill_buf()?.is_empty() {
            return Ok(Err(LogEnd::Clean));
        }
        if !self.line(&mut line)? {
            // A torn header still starts like one; anything else is not a log (as Redis
            // judges it).
            return if self.inner.fill_buf()?.is_empty()
                && line.len() < 64
                && line.first() == Some(&b'*')
            {
                truncated
            } else {
                Err(self.corrupt(start, "bad command header"))
            };
        }
        consumed += line.len() as u64 + 2;
        let count = match line.split_first() {
            Some((b'*', n)) => parse_len(n).filter(|n| (1..=ARGS_MAX).contains(n)),
            _ => None,
        }
        .ok_or_else(|| self.corrupt(start, "expected a command array"))?;
        let mut args = Vec::with_capacity(count.min(ARGS_RESERVE_MAX) as usize);
        for _ in 0..count {
            if !self.line(&mut line)? {
                return if self.inner.fill_buf()?.is_empty()
                    && line.first().is_none_or(|&c| c == b'$')
                {
                    truncated
                } else {
                    Err(self.corrupt(start, "bad argument header"))
                };
            }
            consumed += line.len() as u64 + 2;
            let len = match line.split_first() {
                Some((b'$', n)) => parse_len(n),
                _ => None,
            }
            .ok_or_else(|| self.corrupt(start, "expected a bulk string argument"))?;
            if len > ARG_LEN_MAX_BYTES {
                return Err(self.corrupt(start, "argument longer than proto-max-bulk-len"));
            }
            let mut arg = Vec::with_capacity(len.min(ARG_RESERVE_MAX_BYTES) as usize);
            let got = self.inner.by_ref().take(len + 2).read_to_end(&mut arg)? as u64;
            if got < len + 2 {
                return truncated;
            }
            if !arg.ends_with(b"\r\n") {
                return Err(self.corrupt(start, "argument not followed by CRLF"));
            }
            arg.truncate(len as usize);
            consumed += len + 2;
            args.push(arg);
        }
        self.offset += consumed;
        Ok(Ok(args))
    }

    fn corrupt(&self, offset: u64, reason: &str) -> FormatError {
        FormatError::corrupt(offset, reason)
    }
}

/// The length of the whole commands at the start of `bytes` (a log cut anywhere): where a
/// piece of the log may end so that it replays on its own.
pub fn whole_commands_len(bytes: &[u8]) -> Result<u64, FormatError> {
    let mut reader = CommandReader::new(bytes);
    loop {
        match reader.next_or_end()? {
            Ok(_) => {}
            Err(LogEnd::Clean) => return Ok(bytes.len() as u64),
            Err(LogEnd::Truncated { offset }) => return Ok(offset),
        }
    }
}

fn parse_len(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Encodes one command as the log stores it.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_log_cut_anywhere_keeps_its_whole_commands() {
        let mut log = Vec::new();
        encode_command(&["SET", "a", "1"], &mut log);
        let first = log.len() as u64;
        encode_command(&["SET", "b", "22"], &mut log);
        assert_eq!(whole_commands_len(&log).unwrap(), log.len() as u64);
        for cut in first..log.len() as u64 {
            assert_eq!(
                whole_commands_len(&log[..cut as usize]).unwrap(),
                first,
                "cut at {cut}"
            );
        }
        assert_eq!(whole_commands_len(&log[..3]).unwrap(), 0);
        assert!(whole_commands_len(b"garbage\r\n").is_err());
    }

    use proptest::prelude::*;

    use super::*;
    use crate::damage::Damage;

    #[test]
    fn manifest_round_trip_and_rules() {
        let text = "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\nfile appendonly.aof.2.incr.aof seq 2 type i\n";
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.base.as_ref().unwrap().name, "appendonly.aof.1.base.rdb");
        assert_eq!(m.incrs.len(), 2);
        assert_eq!(m.to_text(), text);
        assert_eq!(m.next_incr_seq(), 3);
        let quoted = Manifest::parse("# comment\nseq 1 type i file \"my file.aof\"\n").unwrap();
        assert_eq!(quoted.incrs[0].name, "my file.aof");
        assert!(quoted.to_text().contains("\"my file.aof\""));
        for bad in [
            "file a seq 1 type b\nfile b seq 2 type b\n",
            "file a seq 2 type i\nfile b seq 1 type i\n",
            "file ../a seq 1 type i\n",
            "file a seq x type i\n",
            "file a seq 1\n",
            "file a seq 1 type z\n",
        ] {
            assert!(Manifest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_and_torn_tails() {
        let mut log = Vec::new();
        encode_command(&["SET", "k", "v"], &mut log);
        let first = log.len();
        encode_command(&["DEL", "k"], &mut log);
        let whole = log.len();
        let mut r = CommandReader::new(&log[..]);
        assert_eq!(
            r.next_or_end().unwrap(),
            Ok(vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()])
        );
        assert_eq!(
            r.next_or_end().unwrap(),
            Ok(vec![b"DEL".to_vec(), b"k".to_vec()])
        );
        assert_eq!(r.next_or_end().unwrap(), Err(LogEnd::Clean));
        assert_eq!(r.offset(), whole as u64);
        // Cut anywhere inside the second command: the first survives, the tail is torn.
        for cut in first + 1..whole {
            let mut r = CommandReader::new(&log[..cut]);
            assert!(r.next_or_end().unwrap().is_ok());
            assert_eq!(
                r.next_or_end().unwrap(),
                Err(LogEnd::Truncated {
                    offset: first as u64
                }),
                "cut at {cut}"
            );
        }
        // A last line that does not start like a command is not a torn command.
        let mut r = CommandReader::new(&b"garbage!!"[..]);
        assert!(r.next_or_end().is_err());
        // Garbage in the middle is corruption, not a torn tail.
        let mut bad = log.clone();
        bad[first] = b'x';
        let mut r = CommandReader::new(&bad[..]);
        r.next_or_end().unwrap().unwrap();
        assert!(r.next_or_end().is_err());
    }

    #[test]
    fn manifest_names_of_any_bytes_and_seq_bounds() {
        // Non-ASCII names are quoted byte by byte (`\xc3\xa9`) and must read back as written.
        let m = Manifest {
            incrs: vec![AofFile {
                name: "caf\u{e9} \u{1}.aof".into(),
                seq: SEQ_MAX,
                kind: FileKind::Incr,
            }],
            ..Default::default()
        };
        assert_eq!(Manifest::parse(&m.to_text()).unwrap(), m);
        // An escape that makes a name that is not UTF-8 is refused, not mangled.
        assert!(Manifest::parse("file \"\\xff\" seq 1 type i\n").is_err());
        assert!(Manifest::parse("file \"\\x+f\" seq 1 type i\n").is_err());
        // The file after the last must still be numbered: seq stops at SEQ_MAX.
        let e = Manifest::parse(&format!("file a seq {} type i\n", SEQ_MAX + 1)).unwrap_err();
        assert!(e.to_string().contains("line 1: seq is out of range"), "{e}");
    }

    #[test]
    fn checksum_lists_parse_and_name_the_bad_line() {
        let text =
            "appendonly.aof.4.base.rdb 10 000000000000000a\n\nappendonly.aof.9.incr.aof 5 FF\n";
        assert_eq!(
            parse_checksums(text).unwrap(),
            vec![
                ChecksumLine {
                    name: "appendonly.aof.4.base.rdb".into(),
                    bytes: 10,
                    crc64: 10
                },
                ChecksumLine {
                    name: "appendonly.aof.9.incr.aof".into(),
                    bytes: 5,
                    crc64: 255
                },
            ]
        );
        assert_eq!(parse_checksums("").unwrap(), vec![]);
        // The form the shipper writes.
        let line = ChecksumLine {
            name: "appendonly.aof.2.incr.aof".into(),
            bytes: 7,
            crc64: 0xab,
        };
        assert_eq!(
            line.to_string(),
            "appendonly.aof.2.incr.aof 7 00000000000000ab"
        );
        for (bad, reason) in [
            ("a 1", "expected <name> <bytes> <crc64 hex>"),
            ("a 1 ff extra", "expected <name> <bytes> <crc64 hex>"),
            ("a  1", "size is not a number"),
            (" 1 ff", "file names must be bare names"),
            ("../a 1 ff", "file names must be bare names"),
            ("a +1 ff", "size is not a number"),
            ("a 18446744073709551616 ff", "size is not a number"),
            ("a 1 +f", "crc64 is not 1-16 hex digits"),
            ("a 1 ", "crc64 is not 1-16 hex digits"),
            ("a 1 00000000000000000", "crc64 is not 1-16 hex digits"),
            ("a 1 xyz", "crc64 is not 1-16 hex digits"),
        ] {
            let text = format!("ok 1 1\n{bad}\n");
            let e = parse_checksums(&text).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("bad aof checksum list line 2: {reason}"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn huge_declared_counts_and_lengths_are_not_reserved() {
        // Each input is a few bytes claiming far more; the reader reserves at most
        // ARGS_RESERVE_MAX / ARG_RESERVE_MAX_BYTES and answers from what is there.
        let torn: [&[u8]; 4] = [
            b"*2147483647\r\n",
            b"*2147483647\r\n$3\r\nSET\r\n$1\r\n",
            b"*1\r\n$536870912\r\nab",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n",
        ];
        for log in torn {
            assert_eq!(
                CommandReader::new(log).next_or_end().unwrap(),
                Err(LogEnd::Truncated { offset: 0 }),
                "{}",
                String::from_utf8_lossy(log)
            );
        }
        let corrupt: [&[u8]; 4] = [
            b"*1\r\n$9999999999\r\n",
            b"*1\r\n$536870913\r\nab",
            b"*2147483648\r\n",
            b"*99999999999999999999\r\n",
        ];
        for log in corrupt {
            assert!(
                CommandReader::new(log).next_or_end().is_err(),
                "{}",
                String::from_utf8_lossy(log)
            );
        }
        let e = CommandReader::new(&b"*1\r\n$9999999999\r\n"[..])
            .next_or_end()
            .unwrap_err();
        assert!(
            e.to_string().contains("longer than proto-max-bulk-len"),
            "{e}"
        );
    }

    /// Commands as the reader returns them: each a list of arguments.
    type Commands = Vec<Vec<Vec<u8>>>;

    /// Reads a whole log; checks what every outcome promises about offsets.
    fn read_log(log: &[u8]) -> Result<(Commands, LogEnd), FormatError> {
        let mut r = CommandReader::new(log);
        let mut commands = Vec::new();
        loop {
            let before = r.offset();
            match r.next_or_end()? {
                Ok(args) => {
                    assert!(!args.is_empty() && r.offset() > before);
                    commands.push(args);
                }
                Err(end) => {
                    match end {
                        LogEnd::Clean => assert_eq!(r.offset(), log.len() as u64),
                        LogEnd::Truncated { offset } => {
                            assert_eq!(offset, r.offset());
                            assert!(offset < log.len() as u64);
                        }
                    }
                    return Ok((commands, end));
                }
            }
        }
    }

    fn arb_commands() -> impl Strategy<Value = Commands> {
        let arg = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24),
            "[A-Z]{1,8}".prop_map(String::into_bytes),
            Just(b"\r\n*1\r\n$".to_vec()),
        ];
        proptest::collection::vec(proptest::collection::vec(arg, 1..5), 0..6)
    }

    fn encode_all(commands: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut log = Vec::new();
        commands.iter().for_each(|c| encode_command(c, &mut log));
        log
    }

    /// Headers that declare far more than any test input holds.
    const HUGE_HEADERS: [&[u8]; 6] = [
        b"*2147483647\r\n",
        b"*2147483648\r\n",
        b"$536870912\r\n",
        b"$9999999999\r\n",
        b"$18446744073709551615\r\n",
        b"*99999999999999999999\r\n",
    ];

    /// What a damaged log can look like: flipped bytes, a cut, and huge headers spliced in.
    fn arb_damage() -> impl Strategy<Value = Vec<Damage>> {
        crate::damage::arb_damage(HUGE_HEADERS.len(), 1)
    }

    fn damage(data: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
        crate::damage::apply(data, damage, &HUGE_HEADERS)
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        // Any characters but '/', few enough that the quoted line stays within the limit.
        let name = "[^/]{1,40}";
        let file =
            |kind| (name, 0..=SEQ_MAX).prop_map(move |(name, seq)| AofFile { name, seq, kind });
        (
            proptest::option::of(file(FileKind::Base)),
            proptest::collection::vec(file(FileKind::History), 0..3),
            proptest::collection::vec(file(FileKind::Incr), 0..4),
        )
            .prop_map(|(base, history, mut incrs)| {
                incrs.sort_by_key(|f| f.seq);
                incrs.dedup_by_key(|f| f.seq);
                Manifest {
                    base,
                    history,
                    incrs,
                }
            })
    }

    /// Text made of the manifest's and checksum list's own words, to get past the first check.
    fn arb_manifest_like_text() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            "file",
            "seq",
            "type",
            "[bhiz]",
            "[0-9]{1,21}",
            "[0-9a-fA-F+]{1,18}",
            "[a-z./]{0,12}",
            "[\"']",
            "\\\\(x[0-9a-fA-F+]{0,2}|[nrt\"'\\\\])",
            "#",
            "[ \t]{1,2}",
            "\r?\n",
            ".",
        ];
        proptest::collection::vec(word, 0..40).prop_map(|w| w.concat())
    }

    /// Edits a valid text at character boundaries, so it stays a `&str`.
    fn mutate_text(text: &str, edits: &[(prop::sample::Index, u8, char)]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for (i, op, c) in edits {
            let at = i.index(chars.len() + 1);
            match op % 3 {
                0 => chars.insert(at, *c),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                _ if at < chars.len() => chars[at] = *c,
                _ => chars.push(*c),
            }
        }
        chars.into_iter().collect()
    }

    fn arb_edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, char)>> {
        let c = prop_oneof![
            Just(' '),
            Just('\n'),
            Just('"'),
            Just('\''),
            Just('\\'),
            Just('/'),
            Just('#'),
            proptest::char::range('0', '9'),
            any::<char>(),
        ];
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), c), 1..4)
    }

    fn arb_checksum_lines() -> impl Strategy<Value = Vec<ChecksumLine>> {
        proptest::collection::vec(
            ("[a-zA-Z0-9._-]{1,40}", any::<u64>(), any::<u64>())
                .prop_map(|(name, bytes, crc64)| ChecksumLine { name, bytes, crc64 }),
            0..6,
        )
    }

    fn checksum_text(lines: &[ChecksumLine]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    proptest! {
        #[test]
        fn manifests_read_back_as_written(m in arb_manifest()) {
            prop_assert_eq!(Manifest::parse(&m.to_text()).unwrap(), m);
        }

        #[test]
        fn command_logs_read_back_and_torn_anywhere(commands in arb_commands(), cut in any::<prop::sample::Index>()) {
            let log = encode_all(&commands);
            prop_assert_eq!(read_log(&log).unwrap(), (commands.clone(), LogEnd::Clean));
            // A cut inside a command keeps the whole ones before it and tears the rest.
            let at = cut.index(log.len() + 1);
            let (read, end) = read_log(&log[..at]).unwrap();
            prop_assert_eq!(&read[..], &commands[..read.len()]);
            let whole = encode_all(&read).len();
            prop_assert_eq!(end, if whole == at { LogEnd::Clean } else { LogEnd::Truncated { offset: whole as u64 } });
        }

        #[test]
        fn checksum_lists_read_back_as_written(lines in arb_checksum_lines()) {
            prop_assert_eq!(parse_checksums(&checksum_text(&lines)).unwrap(), lines);
        }

        #[test]
        fn fuzz_manifest_text_never_panics(text in prop_oneof![any::<String>(), arb_manifest_like_text()]) {
            let _ = Manifest::parse(&text);
        }

        #[test]
        fn fuzz_mutated_manifests_never_panic(m in arb_manifest(), edits in arb_edits()) {
            let text = mutate_text(&m.to_text(), &edits);
            if let Ok(back) = Manifest::parse(&text) {
                // Whatever is accepted obeys the manifest's rules.
                prop_assert!(back.incrs.windows(2).all(|w| w[0].seq < w[1].seq));
                prop_assert!(back.load_order().all(|f| !f.name.is_empty() && !f.name.contains('/') && f.seq <= SEQ_MAX));
                prop_assert_eq!(Manifest::parse(&back.to_text()).unwrap(), back);
            }
        }

        #[test]
        fn fuzz_command_log_bytes_never_panic(
            data in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..256),
                proptest::collection::vec(prop_oneof![
                    Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                    "[0-9]{1,20}".prop_map(String::into_bytes),
                    proptest::collection::vec(any::<u8>(), 0..4),
                ], 0..40).prop_map(|w| w.concat()),
            ]
        ) {
            let _ = read_log(&data);
        }

        #[test]
        fn fuzz_damaged_command_logs_never_panic(commands in arb_commands(), damage_done in arb_damage()) {
            let log = damage(encode_all(&commands), &damage_done);
            let _ = read_log(&log);
        }

        #[test]
        fn fuzz_checksum_text_never_panics(
            text in prop_oneof![any::<String>(), arb_manifest_like_text()],
            lines in arb_checksum_lines(),
            edits in arb_edits(),
        ) {
            let _ = parse_checksums(&text);
            let _ = parse_checksums(&mutate_text(&checksum_text(&lines), &edits));
        }
    }
}
