//! COMMAND DOCS: what each command does, since which Redis version, its group, complexity
//! and argument tree (what redis-cli and GUIs build their hints from). The data is
//! `command_docs.txt`, compiled in and read once; this module parses it (no I/O) and
//! writes the replies.
//!
//! The text format, indented two spaces per level:
//! ```text
//! command set
//!   summary Sets the string value of a key.
//!   since 1.0.0
//!   group string
//!   complexity O(1)
//!   arg condition oneof since=2.6.12 optional
//!     arg nx pure-token token=NX
//! ```
//! Subcommands are blocks of their own (`command client|list`), nested under their parent
//! in the replies as Redis nests them.

use std::collections::HashMap;
use std::sync::LazyLock;

use resp::ReplyBuf;

/// One command's (or subcommand's) documentation.
#[derive(Debug, Default, PartialEq)]
pub struct Doc {
    /// Lowercase, `parent|sub` for a subcommand.
    pub name: &'static str,
    /// `summary`, `since`, `group`, `complexity`, `deprecated_since`, `replaced_by`, in
    /// Redis's order, each when given.
    fields: Vec<(&'static str, &'static str)>,
    doc_flags: Vec<&'static str>,
    args: Vec<Arg>,
}

/// One argument of a command, with its own arguments when it is a `oneof` or a `block`.
#[derive(Debug, Default, PartialEq)]
struct Arg {
    name: &'static str,
    kind: &'static str,
    key_spec_index: Option<i64>,
    token: Option<&'static str>,
    since: Option<&'static str>,
    deprecated_since: Option<&'static str>,
    flags: Vec<&'static str>,
    args: Vec<Arg>,
}

/// The fields a block may give, in the order Redis replies with them.
const FIELDS: [&str; 6] = [
    "summary",
    "since",
    "group",
    "complexity",
    "deprecated_since",
    "replaced_by",
];

/// Argument flags Redis knows.
const ARG_FLAGS: [&str; 3] = ["optional", "multiple", "multiple_token"];

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("command docs line {line}: {what}")]
pub struct ParseError {
    line: usize,
    what: &'static str,
}

/// Parses the docs text (format in the module's docs).
pub fn parse(text: &'static str) -> Result<Vec<Doc>, ParseError> {
    let mut docs: Vec<Doc> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let fail = |what| ParseError { line: i + 1, what };
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let content = raw.trim_start_matches(' ');
        let indent = raw.len() - content.len();
        if indent % 2 != 0 {
            return Err(fail("indentation is not a multiple of two spaces"));
        }
        let (word, rest) = content.split_once(' ').unwrap_or((content, ""));
        if indent == 0 {
            if word != "command" || rest.is_empty() {
                return Err(fail("expected `command NAME`"));
            }
            docs.push(Doc {
                name: rest,
                ..Doc::default()
            });
            continue;
        }
        let doc = docs.last_mut().ok_or(fail("a field outside a command"))?;
        match word {
            "arg" => {
                let arg = parse_arg(rest).ok_or(fail("bad argument"))?;
                let siblings = arg_list_at(&mut doc.args, indent / 2 - 1)
                    .ok_or(fail("argument indented under no oneof or block"))?;
                siblings.push(arg);
            }
            _ if indent != 2 => return Err(fail("command fields are indented two spaces")),
            "doc_flags" => doc.doc_flags = rest.split(' ').collect(),
            field => {
                let order = FIELDS.iter().position(|f| *f == field);
                let order = order.ok_or(fail("unknown field"))?;
                let last = doc
                    .fields
                    .last()
                    .and_then(|(f, _)| FIELDS.iter().position(|x| x == f));
                if last.is_some_and(|last| last >= order) || !doc.args.is_empty() {
                    return Err(fail("fields out of order"));
                }
                doc.fields.push((FIELDS[order], rest));
            }
        }
    }
    Ok(docs)
}

/// The list an argument at `depth` (0: the command's own) joins: the arguments of the last
/// argument one level up, which must be a `oneof` or a `block`.
fn arg_list_at(args: &mut Vec<Arg>, depth: usize) -> Option<&mut Vec<Arg>> {
    if depth == 0 {
        return Some(args);
    }
    let parent = args.last_mut()?;
    if !matches!(parent.kind, "oneof" | "block") {
        return None;
    }
    arg_list_at(&mut parent.args, depth - 1)
}

fn parse_arg(text: &'static str) -> Option<Arg> {
    let mut words = text.split(' ');
    let mut arg = Arg {
        name: words.next().filter(|w| !w.is_empty())?,
        kind: words.next()?,
        ..Arg::default()
    };
    for word in words {
        match word.split_once('=') {
            Some(("token", v)) => arg.token = Some(v),
            Some(("key_spec", v)) => arg.key_spec_index = Some(v.parse().ok()?),
            Some(("since", v)) => arg.since = Some(v),
            Some(("deprecated_since", v)) => arg.deprecated_since = Some(v),
            None if ARG_FLAGS.contains(&word) => arg.flags.push(word),
            _ => return None,
        }
    }
    Some(arg)
}

/// The compiled-in docs by name, subcommands listed under their parents.
pub struct Docs {
    by_name: HashMap<&'static str, Doc>,
    subcommands: HashMap<&'static str, Vec<&'static str>>,
}

