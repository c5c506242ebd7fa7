//! Starting servers on free ports and talking raw RESP to them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resp::{Frame, Limits};

pub const CACHEPLANE: &str = env!("CARGO_BIN_EXE_cacheplane");

/// How long a server may take to accept connections before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A server process that is killed when dropped, with its own working directory.
pub struct Server {
    pub port: u16,
    child: Child,
    /// `--dir`: removed on drop when the server made it.
    pub dir: PathBuf,
    owns_dir: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh empty directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "cacheplane-e2e-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Keeps the directory: the caller removes it.
    pub fn into_path(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Server {
    /// Starts `cacheplane node` with redis-server style flags.
    pub fn cacheplane(flags: &[&str]) -> Server {
        Self::spawn(CACHEPLANE, &["node"], flags, None)
    }

    /// Starts `cacheplane node` working in `dir` (kept after the server stops).
    pub fn cacheplane_in(dir: &Path, flags: &[&str]) -> Server {
        Self::spawn(CACHEPLANE, &["node"], flags, Some(dir))
    }

    /// Starts the real redis-server (Debian's 7.0); the test fails if it is not installed.
    pub fn redis(flags: &[&str]) -> Server {
        Self::redis_in_opt(None, flags)
    }

    /// Starts redis-server working in `dir` (kept after the server stops).
    pub fn redis_in(dir: &Path, flags: &[&str]) -> Server {
        Self::redis_in_opt(Some(dir), flags)
    }

    fn redis_in_opt(dir: Option<&Path>, flags: &[&str]) -> Server {
        let mut all = vec!["--save", "", "--appendonly", "no"];
        all.extend_from_slice(flags);
        Self::spawn("redis-server", &[], &all, dir)
    }

    fn spawn(program: &str, pre: &[&str], flags: &[&str], dir: Option<&Path>) -> Server {
        let port = free_port();
        let (dir, owns_dir) = match dir {
            Some(d) => (d.to_path_buf(), false),
            None => (TempDir::new("server").into_path(), true),
        };
        let child = Command::new(program)
            .args(pre)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                dir.to_str().unwrap(),
            ])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {program}: {e} (is it installed? run the README's test command)")
            });
        let server = Server {
            port,
            child,
            dir,
            owns_dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(mut c) = Conn::try_connect(self.port) {
                // With requirepass, PING answers NOAUTH: that still means ready; LOADING
                // (a dump still being read) does not.
                match c.call(&["PING"]) {
                    Some(Frame::Error(e)) if e.starts_with("LOADING") => {}
                    Some(_) => return,
                    None => {}
                }
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "server on port {} did not become ready",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::try_connect(self.port).expect("connect")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A blocking raw RESP connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn try_connect(port: u16) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, args: &[&str]) {
        self.try_send(args).expect("write");
    }

    /// Sends a command; an error when the server is gone (a killed server's socket may
    /// refuse the write before a read would see it closed).
    pub fn try_send(&mut self, args: &[&str]) -> std::io::Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out)
    }

    /// Sends a command with binary arguments and returns its reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Frame {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out).expect("write");
        self.read().expect("reply")
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one reply; `None` when the connection closed.
    pub fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) =
                Frame::parse(&self.buf, &Limits::default()).expect("valid RESP from server")
            {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn call(&mut self, args: &[&str]) -> Option<Frame> {
        self.send(args);
        self.read()
    }

    /// Sends a command and returns its reply, panicking if the connection closed.
    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        self.call(args)
            .unwrap_or_else(|| panic!("connection closed during {args:?}"))
    }

    /// Whether the server closed the connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

pub fn ok() -> Frame {
    Frame::Simple("OK".into())
}

