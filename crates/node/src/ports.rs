//! Loopback ports for nodes laid out with fixed addresses (`trustedge simulate`, `demo`,
//! `bench ledger`, and the tests that start nodes): their ports are written into each node's
//! configuration, so they are chosen before any node binds them.
//!
//! They are probed below Linux's ephemeral range (32768–60999 by default). A port in that
//! range, probed free (or handed out by `bind(…:0)`), can be given to any outgoing
//! connection (a node dialling a peer, a client) before its node binds it: a simulation once
//! failed with "address already in use" on port 34228 that way.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lowest port probed.
const FIRST: u16 = 20_000;
/// One past the highest port handed out (below the ephemeral range).
const END: u16 = 32_000;

/// A base port with `count` consecutive free loopback ports below the ephemeral range,
/// probed from a start spread by `seed` and the process id (so concurrent runs rarely
/// probe the same ports).
pub fn free_consecutive(count: u16, seed: u64) -> std::io::Result<u16> {
    let span = u64::from(END.saturating_sub(FIRST).saturating_sub(count));
    if span == 0 {
        return Err(std::io::Error::other(format!(
            "{count} consecutive ports do not fit below {END}"
        )));
    }
    let mut offset = (seed.wrapping_mul(7919) ^ u64::from(std::process::id())) % span;
    for _ in 0..200 {
        let base = FIRST + offset as u16;
        if (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
        offset = (offset + u64::from(count) * 7 + 1) % span;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no {count} consecutive free ports on 127.0.0.1 in {FIRST}..{END}"),
    ))
}

/// One free loopback port below the ephemeral range. Every probe in a process takes the
/// next port of one shared counter (spread by the process id), so two calls never return
/// the same port, even before either is bound.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let span = u64::from(END - FIRST);
    let spread = u64::from(std::process::id()).wrapping_mul(97);
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (spread.wrapping_add(offset) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {FIRST}..{END}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_and_below_the_ephemeral_range() {
        let base = free_consecutive(13, 7).unwrap();
        assert!(base >= FIRST && base + 13 <= END, "{base}");
        for i in 0..13 {
            assert!(TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        }
        assert!(free_consecutive(END, 1).is_err());
        let (a, b) = (free_port().unwrap(), free_port().unwrap());
        let ours = FIRST..END;
        assert!(ours.contains(&a) && ours.contains(&b) && a != b, "{a} {b}");
    }
}
