//! Running the binary, with timeouts, and node processes that die with the test.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_trustedge");

/// A finished run of the binary.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The standard output as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A child that is killed when dropped, so that a failing test leaves nothing running.
pub struct Guard(pub Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `trustedge args…`, killing it after `timeout`.
pub fn run(args: &[&str], timeout: Duration) -> Run {
    run_in(None, args, timeout)
}

/// Like [`run`], in directory `dir`.
pub fn run_in(dir: Option<&Path>, args: &[&str], timeout: Duration) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let child = cmd.spawn().expect("spawn trustedge");
    let mut guard = Guard(Some(child));
    let deadline = Instant::now() + timeout;
    loop {
        let done = guard
            .0
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .is_some();
        if done {
            break;
        }
        if Instant::now() > deadline {
            let c = guard.0.take().expect("child");
            let mut c = c;
            let _ = c.kill();
            let out = c.wait_with_output().expect("output");
            panic!(
                "trustedge {args:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = guard.0.take().expect("child");
    let Output {
        status,
        stdout,
        stderr,
    } = c.wait_with_output().expect("output");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A base port such that `n` consecutive loopback ports from it are free right now.
pub fn free_ports(n: u16) -> u16 {
    // Spread tests by time as well (the process id is mixed in by the helper).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    trustedge_node::ports::free_consecutive(n, seed).unwrap()
}

/// Starts `trustedge node --home home`.
pub fn start_node(home: &Path) -> Guard {
    let log = std::fs::File::create(home.join("test-node.log")).expect("log");
    let child = Command::new(BIN)
        .args(["node", "--home"])
        .arg(home)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn node");
    Guard(Some(child))
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
