//! The device side of GAEN: the TEK schedule, the advertisement and the log of what the
//! device broadcast.
//!
//! A [`Broadcaster`] is driven by the caller's clock and random source
//! ([`Broadcaster::advertise`] takes the Unix time and 32 fresh random bytes), like a
//! phone's Exposure Notification service:
//!
//! - the TEK changes at each day boundary (ENIN multiple of [`TEK_ROLLING_PERIOD`]); the
//!   new key's rolling start is the current ENIN rounded down to 144, and a key is never
//!   used for a second day (a new key equal to any kept key is refused);
//! - the RPI changes whenever the Bluetooth address would: every 10 to 20 minutes, at an
//!   offset drawn per rotation from the caller's random bytes, and at every day boundary.
//!   The RPI of a rotation is derived from the current TEK for the ENIN of the rotation
//!   time, so two rotations (≥ 10 min apart) never share an ENIN or an RPI;
//! - past TEKs are kept for [`RETENTION_DAYS`] days (the day in progress included) for
//!   [`Broadcaster::diagnosis_keys`], and the RPIs broadcast over the same days are kept in
//!   a bounded [`BroadcastLog`] so the device can match exposure notices against them.

use std::collections::VecDeque;

use crate::diagnosis::{DiagnosisKey, ReportType};
use crate::{
    Aem, Aemk, EnIntervalNumber, INTERVAL_LENGTH_S, Metadata, Rpi, Rpik, TEK_ROLLING_PERIOD,
    TemporaryExposureKey,
};

/// Days of TEKs and broadcast RPIs a device keeps (GAEN: 14, the day in progress included).
pub const RETENTION_DAYS: u32 = 14;

/// Seconds in one TEK day (144 intervals of 10 minutes).
pub const DAY_S: u64 = TEK_ROLLING_PERIOD as u64 * INTERVAL_LENGTH_S;

/// Shortest time between two RPI rotations (GAEN: the Bluetooth address changes every
/// 10–20 minutes).
pub const MIN_ROTATION_S: u64 = 600;

/// Longest time between two RPI rotations.
pub const MAX_ROTATION_S: u64 = 1200;

/// Metadata version byte of GAEN v1.0 metadata (major 1 in the top two bits).
pub const METADATA_VERSION_1_0: u8 = 0x40;

/// Most records a [`BroadcastLog`] holds: one per rotation, at most 144 rotations a day
/// plus one forced at each day boundary, over [`RETENTION_DAYS`] + 1 days.
pub const MAX_BROADCAST_RECORDS: usize = (RETENTION_DAYS as usize + 1) * 145;

/// Errors of the device key schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The caller's clock went back before the last advertisement; RPIs of an earlier
    /// time would be derived again (advertise again once the clock passes `last_s`).
    #[error("clock went backwards: {now_s} s is before the last advertisement at {last_s} s")]
    ClockWentBackwards {
        /// Time of this call, in Unix seconds.
        now_s: u64,
        /// Time of the latest advertisement, in Unix seconds.
        last_s: u64,
    },
    /// The random bytes for a new day's TEK equal a key already used: the caller's random
    /// source is broken (a TEK must never serve two days).
    #[error("the new TEK equals one already used; the random source repeats")]
    TekReused,
    /// The key schedule refused the time (beyond the last 32-bit interval number).
    #[error(transparent)]
    Crypto(#[from] crate::Error),
}

/// What a device advertises over BLE: RPI ‖ AEM (20 bytes of service data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Advertisement {
    /// The rolling proximity identifier.
    pub rpi: Rpi,
    /// The encrypted metadata (version and TX power).
    pub aem: Aem,
}

impl Advertisement {
    /// The 20-byte wire form: RPI then AEM.
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..16].copy_from_slice(&self.rpi.0);
        out[16..].copy_from_slice(&self.aem.0);
        out
    }

    /// Parses the wire form, which must be 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> crate::Result<Self> {
        if bytes.len() != 20 {
            return Err(crate::Error::Length {
                what: "advertisement",
                expected: 20,
                actual: bytes.len(),
            });
        }
        Ok(Advertisement {
            rpi: Rpi::from_slice(&bytes[..16])?,
            aem: Aem::from_slice(&bytes[16..])?,
        })
    }
}

/// One RPI the device broadcast: from its rotation until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastRecord {
    /// The RPI.
    pub rpi: Rpi,
    /// The interval it was derived for (the interval of `from_s`).
    pub enin: EnIntervalNumber,
    /// Unix time of the rotation that started it.
    pub from_s: u64,
    /// Unix time of the latest advertisement of it.
    pub until_s: u64,
}

/// The RPIs a device broadcast over the last [`RETENTION_DAYS`] days, oldest first, at
/// most [`MAX_BROADCAST_RECORDS`] of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastLog {
    records: VecDeque<BroadcastRecord>,
}

