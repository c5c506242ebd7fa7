//! Redis 7 multi-part AOF: the manifest that names the base and incremental files, the file
//! names Redis uses, and a streaming reader of the logged commands.

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
fn split_args(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Some(out);
        };
        let mut cur = String::new();
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
                        'n' => cur.push('\n'),
                        'r' => cur.push('\r'),
                        't' => cur.push('\t'),
                        'x' => {
                            let hex: String = [chars.next()?, chars.next()?].iter().collect();
                            cur.push(u8::from_str_radix(&hex, 16).ok()? as char);
                        }
                        other => cur.push(other),
                    }
                } else {
                    cur.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                cur.push(c);
                chars.next();
            }
        }
        out.push(cur);
    }
}

impl Manifest {
    /// Parses a manifest with Redis's rules: `file <name> seq <n> type <b|h|i>` per line
    /// (keys in any order, unknown keys ignored), `#` comments, at most one base, incr
    /// files in strictly increasing `seq`, bare file names only.
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
            let args = split_args(trimmed).ok_or_else(|| bad("unbalanced quotes"))?;
            if args.len() % 2 != 0 {
                return Err(bad("odd number of words"));
            }
            let (mut name, mut seq, mut kind) = (None, None, None);
            for kv in args.chunks(2) {
                match kv[0].as_str() {
                    "file" => name = Some(kv[1].clone()),
                    "seq" => {
                        seq = Some(
                            kv[1]
                                .parse::<u64>()
                                .map_err(|_| bad("seq is not a number"))?,
                        )
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

/// Longest argument an AOF command may carry (Redis's `proto-max-bulk-len`).
pub const ARG_LEN_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Most arguments one logged command may have.
pub const ARGS_MAX: u64 = i32::MAX as u64;

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
        let mut args = Vec::with_capacity(count.min(64) as usize);
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
                Some((b'$', n)) => parse_len(n).filter(|&n| n <= ARG_LEN_MAX_BYTES),
                _ => None,
            }
            .ok_or_else(|| self.corrupt(start, "expected a bulk string argument"))?;
            let mut arg = Vec::with_capacity(len.min(64 * 1024) as usize);
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
    use super::*;

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
}