/// One field of an INFO section (`field:value` line), as text.
pub fn info_field(c: &mut Conn, section: &str, field: &str) -> String {
    let Frame::Bulk(info) = c.cmd(&["INFO", section]) else {
        panic!("INFO {section} is not a bulk string")
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .to_string()
}

pub fn err_text(f: &Frame) -> &str {
    match f {
        Frame::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Runs `tests/e2e/python/{script}` with the test environment's Python (the venv that
/// scripts/object-stores.sh prepares); returns its stdout, failing with its output if it
/// fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let python = std::env::var("CACHEPLANE_TEST_PYTHON")
        .expect("CACHEPLANE_TEST_PYTHON: run scripts/test.sh");
    let path = format!(
        "{}/../../tests/e2e/python/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::process::Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Polls `f` every 25 ms until it yields a value; fails after `timeout` naming `what` and
/// the last state `f` reported (its `Err`).
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}{}{last}",
                if last.is_empty() { "" } else { ": " }
            ),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until `f` holds (see [`poll`]).
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    poll(
        what,
        timeout,
        || if f() { Ok(()) } else { Err(String::new()) },
    )
}

/// What a [`Proxy`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwards both ways.
    Up,
    /// Resets new connections and cuts open ones: the store is down.
    Down,
    /// Accepts and then says nothing, ever: a store that does not answer. Held
    /// connections are closed when the link changes again.
    Hold,
    /// Answers the HTTP requests whose method is `method` and whose path contains
    /// `path_contains` with 503 and closes their connection; forwards the rest: one kind
    /// of request failing at a moment the test picks.
    Refuse {
        method: &'static str,
        path_contains: &'static str,
    },
}

/// What a refused request gets back.
const REFUSAL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Whether `chunk`, the start of a request, is one that `link` refuses. Requests on a
/// kept-alive connection follow their predecessor's response, so each begins a read.
fn refuses(link: Link, chunk: &[u8]) -> bool {
    let Link::Refuse {
        method,
        path_contains,
    } = link
    else {
        return false;
    };
    let line = chunk.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    parts.next() == Some(method) && parts.next().is_some_and(|p| p.contains(path_contains))
}

/// A TCP proxy in front of a server that can be cut, held silent and restored, to make an
/// account unreachable or hung and back while a node runs.
pub struct Proxy {
    pub port: u16,
    link: Arc<Mutex<Link>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    refused: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to the `host:port` of `target` (an `http://host:port/...` URL or `host:port`).
    pub fn start(target: &str) -> Proxy {
        let target = target
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let link = Arc::new(Mutex::new(Link::Up));
        let held = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let (flag, hold, refusals) = (link.clone(), held.clone(), refused.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                match *flag.lock().unwrap() {
                    Link::Down => continue, // dropped: the connection is reset
                    Link::Hold => {
                        hold.lock().unwrap().push(client);
                        continue;
                    }
                    Link::Up | Link::Refuse { .. } => {}
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                // Requests flow from the client; a refusal is written back to it.
                let mut requester = Some(client.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (flag, refusals) = (flag.clone(), refusals.clone());
                    let mut answer = requester.take();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let link = *flag.lock().unwrap();
                            if let Some(client) = answer.as_mut()
                                && refuses(link, &buf[..n])
                            {
                                refusals.fetch_add(1, Ordering::SeqCst);
                                let _ = client.write_all(REFUSAL);
                                break;
                            }
                            let forwarding = matches!(link, Link::Up | Link::Refuse { .. });
                            if !forwarding || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            port,
            link,
            held,
            refused,
        }
    }

    /// A proxy to the store at `endpoint` (`http://host:port[/path]`), and the connection
    /// string `conn` of an account there rewritten to reach it through the proxy.
    pub fn in_front_of(conn: &str, endpoint: &str) -> (Proxy, String) {
        let proxy = Proxy::start(endpoint);
        let path = endpoint
            .trim_start_matches("http://")
            .split_once('/')
            .map_or("", |(_, path)| path);
        let through = format!("http://127.0.0.1:{}", proxy.port);
        let through = if path.is_empty() {
            through
        } else {
            format!("{through}/{path}")
        };
        let conn = conn.replace(endpoint, &through);
        (proxy, conn)
    }

    pub fn set(&self, link: Link) {
        *self.link.lock().unwrap() = link;
        if link != Link::Hold {
            self.held.lock().unwrap().clear();
        }
    }

    /// Connections held silent so far.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Requests refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}