impl BroadcastLog {
    /// The records, oldest first.
    pub fn records(&self) -> impl ExactSizeIterator<Item = &BroadcastRecord> {
        self.records.iter()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing was broadcast yet (or everything expired).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record of `rpi`, if the device broadcast it within the retention window.
    pub fn find(&self, rpi: &Rpi) -> Option<&BroadcastRecord> {
        self.records.iter().find(|r| r.rpi == *rpi)
    }

    /// The record being broadcast (or last broadcast) at `time_s`.
    pub fn at(&self, time_s: u64) -> Option<&BroadcastRecord> {
        // Records are in time order and do not overlap: the last one started by `time_s`.
        let i = self.records.partition_point(|r| r.from_s <= time_s);
        i.checked_sub(1).and_then(|i| self.records.get(i))
    }

    fn push(&mut self, record: BroadcastRecord) {
        self.records.push_back(record);
        while self.records.len() > MAX_BROADCAST_RECORDS {
            self.records.pop_front();
        }
    }

    /// Drops the records that ended before `cutoff_s`.
    fn prune(&mut self, cutoff_s: u64) {
        while self.records.front().is_some_and(|r| r.until_s < cutoff_s) {
            self.records.pop_front();
        }
    }
}

/// A TEK with its rolling start and the keys derived from it.
#[derive(Clone, Copy)]
struct DayKey {
    tek: TemporaryExposureKey,
    rolling_start: EnIntervalNumber,
    rpik: Rpik,
    aemk: Aemk,
}

/// The RPI on air and when it is replaced.
#[derive(Debug, Clone, Copy)]
struct OnAir {
    advertisement: Advertisement,
    next_rotation_s: u64,
}

/// The device's GAEN key schedule: current TEK, 14 days of past TEKs, the RPI on air and
/// the log of broadcast RPIs. See the [module documentation](self).
pub struct Broadcaster {
    metadata: Metadata,
    /// Kept TEKs, oldest first; the last one is the current day's.
    keys: VecDeque<DayKey>,
    on_air: Option<OnAir>,
    last_s: u64,
    log: BroadcastLog,
}

impl std::fmt::Debug for Broadcaster {
    // The TEKs are secret until the user shares them: show only counts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcaster")
            .field("metadata", &self.metadata)
            .field("keys", &self.keys.len())
            .field("on_air", &self.on_air)
            .field("log", &self.log.len())
            .finish()
    }
}

impl Broadcaster {
    /// A broadcaster advertising GAEN v1.0 metadata with the device's calibrated TX power
    /// (dBm). It has no key until the first [`advertise`](Self::advertise).
    pub fn new(tx_power_dbm: i8) -> Self {
        Broadcaster {
            metadata: Metadata {
                version: METADATA_VERSION_1_0,
                tx_power_dbm,
                reserved: [0, 0],
            },
            keys: VecDeque::new(),
            on_air: None,
            last_s: 0,
            log: BroadcastLog::default(),
        }
    }

    /// The metadata carried (encrypted) in every advertisement.
    pub fn metadata(&self) -> Metadata {
        self.metadata
    }

    /// What to advertise at `now_s` (Unix seconds). `random` must be 32 fresh bytes of a
    /// cryptographically secure RNG on every call: bytes 0..16 become the new TEK when a
    /// day starts, bytes 16..24 pick the next rotation time in
    /// [[`MIN_ROTATION_S`], [`MAX_ROTATION_S`]] when the RPI rotates. Call it at least as
    /// often as the radio refreshes its advertising data (e.g. every minute).
    pub fn advertise(
        &mut self,
        now_s: u64,
        random: [u8; 32],
    ) -> Result<Advertisement, BroadcastError> {
        if now_s < self.last_s {
            return Err(BroadcastError::ClockWentBackwards {
                now_s,
                last_s: self.last_s,
            });
        }
        let enin = EnIntervalNumber::from_unix_seconds(now_s)?;
        let day = enin.rolling_start();

        let mut rotate = match self.on_air {
            None => true,
            Some(on_air) => now_s >= on_air.next_rotation_s,
        };
        if self.keys.back().is_none_or(|k| k.rolling_start != day) {
            let mut tek_bytes = [0u8; 16];
            tek_bytes.copy_from_slice(&random[..16]);
            let tek = TemporaryExposureKey::from_random_bytes(tek_bytes);
            if self.keys.iter().any(|k| k.tek == tek) {
                return Err(BroadcastError::TekReused);
            }
            self.keys.push_back(DayKey {
                tek,
                rolling_start: day,
                rpik: tek.rpik()?,
                aemk: tek.aemk()?,
            });
            // Every RPI of a day derives from that day's TEK: rotate with the key.
            rotate = true;
        }
        self.prune(day);

        let advertisement = match (rotate, self.on_air) {
            (false, Some(on_air)) => on_air.advertisement,
            _ => {
                let Some(key) = self.keys.back().copied() else {
                    // Unreachable: a key for `day` was pushed above.
                    return Err(BroadcastError::TekReused);
                };
                let rpi = key.rpik.rpi(enin);
                let advertisement = Advertisement {
                    rpi,
                    aem: key.aemk.encrypt(&rpi, self.metadata),
                };
                let mut offset = [0u8; 8];
                offset.copy_from_slice(&random[16..24]);
                let span = MAX_ROTATION_S - MIN_ROTATION_S + 1;
                let next = now_s + MIN_ROTATION_S + u64::from_le_bytes(offset) % span;
                self.on_air = Some(OnAir {
                    advertisement,
                    next_rotation_s: next,
                });
                self.log.push(BroadcastRecord {
                    rpi,
                    enin,
                    from_s: now_s,
                    until_s: now_s,
                });
                advertisement
            }
        };
        if let Some(last) = self.log.records.back_mut() {
            last.until_s = now_s;
        }
        self.last_s = now_s;
        Ok(advertisement)
    }

