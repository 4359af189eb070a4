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
    /// Display name (`validator-0`, …).
    pub name: String,
    child: Option<Child>,
}

impl NodeProcess {
    /// Starts `exe node --home home`, sending its output to `home/node.log`.
    pub fn spawn(exe: &Path, name: &str, home: &Path) -> anyhow::Result<NodeProcess> {
        let log_path = home.join("node.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
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
        Ok(NodeProcess {
            name: name.to_string(),
            child: Some(child),
        })
    }

    /// If the child has exited, its exit status as text.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("{} {status}", self.name)),
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
