//! `--mode command`: one command line sent over and over, as redis-benchmark's
//! `-- COMMAND ARGS` form does, with each `__rand_int__` in an argument replaced by a random
//! id below `--keys` (zero-padded to 12 digits, as redis-benchmark writes it). Unpipelined,
//! redis-benchmark spends as much CPU per request as either server (it re-arms its event
//! loop with several `epoll_ctl` calls per request), so on two cores it measures itself;
//! this client sends and reads with one system call each, which leaves the server's core
//! as the bottleneck.

use resp::Frame;

use crate::conn::Conn;
use crate::keys;
use crate::workload::Counts;

/// What redis-benchmark replaces with a random id.
const PLACEHOLDER: &[u8] = b"__rand_int__";

/// The command line, split where random ids go.
#[derive(Debug)]
pub struct Template {
    /// Each argument as the pieces between its placeholders (one piece: no placeholder).
    args: Vec<Vec<Vec<u8>>>,
    /// Random ids are drawn below this.
    keys: u64,
}

impl Template {
    /// `keys` > 0; `args` names the command first.
    pub fn new(args: &[String], keys: u64) -> anyhow::Result<Template> {
        anyhow::ensure!(!args.is_empty(), "--mode command needs a command after --");
        anyhow::ensure!(keys > 0, "--keys must be 1 or more");
        let args = args
            .iter()
            .map(|arg| split_placeholders(arg.as_bytes()))
            .collect();
        Ok(Template { args, keys })
    }

    /// Writes one command line into `line` (one buffer per argument, reused).
    pub fn render(&self, rng: &mut fastrand::Rng, line: &mut Vec<Vec<u8>>) {
        line.resize_with(self.args.len(), Vec::new);
        for (pieces, out) in self.args.iter().zip(line.iter_mut()) {
            out.clear();
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    keys::write_id(rng.u64(..self.keys), out);
                }
                out.extend_from_slice(piece);
            }
        }
    }
}

fn split_placeholders(arg: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut rest = arg;
    while let Some(at) = rest
        .windows(PLACEHOLDER.len())
        .position(|w| w == PLACEHOLDER)
    {
        pieces.push(rest[..at].to_vec());
        rest = &rest[at + PLACEHOLDER.len()..];
    }
    pieces.push(rest.to_vec());
    pieces
}

/// Sends `total` commands on `conn`, `pipeline` per write, and reads every reply (each
/// command is one operation).
pub async fn run(
    conn: &mut Conn,
    template: &Template,
    rng: &mut fastrand::Rng,
    pipeline: u64,
    total: u64,
) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    let mut line = Vec::new();
    while counts.commands < total {
        let size = (total - counts.commands).min(pipeline);
        for _ in 0..size {
            template.render(rng, &mut line);
            let args: Vec<&[u8]> = line.iter().map(Vec::as_slice).collect();
            conn.queue(&args);
        }
        conn.send().await?;
        for _ in 0..size {
            if let Frame::Error(message) = conn.reply().await? {
                counts.error(message);
            }
        }
        counts.commands += size;
        counts.operations += size;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(args: &[&str], keys: u64) -> Template {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Template::new(&args, keys).unwrap()
    }

    #[test]
    fn placeholders_become_padded_ids_below_the_key_count() {
        let t = template(&["SETBIT", "bits:__rand_int__", "4095", "1"], 3);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut line = Vec::new();
        let mut seen = [false; 3];
        for _ in 0..100 {
            t.render(&mut rng, &mut line);
            assert_eq!(line.len(), 4);
            assert_eq!(line[0], b"SETBIT");
            assert_eq!(&line[1][..5], b"bits:");
            assert_eq!(line[1].len(), 5 + keys::KEY_ID_DIGITS);
            let id: usize = std::str::from_utf8(&line[1][5..]).unwrap().parse().unwrap();
            assert!(id < 3, "id {id} not below the key count");
            seen[id] = true;
            assert_eq!(&line[2..], [b"4095".to_vec(), b"1".to_vec()]);
        }
        assert_eq!(seen, [true; 3], "every id below the key count comes up");
    }

    #[test]
    fn every_placeholder_of_an_argument_is_replaced() {
        let t = template(&["x__rand_int__y__rand_int__", "__rand_int__"], 1);
        let mut line = Vec::new();
        t.render(&mut fastrand::Rng::with_seed(1), &mut line);
        assert_eq!(line[0], b"x000000000000y000000000000");
        assert_eq!(line[1], b"000000000000");
    }

    #[test]
    fn an_empty_command_is_refused() {
        let e = Template::new(&[], 10).unwrap_err();
        assert!(e.to_string().contains("needs a command"), "{e}");
    }
}