    /// Drops the keys and records older than [`RETENTION_DAYS`] days before `day`.
    fn prune(&mut self, day: EnIntervalNumber) {
        let oldest = oldest_kept_day(day);
        while self
            .keys
            .front()
            .is_some_and(|k| k.rolling_start.0 < oldest)
        {
            self.keys.pop_front();
        }
        self.log
            .prune(u64::from(oldest).saturating_mul(INTERVAL_LENGTH_S));
    }

    /// Unix time of the next RPI rotation, if something is on air.
    pub fn next_rotation_s(&self) -> Option<u64> {
        self.on_air.map(|a| a.next_rotation_s)
    }

    /// The TEKs kept, oldest first, with their rolling starts (the last is the current one).
    pub fn keys(&self) -> impl Iterator<Item = (TemporaryExposureKey, EnIntervalNumber)> + '_ {
        self.keys.iter().map(|k| (k.tek, k.rolling_start))
    }

    /// The log of RPIs broadcast over the retention window.
    pub fn log(&self) -> &BroadcastLog {
        &self.log
    }

    /// The diagnosis keys to upload once the user is confirmed at `now_s`: every kept TEK
    /// whose day started within the last [`RETENTION_DAYS`] days, oldest first.
    ///
    /// Each key has rolling period 144, the current day's included: like GAEN since
    /// v1.5, the key still in use is shared whole, and the ledger embargoes a key until
    /// its period has ended (issue 4 §4), so its RPIs are never published while still on
    /// air. (A device wanting to stop being matchable should rotate, which GAEN does
    /// after sharing; this type leaves that to the next day boundary.)
    ///
    /// `days_since_onset` is set when the symptom-onset time is known (Unix seconds), as
    /// the whole days from the onset day to the key's day, clamped to GAEN's −14..=14.
    pub fn diagnosis_keys(
        &self,
        now_s: u64,
        report_type: ReportType,
        symptom_onset_s: Option<u64>,
    ) -> Result<Vec<DiagnosisKey>, BroadcastError> {
        let oldest = oldest_kept_day(EnIntervalNumber::from_unix_seconds(now_s)?.rolling_start());
        let onset_day = symptom_onset_s
            .map(|s| EnIntervalNumber::from_unix_seconds(s).map(|e| e.rolling_start().0))
            .transpose()?;
        Ok(self
            .keys
            .iter()
            .filter(|k| k.rolling_start.0 >= oldest && k.rolling_start.unix_seconds() <= now_s)
            .map(|k| {
                let mut key = DiagnosisKey::confirmed(k.tek, k.rolling_start);
                key.report_type = report_type;
                key.days_since_onset = onset_day.map(|onset| {
                    let days = (i64::from(k.rolling_start.0) - i64::from(onset))
                        / i64::from(TEK_ROLLING_PERIOD);
                    // Clamped to −14..=14, so the cast cannot truncate.
                    days.clamp(-14, 14) as i32
                });
                key
            })
            .collect())
    }
}

/// Rolling start of the oldest day kept when `day` is the current day's rolling start.
fn oldest_kept_day(day: EnIntervalNumber) -> u32 {
    day.0
        .saturating_sub((RETENTION_DAYS - 1) * TEK_ROLLING_PERIOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rnd(i: u64) -> [u8; 32] {
        let mut r = [0u8; 32];
        r[..8].copy_from_slice(&i.to_le_bytes());
        r[8..16].copy_from_slice(&(i ^ 0xdead_beef).to_le_bytes());
        r[16..24].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
        r
    }

    #[test]
    fn advertisement_round_trips() {
        let mut b = Broadcaster::new(-8);
        let ad = b.advertise(1_600_000_000, rnd(1)).unwrap();
        assert_eq!(Advertisement::from_slice(&ad.to_bytes()).unwrap(), ad);
        assert!(Advertisement::from_slice(&[0; 19]).is_err());
    }

    #[test]
    fn clock_going_back_is_refused() {
        let mut b = Broadcaster::new(0);
        b.advertise(1_600_000_000, rnd(1)).unwrap();
        assert_eq!(
            b.advertise(1_599_999_999, rnd(2)),
            Err(BroadcastError::ClockWentBackwards {
                now_s: 1_599_999_999,
                last_s: 1_600_000_000
            })
        );
    }

    #[test]
    fn a_repeated_tek_is_refused() {
        let mut b = Broadcaster::new(0);
        let t0 = 1_600_000_000 - 1_600_000_000 % DAY_S;
        b.advertise(t0, rnd(1)).unwrap();
        assert_eq!(
            b.advertise(t0 + DAY_S, rnd(1)),
            Err(BroadcastError::TekReused)
        );
    }
}
