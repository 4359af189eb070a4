//! Elevated-risk windows become aerosol alerts, under a pseudonymous venue id.
//!
//! # Venue ids
//! A venue (a room with an air-quality device and a BLE beacon) holds a 32-byte random
//! secret that never leaves its edge. Each UTC day it broadcasts a 16-byte rolling id
//! derived from the secret and the day number (`unix_s / 86400`):
//!
//! `VenueId = SHA-256(len(tag) ‖ tag ‖ secret ‖ day as u32 big-endian)[0..16]`,
//! with `tag = "TrustEdge/aerosol/venue-id/v1"`.
//!
//! A domain-separated (tagged) hash is enough here: the secret is already a uniform key, so
//! HKDF's extract step adds nothing, and SHA-256 is a PRF on it for this use. Without the
//! secret, two days' ids of one venue cannot be linked, and an id says nothing about the
//! venue's name or place (like GAEN's rolling proximity identifiers).
//!
//! # Alerts and presence
//! The edge scores each room's windows ([`crate::risk::estimate_windows`]); a window whose
//! probability reaches the rule's threshold becomes an [`AerosolAlert`] (venue id of that
//! day, start, end, probability) — the event published on the ledger. It carries no name,
//! place or sensor stream.
//!
//! Presence is matched on the device, as for exposure notices: a phone keeps the venue ids
//! it heard from beacons (or the check-in pseudonyms it scanned) with the time it heard
//! them ([`HeardBeacon`]), and on each new alert checks whether it heard that venue id
//! during the window ([`was_present`]). Nothing about the device leaves it; the ledger never
//! learns who was in the room.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AerosolError, fraction};

/// Seconds in a UTC day.
pub const DAY_S: u64 = 86_400;
/// Domain tag of the venue-id derivation.
pub const VENUE_ID_TAG: &[u8] = b"TrustEdge/aerosol/venue-id/v1";

/// A venue's secret (32 random bytes, kept on its edge).
#[derive(Clone, PartialEq, Eq)]
pub struct VenueSecret(pub [u8; 32]);

impl std::fmt::Debug for VenueSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VenueSecret(..)")
    }
}

/// A venue's pseudonymous id for one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VenueId(pub [u8; 16]);

impl VenueId {
    /// The id `secret` broadcasts on `day` (days since the Unix epoch, UTC).
    pub fn derive(secret: &VenueSecret, day: u32) -> Self {
        let mut h = Sha256::new();
        // The tag is a constant of 29 bytes: its length fits in one byte.
        h.update([VENUE_ID_TAG.len() as u8]);
        h.update(VENUE_ID_TAG);
        h.update(secret.0);
        h.update(day.to_be_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }

    /// The id `secret` broadcasts at `t_s` (Unix seconds).
    pub fn at(secret: &VenueSecret, t_s: u64) -> Self {
        Self::derive(secret, day_of(t_s))
    }
}

/// Day number (UTC) of a Unix time, saturating at `u32::MAX`.
pub fn day_of(t_s: u64) -> u32 {
    u32::try_from(t_s / DAY_S).unwrap_or(u32::MAX)
}

/// A scored window of one venue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskWindow {
    /// The venue's id for the window's day.
    pub venue: VenueId,
    /// Start, Unix seconds (inclusive).
    pub start_s: u64,
    /// End, Unix seconds (exclusive).
    pub end_s: u64,
    /// Probability of infection in the window, in [0, 1].
    pub probability: f64,
}

/// The alert event: what goes on the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AerosolAlert {
    /// The venue's id for the alert's day.
    pub venue: VenueId,
    /// Start, Unix seconds (inclusive).
    pub start_s: u64,
    /// End, Unix seconds (exclusive).
    pub end_s: u64,
    /// Probability of infection over the alert's span, in [0, 1].
    pub probability: f64,
}

/// The threshold rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// A window alerts when its probability is at least this.
    pub threshold: f64,
    /// Longest accepted window, seconds.
    pub max_window_s: u64,
}

impl Default for AlertRule {
    /// Alert at a 1 % per-window probability of infection; windows up to 6 h.
    fn default() -> Self {
        Self {
            threshold: 0.01,
            max_window_s: 6 * 3600,
        }
    }
}

impl AlertRule {
    /// Checks a window: non-empty, at most `max_window_s`, within one UTC day (its venue id
    /// is the day's), probability in [0, 1].
    pub fn validate(&self, w: &RiskWindow) -> Result<(), AerosolError> {
        fraction("threshold", self.threshold)?;
        fraction("probability", w.probability)?;
        let reason = if w.end_s <= w.start_s {
            Some("end must be after start")
        } else if w.end_s - w.start_s > self.max_window_s {
            Some("longer than the rule's maximum window")
        } else if day_of(w.start_s) != day_of(w.end_s - 1) {
            Some("crosses a UTC day boundary (the venue id is per day)")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(AerosolError::InvalidWindow {
                start_s: w.start_s,
                end_s: w.end_s,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The decision for one window: an alert iff its probability reaches the threshold.
    pub fn decide(&self, w: &RiskWindow) -> Result<Option<AerosolAlert>, AerosolError> {
        self.validate(w)?;
        Ok((w.probability >= self.threshold).then_some(AerosolAlert {
            venue: w.venue,
            start_s: w.start_s,
            end_s: w.end_s,
            probability: w.probability,
        }))
    }

    /// Alerts for a batch of windows: elevated windows of one venue that touch or overlap
    /// are merged into one alert whose probability is that of being infected in any of
    /// them, `1 − Π(1 − pᵢ)` (independent windows). Output sorted by venue, then start.
    pub fn alerts(&self, windows: &[RiskWindow]) -> Result<Vec<AerosolAlert>, AerosolError> {
        let mut elevated = Vec::new();
        for w in windows {
            if let Some(a) = self.decide(w)? {
                elevated.push(a);
            }
        }
        elevated.sort_by_key(|a| (a.venue, a.start_s, a.end_s));
        let mut out: Vec<AerosolAlert> = Vec::new();
        for a in elevated {
            match out.last_mut() {
                Some(last) if last.venue == a.venue && a.start_s <= last.end_s => {
                    last.end_s = last.end_s.max(a.end_s);
                    last.probability = 1.0 - (1.0 - last.probability) * (1.0 - a.probability);
                }
                _ => out.push(a),
            }
        }
        Ok(out)
    }
}

/// A venue id a device heard (from a beacon, or a check-in code it scanned), and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeardBeacon {
    /// The venue id heard.
    pub venue: VenueId,
    /// When, Unix seconds (device clock).
    pub t_s: u64,
}

/// Whether a device was present during an alert: it heard the alert's venue id within the
/// window widened by `tolerance_s` on each side (device clocks and beacon intervals).
pub fn was_present(alert: &AerosolAlert, heard: &[HeardBeacon], tolerance_s: u64) -> bool {
    let from = alert.start_s.saturating_sub(tolerance_s);
    let until = alert.end_s.saturating_add(tolerance_s);
    heard
        .iter()
        .any(|h| h.venue == alert.venue && h.t_s >= from && h.t_s < until)
}
