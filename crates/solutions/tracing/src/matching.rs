//! Matching diagnosis keys against observed RPIs, fast: used by edge nodes over their
//! stored encounters and by devices in pure GAEN mode over their own sighting log.
//!
//! Each key costs one HKDF (its RPIK) and one AES-128 key schedule, then its (up to 144)
//! padded interval blocks are encrypted in one `encrypt_blocks` call, so AES-NI pipelines
//! them, and every RPI is looked up in an [`RpiIndex`]. Nearly every lookup misses, so the
//! index answers misses first: a bit filter of ≥ 32 bits per indexed RPI (512 KiB for
//! 100k RPIs, which stays in a core's L2 cache) is tested for all of a key's RPIs without
//! a branch, and only the few RPIs whose bit is set (about 3 % when absent) go on to an
//! open-addressing table of the RPIs' first 8 bytes (RPIs are uniformly random, so those
//! bytes need no hashing), at most half full, and are confirmed on all 16 bytes. Positions
//! mix in a salt folded from every indexed RPI, so whoever broadcasts some of the RPIs
//! cannot aim them at one probe chain without knowing all the others.
//!
//! A match is kept only when the observation time lies within the RPI's 10-minute interval
//! widened by the clock skew on each side ([`DEFAULT_SKEW_S`], GAEN's ±2 h).

use std::collections::HashSet;

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};

use crate::broadcast::{BroadcastLog, BroadcastRecord};
use crate::diagnosis::{DiagnosisKey, ReportType};
use crate::{EnIntervalNumber, INTERVAL_LENGTH_S, Rpi, Rpik, TEK_ROLLING_PERIOD};

/// Default clock skew accepted between an RPI's interval and its observation: 2 hours,
/// as GAEN.
pub const DEFAULT_SKEW_S: u64 = 2 * 3600;

/// One observed RPI: when it was heard and the caller's id for the row it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Observation {
    /// The RPI heard.
    pub rpi: Rpi,
    /// Unix time of the observation, in seconds.
    pub time_s: u64,
    /// The caller's opaque id (e.g. an encounter row).
    pub id: u64,
}

const EMPTY_SLOT: usize = usize::MAX;

/// An index of observed RPIs for [`match_keys`]. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct RpiIndex {
    /// Observations sorted by (RPI, time, id).
    entries: Vec<Observation>,
    /// Open-addressing table of RPI prefixes (first 8 bytes, little-endian); `empty` marks
    /// a free slot.
    keys: Vec<u64>,
    /// For each used slot, the first entry with that prefix.
    starts: Vec<usize>,
    /// A value no indexed prefix has.
    empty: u64,
    salt: u64,
    shift: u32,
    mask: usize,
    /// Bit filter: bit `hash >> filter_shift` is set for every indexed prefix.
    filter: Vec<u64>,
    filter_shift: u32,
}

fn prefix(rpi: &[u8; 16]) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&rpi[..8]);
    u64::from_le_bytes(p)
}

impl RpiIndex {
    /// Builds the index (O(n log n)); observations of the same RPI may repeat.
    pub fn new(mut observations: Vec<Observation>) -> Self {
        observations.sort_unstable();
        let mut prefixes: Vec<(u64, usize)> = Vec::new();
        let mut salt = 0x243f_6a88_85a3_08d3_u64;
        for (i, o) in observations.iter().enumerate() {
            let p = prefix(&o.rpi.0);
            salt = (salt ^ p ^ prefix(&suffix(&o.rpi.0))).rotate_left(29);
            // Sorted by RPI, so equal prefixes are adjacent: record each prefix's first.
            if prefixes.last().is_none_or(|&(q, _)| q != p) {
                prefixes.push((p, i));
            }
        }
        let capacity = (prefixes.len() * 2).next_power_of_two().max(16);
        let bits = capacity.trailing_zeros();
        // ≥ 32 filter bits per prefix (≤ 3 % false positives), at least one word, at most
        // 2^27 bits (16 MiB) however large the index.
        let filter_bits = (prefixes.len() * 32)
            .next_power_of_two()
            .clamp(64, 1 << 27)
            .trailing_zeros();
        // The smallest value that is not a prefix marks free slots (0 unless planted).
        let mut sorted: Vec<u64> = prefixes.iter().map(|&(p, _)| p).collect();
        sorted.sort_unstable();
        let mut empty = 0u64;
        for p in sorted {
            if p == empty {
                empty += 1;
            } else if p > empty {
                break;
            }
        }
        let mut index = RpiIndex {
            entries: observations,
            keys: vec![empty; capacity],
            starts: vec![EMPTY_SLOT; capacity],
            empty,
            salt,
            shift: 64 - bits,
            mask: capacity - 1,
            filter: vec![0; 1 << (filter_bits - 6)],
            filter_shift: 64 - filter_bits,
        };
        for (p, start) in prefixes {
            let bit = index.filter_bit(index.hash(p));
            if let Some(word) = index.filter.get_mut(bit >> 6) {
                *word |= 1 << (bit & 63);
            }
            let mut slot = index.slot(p);
            while index.keys[slot] != empty {
                slot = (slot + 1) & index.mask;
            }
            index.keys[slot] = p;
            index.starts[slot] = start;
        }
        index
    }

