//! Child node processes that are stopped whatever happens to the parent's control flow.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a child gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running `trustedge node --home …` child. Dropping it stops the process: politely with
/// SIGTERM first, then SIGKILL; so an early return or a panic in the demo never leaves a node
/// behind.
pub struct NodeProcess {
    child: Option<Child>,
}

impl NodeProcess {
    /// Starts `exe node --home home`, appending its output to `home/node.log` (a restarted
    /// node's log continues the previous one).
    pub fn spawn(exe: &Path, name: &str, home: &Path) -> anyhow::Result<NodeProcess> {
        let log_path = home.join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let err = log
            .try_clone()
            .context("cannot duplicate the log file handle")?;
        let child = Command::new(exe)
            .arg("node")
            .arg("--home")
            .arg(home)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {} node {name}", exe.display()))?;
        Ok(NodeProcess { child: Some(child) })
    }

    /// The child's process id, while it has not been stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Asks the child to stop (SIGTERM) without waiting; [`NodeProcess::stop`] then waits.
    /// Lets a caller signal many children at once and wait for them together.
    pub fn terminate(&mut self) {
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// If the child has exited, its exit status as text.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// Stops the child: SIGTERM, then SIGKILL after a grace period. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        // std has no portable SIGTERM; the kill(1) utility is on every Unix this runs on.
        // If it is missing, fall through to SIGKILL.
        let termed = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
