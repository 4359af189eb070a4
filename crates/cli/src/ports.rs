//! Loopback ports for networks a command lays out with fixed addresses (`simulate`, `demo`,
//! `bench ledger`): `init` writes each node's ports into its configuration, so they are
//! chosen before any node binds them.
//!
//! They are probed below Linux's ephemeral range (32768–60999 by default). A port in that
//! range, probed free, can be handed to any outgoing connection (a node dialling a peer, a
//! client) before its node binds it: a simulation once failed with "address already in use"
//! on port 34228 that way.

use std::net::TcpListener;

/// Lowest port probed.
const FIRST: u16 = 20_000;
/// One past the highest port handed out (below the ephemeral range).
const END: u16 = 32_000;

/// A base port with `count` consecutive free loopback ports below the ephemeral range,
/// probed from a start spread by `seed` and the process id (so concurrent runs rarely
/// probe the same ports).
pub fn free_consecutive(count: u16, seed: u64) -> anyhow::Result<u16> {
    let span = u64::from(END.saturating_sub(FIRST).saturating_sub(count));
    anyhow::ensure!(span > 0, "{count} consecutive ports do not fit below {END}");
    let mut offset = (seed.wrapping_mul(7919) ^ u64::from(std::process::id())) % span;
    for _ in 0..200 {
        let base = FIRST + offset as u16;
        if (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
        offset = (offset + u64::from(count) * 7 + 1) % span;
    }
    anyhow::bail!("no {count} consecutive free ports on 127.0.0.1 in {FIRST}..{END}")
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
    }
}