    /// Fibonacci hashing of the salted prefix: its top bits pick the slot and filter bit.
    #[inline]
    fn hash(&self, prefix: u64) -> u64 {
        (prefix ^ self.salt).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[inline]
    fn slot(&self, prefix: u64) -> usize {
        (self.hash(prefix) >> self.shift) as usize
    }

    #[inline]
    fn filter_bit(&self, hash: u64) -> usize {
        (hash >> self.filter_shift) as usize
    }

    /// 1 when `rpi` may be indexed, 0 when it certainly is not; no branch.
    #[inline]
    fn may_contain(&self, rpi: &[u8; 16]) -> u64 {
        let bit = self.filter_bit(self.hash(prefix(rpi)));
        let word = self.filter.get(bit >> 6).copied().unwrap_or(0);
        (word >> (bit & 63)) & 1
    }

    /// Number of observations indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The observations of `rpi`, ordered by time then id (empty when never observed).
    pub fn lookup(&self, rpi: &Rpi) -> &[Observation] {
        self.lookup_bytes(&rpi.0)
    }

    #[inline]
    fn lookup_bytes(&self, rpi: &[u8; 16]) -> &[Observation] {
        if self.may_contain(rpi) == 0 {
            return &[];
        }
        let p = prefix(rpi);
        let mut slot = self.slot(p);
        loop {
            let k = self.keys.get(slot).copied().unwrap_or(self.empty);
            if k == self.empty {
                return &[];
            }
            if k == p {
                break;
            }
            slot = (slot + 1) & self.mask;
        }
        // A hit on the prefix (rare): find the run of the exact RPI among the entries
        // sharing it.
        let start = self.starts.get(slot).copied().unwrap_or(EMPTY_SLOT);
        let rest = self.entries.get(start..).unwrap_or(&[]);
        let run = rest.iter().take_while(|o| prefix(&o.rpi.0) == p).count();
        let run = rest.get(..run).unwrap_or(&[]);
        let from = run.partition_point(|o| o.rpi.0 < *rpi);
        let to = run.partition_point(|o| o.rpi.0 <= *rpi);
        run.get(from..to).unwrap_or(&[])
    }
}

fn suffix(rpi: &[u8; 16]) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&rpi[8..]);
    s
}

/// One observation matched by a diagnosis key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyMatch {
    /// Position of the key in the slice given to [`match_keys`].
    pub key_index: usize,
    /// The interval of the matched RPI.
    pub enin: EnIntervalNumber,
    /// The matched RPI.
    pub rpi: Rpi,
    /// The observation's id.
    pub observation_id: u64,
    /// The observation's time, in Unix seconds.
    pub observed_at_s: u64,
}

/// Why a key was not expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SkipReason {
    /// The key was revoked (report type REVOKED): it must match nothing.
    #[error("key is revoked")]
    Revoked,
    /// The rolling period is outside 1..=144.
    #[error("rolling period {rolling_period} is outside 1..=144")]
    InvalidPeriod {
        /// The key's rolling period.
        rolling_period: u32,
    },
    /// The key's period runs past the last 32-bit interval number.
    #[error("rolling start {start} + period {period} overflows the interval numbers")]
    PeriodOutOfRange {
        /// The key's rolling start interval number.
        start: u32,
        /// The key's rolling period.
        period: u32,
    },
    /// HKDF refused to derive the RPIK (cannot happen for 16-byte keys; kept typed).
    #[error("RPIK derivation failed")]
    Derivation,
}

/// A key [`match_keys`] did not expand, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SkippedKey {
    /// Position of the key in the slice given to [`match_keys`].
    pub key_index: usize,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// What [`match_keys`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchReport {
    /// Matches, by key then interval then observation.
    pub matches: Vec<KeyMatch>,
    /// Keys not expanded, in key order.
    pub skipped: Vec<SkippedKey>,
}

type Block = GenericArray<u8, aes::cipher::consts::U16>;

/// Why `key` cannot be expanded, if it cannot.
fn check(key: &DiagnosisKey) -> Result<(), SkipReason> {
    if key.report_type == ReportType::Revoked {
        return Err(SkipReason::Revoked);
    }
    if key.rolling_period == 0 || key.rolling_period > TEK_ROLLING_PERIOD {
        return Err(SkipReason::InvalidPeriod {
            rolling_period: key.rolling_period,
        });
    }
    if key
        .rolling_start_interval_number
        .checked_add(key.rolling_period - 1)
        .is_none()
    {
        return Err(SkipReason::PeriodOutOfRange {
            start: key.rolling_start_interval_number,
            period: key.rolling_period,
        });
    }
    Ok(())
}