static DOCS: LazyLock<Docs> = LazyLock::new(|| {
    let docs = parse(include_str!("command_docs.txt")).unwrap_or_else(|e| {
        // The unit tests parse the same text: this is a build that skipped them.
        tracing::error!("{e}; COMMAND DOCS answers without docs");
        Vec::new()
    });
    let mut subcommands: HashMap<&str, Vec<&str>> = HashMap::new();
    for doc in &docs {
        if let Some((parent, _)) = doc.name.split_once('|') {
            subcommands.entry(parent).or_default().push(doc.name);
        }
    }
    Docs {
        by_name: docs.into_iter().map(|d| (d.name, d)).collect(),
        subcommands,
    }
});

pub fn docs() -> &'static Docs {
    &DOCS
}

impl Docs {
    pub fn get(&self, name: &str) -> Option<&Doc> {
        self.by_name.get(name)
    }

    /// Writes `name`'s docs as Redis does: a map of its fields, arguments and subcommands
    /// (an empty map for a command without docs).
    pub fn write(&self, name: &str, out: &mut ReplyBuf) {
        let Some(doc) = self.get(name) else {
            out.map(0);
            return;
        };
        let subs = self.subcommands.get(name).map_or(&[][..], |s| &s[..]);
        out.map(
            doc.fields.len()
                + !doc.doc_flags.is_empty() as usize
                + !doc.args.is_empty() as usize
                + !subs.is_empty() as usize,
        );
        // doc_flags go between complexity and deprecated_since.
        let split = doc
            .fields
            .iter()
            .position(|(f, _)| matches!(*f, "deprecated_since" | "replaced_by"))
            .unwrap_or(doc.fields.len());
        write_fields(&doc.fields[..split], out);
        if !doc.doc_flags.is_empty() {
            out.bulk(b"doc_flags");
            write_flags(&doc.doc_flags, out);
        }
        write_fields(&doc.fields[split..], out);
        if !doc.args.is_empty() {
            out.bulk(b"arguments");
            write_args(&doc.args, out);
        }
        if !subs.is_empty() {
            out.bulk(b"subcommands");
            out.map(subs.len());
            for sub in subs {
                out.bulk(sub.as_bytes());
                self.write(sub, out);
            }
        }
    }
}

fn write_fields(fields: &[(&str, &str)], out: &mut ReplyBuf) {
    for (field, value) in fields {
        out.bulk(field.as_bytes());
        out.bulk(value.as_bytes());
    }
}

/// Flags are a set of status replies, as Redis gives them.
fn write_flags(flags: &[&str], out: &mut ReplyBuf) {
    out.set(flags.len());
    for flag in flags {
        out.simple(flag);
    }
}

fn write_args(args: &[Arg], out: &mut ReplyBuf) {
    out.array(args.len());
    for arg in args {
        let optional = [
            arg.key_spec_index.is_some(),
            arg.token.is_some(),
            arg.since.is_some(),
            arg.deprecated_since.is_some(),
            !arg.flags.is_empty(),
            !arg.args.is_empty(),
        ];
        out.map(2 + optional.iter().filter(|x| **x).count());
        out.bulk(b"name");
        out.bulk(arg.name.as_bytes());
        out.bulk(b"type");
        out.bulk(arg.kind.as_bytes());
        if let Some(index) = arg.key_spec_index {
            out.bulk(b"key_spec_index");
            out.int(index);
        }
        let texts = [
            ("token", arg.token),
            ("since", arg.since),
            ("deprecated_since", arg.deprecated_since),
        ];
        for (field, value) in texts {
            if let Some(value) = value {
                out.bulk(field.as_bytes());
                out.bulk(value.as_bytes());
            }
        }
        if !arg.flags.is_empty() {
            out.bulk(b"flags");
            write_flags(&arg.flags, out);
        }
        if !arg.args.is_empty() {
            out.bulk(b"arguments");
            write_args(&arg.args, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_arguments_and_fields_are_read() {
        let docs = parse(
            "# a comment\ncommand set\n  summary Sets a key.\n  since 1.0.0\n  group string\n  arg key key key_spec=0\n  arg condition oneof since=2.6.12 optional\n    arg nx pure-token token=NX\n  arg get pure-token token=GET optional\n",
        )
        .unwrap();
        let set = &docs[0];
        assert_eq!(set.name, "set");
        assert_eq!(
            set.fields,
            [
                ("summary", "Sets a key."),
                ("since", "1.0.0"),
                ("group", "string")
            ]
        );
        assert_eq!(set.args.len(), 3);
        assert_eq!(set.args[0].key_spec_index, Some(0));
        assert_eq!(set.args[1].args[0].token, Some("NX"));
        assert_eq!(set.args[1].flags, ["optional"]);
    }

    #[test]
    fn bad_lines_are_named() {
        let line = |text| parse(text).unwrap_err().line;
        assert_eq!(line("command a\n  arg x pure-token\n    arg y string\n"), 3);
        assert_eq!(line("command a\n  since 1.0.0\n  summary late\n"), 3);
        assert_eq!(line("command a\n   since 1.0.0\n"), 2);
        assert_eq!(line("  since 1.0.0\n"), 1);
        assert_eq!(line("command a\n  arg x string bogus\n"), 2);
    }

    #[test]
    fn the_compiled_in_docs_parse_and_cover_every_command() {
        let docs = parse(include_str!("command_docs.txt")).unwrap();
        let names: std::collections::HashSet<_> = docs.iter().map(|d| d.name).collect();
        for spec in keyspace::commands() {
            assert!(names.contains(spec.name), "no docs for {}", spec.name);
        }
        for (parent, subs) in crate::commands::SUBCOMMANDS {
            for sub in *subs {
                let name = format!("{parent}|{sub}");
                assert!(names.contains(name.as_str()), "no docs for {name}");
            }
        }
    }
}