/// Expands a checked key: its RPIs land in `blocks[..rolling_period]`.
#[inline]
fn expand(key: &DiagnosisKey, blocks: &mut [Block; TEK_ROLLING_PERIOD as usize]) -> Option<usize> {
    let rpik = key.tek().rpik().ok()?;
    let cipher = Aes128::new(GenericArray::from_slice(&rpik.0));
    let n = key.rolling_period.min(TEK_ROLLING_PERIOD) as usize;
    let blocks = blocks.get_mut(..n)?;
    for (i, block) in blocks.iter_mut().enumerate() {
        let enin = EnIntervalNumber(key.rolling_start_interval_number.wrapping_add(i as u32));
        *block = Block::from(Rpik::padded_data(enin));
    }
    cipher.encrypt_blocks(blocks);
    Some(n)
}

/// Expands every key (skipping revoked and invalid ones, with the reason) and returns the
/// observations in `index` of its RPIs whose time lies within the RPI's interval ± `skew_s`.
pub fn match_keys(keys: &[DiagnosisKey], index: &RpiIndex, skew_s: u64) -> MatchReport {
    let mut report = MatchReport::default();
    let mut blocks = [Block::default(); TEK_ROLLING_PERIOD as usize];
    for (key_index, key) in keys.iter().enumerate() {
        if let Err(reason) = check(key) {
            report.skipped.push(SkippedKey { key_index, reason });
            continue;
        }
        if index.is_empty() {
            continue;
        }
        let Some(n) = expand(key, &mut blocks) else {
            report.skipped.push(SkippedKey {
                key_index,
                reason: SkipReason::Derivation,
            });
            continue;
        };
        // Filter pass over all the key's RPIs with no data-dependent branch, so the
        // filter loads overlap; then the (few) candidates go to the table.
        let mut candidates = [0u64; CANDIDATE_WORDS];
        for (i, block) in blocks.iter().take(n).enumerate() {
            let bit = index.may_contain(block.as_ref());
            if let Some(word) = candidates.get_mut(i >> 6) {
                *word |= bit << (i & 63);
            }
        }
        for (w, &word) in candidates.iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                let i = w * 64 + rest.trailing_zeros() as usize;
                rest &= rest - 1;
                let Some(block) = blocks.get(i) else { continue };
                let hits = index.lookup_bytes(block.as_ref());
                if hits.is_empty() {
                    continue;
                }
                push_matches(&mut report, key, key_index, i, hits, skew_s);
            }
        }
    }
    report
}

/// 64-bit words of a key's candidate mask (144 intervals).
const CANDIDATE_WORDS: usize = (TEK_ROLLING_PERIOD as usize).div_ceil(64);

fn push_matches(
    report: &mut MatchReport,
    key: &DiagnosisKey,
    key_index: usize,
    i: usize,
    hits: &[Observation],
    skew_s: u64,
) {
    let enin = EnIntervalNumber(key.rolling_start_interval_number + i as u32);
    let from_s = enin.unix_seconds().saturating_sub(skew_s);
    let to_s = (enin.unix_seconds() + INTERVAL_LENGTH_S).saturating_add(skew_s);
    for o in hits.iter().filter(|o| (from_s..=to_s).contains(&o.time_s)) {
        report.matches.push(KeyMatch {
            key_index,
            enin,
            rpi: o.rpi,
            observation_id: o.id,
            observed_at_s: o.time_s,
        });
    }
}

/// The crypto ceiling of [`match_keys`]: the same HKDF and AES expansion of every valid
/// key, with no lookup. Returns the number of keys expanded. Benchmarks time it beside
/// [`match_keys`] on the same keys.
pub fn expand_only(keys: &[DiagnosisKey]) -> usize {
    let mut blocks = [Block::default(); TEK_ROLLING_PERIOD as usize];
    let mut expanded = 0;
    for key in keys {
        if check(key).is_ok() && expand(key, &mut blocks).is_some() {
            // Make the compiler keep every encrypted block.
            std::hint::black_box(&blocks);
            expanded += 1;
        }
    }
    expanded
}

/// Device side: the RPIs of exposure notices that the device itself broadcast (per its
/// `log`), with when it broadcast them, in broadcast order. A notice carries only the
/// exposed party's own RPIs, so any hit means this device was exposed.
pub fn match_notices(log: &BroadcastLog, notice_rpis: &[Rpi]) -> Vec<BroadcastRecord> {
    let wanted: HashSet<&Rpi> = notice_rpis.iter().collect();
    log.records()
        .filter(|r| wanted.contains(&r.rpi))
        .copied()
        .collect()
}
