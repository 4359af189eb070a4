//! Google/Apple Exposure Notification (GAEN) v1.2 cryptography.
//!
//! Implements the key schedule of the "Exposure Notification — Cryptography
//! Specification" v1.2:
//!
//! - [`EnIntervalNumber`]: 10-minute windows since the Unix epoch;
//! - [`TemporaryExposureKey`] (TEK): 16 random bytes, valid for
//!   [`TEK_ROLLING_PERIOD`] intervals from its rolling start;
//! - [`Rpik`] = HKDF-SHA256(TEK, no salt, `"EN-RPIK"`, 16 bytes) and
//!   [`Rpi`] = AES-128(RPIK, `"EN-RPI"` ‖ 6 zero bytes ‖ ENIN as u32 LE);
//! - [`Aemk`] = HKDF-SHA256(TEK, no salt, `"EN-AEMK"`, 16 bytes) and
//!   [`Aem`] = AES-128-CTR(AEMK, IV = RPI, [`Metadata`]).
//!
//! On top of the key schedule, the device SDK and the matcher:
//!
//! - [`broadcast`]: the device's TEK history (14 days), daily TEK and 10–20 minute RPI
//!   rotation, the advertisement RPI ‖ AEM, the log of its own broadcast RPIs and the
//!   diagnosis keys it uploads once confirmed;
//! - [`sightings`]: the log of RPIs heard (RSSI, time), on-device filtering (too weak, too
//!   short, out of the 14-day window) and aggregation into [`sightings::Encounter`]s;
//! - [`upload`]: [`upload::EncounterUpload`], the bounded Borsh payload a device sends its
//!   edge node for ONE of its own RPIs (nothing in it links two of its RPIs);
//! - [`matching`]: [`matching::RpiIndex`] and [`matching::match_keys`] (diagnosis keys →
//!   RPIs → observed encounters within ±2 h of clock skew), for edge nodes and for devices
//!   in pure GAEN mode, and [`matching::match_notices`] for exposure notices on a device;
//! - [`diagnosis`]: [`DiagnosisKey`], the one diagnosis-key type.
//!
//! Architecture invariant: this crate is pure. It does no I/O, reads no clock and
//! draws no randomness; the caller passes the time (as Unix seconds or an interval
//! number) and the random bytes of a new TEK.

pub mod broadcast;
pub mod diagnosis;
pub mod matching;
pub mod sightings;
pub mod upload;

pub use diagnosis::{DiagnosisKey, ReportType};

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use borsh::{BorshDeserialize, BorshSerialize};
use hkdf::Hkdf;
use sha2::Sha256;

/// Length of one ENIntervalNumber window, in seconds (10 minutes).
pub const INTERVAL_LENGTH_S: u64 = 600;

/// Number of intervals a TEK is valid for (144 × 10 min = 24 h).
pub const TEK_ROLLING_PERIOD: u32 = 144;

/// HKDF info string for the Rolling Proximity Identifier Key.
const RPIK_INFO: &[u8] = b"EN-RPIK";
/// HKDF info string for the Associated Encrypted Metadata Key.
const AEMK_INFO: &[u8] = b"EN-AEMK";
/// Prefix of the padded data that is encrypted into an RPI.
const RPI_PAD: &[u8; 6] = b"EN-RPI";

/// Errors of the GAEN key schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The Unix time is too far in the future for a u32 interval number.
    #[error("unix time {unix_s} s is beyond the last ENIntervalNumber (u32)")]
    TimeOutOfRange {
        /// The rejected Unix time, in seconds.
        unix_s: u64,
    },
    /// A key period would run past the last representable interval number.
    #[error("rolling start interval {start} + {period} intervals overflows u32")]
    PeriodOutOfRange {
        /// The rolling start interval number.
        start: u32,
        /// The rolling period, in intervals.
        period: u32,
    },
    /// A byte string had the wrong length for the value it should hold.
    #[error("{what} must be {expected} bytes, got {actual}")]
    Length {
        /// Which value was being parsed.
        what: &'static str,
        /// Required length, in bytes.
        expected: usize,
        /// Length given, in bytes.
        actual: usize,
    },
    /// HKDF refused to expand (cannot happen for 16-byte outputs; kept typed, not panicking).
    #[error("HKDF-SHA256 expand failed")]
    Hkdf,
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn array<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N]> {
    <[u8; N]>::try_from(bytes).map_err(|_| Error::Length {
        what,
        expected: N,
        actual: bytes.len(),
    })
}

/// ENIntervalNumber: the number of 10-minute windows since the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct EnIntervalNumber(pub u32);

impl EnIntervalNumber {
    /// The interval containing `unix_s` (Unix time in seconds), i.e. `unix_s / 600`.
    pub fn from_unix_seconds(unix_s: u64) -> Result<Self> {
        u32::try_from(unix_s / INTERVAL_LENGTH_S)
            .map(Self)
            .map_err(|_| Error::TimeOutOfRange { unix_s })
    }

    /// The rolling start interval number of a TEK generated in this interval: the
    /// interval number floored to a multiple of [`TEK_ROLLING_PERIOD`].
    pub fn rolling_start(self) -> Self {
        Self(self.0 - self.0 % TEK_ROLLING_PERIOD)
    }

    /// Unix time (seconds) at which this interval starts.
    pub fn unix_seconds(self) -> u64 {
        u64::from(self.0) * INTERVAL_LENGTH_S
    }
}

/// The rolling start interval number for a key generated at `unix_s` (Unix seconds).
pub fn rolling_start_interval_number(unix_s: u64) -> Result<EnIntervalNumber> {
    Ok(EnIntervalNumber::from_unix_seconds(unix_s)?.rolling_start())
}

fn hkdf16(ikm: &[u8; 16], info: &[u8]) -> Result<[u8; 16]> {
    let mut okm = [0u8; 16];
    Hkdf::<Sha256>::new(None, ikm)
        .expand(info, &mut okm)
        .map_err(|_| Error::Hkdf)?;
    Ok(okm)
}

/// Temporary Exposure Key: 16 random bytes, valid for [`TEK_ROLLING_PERIOD`] intervals.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemporaryExposureKey(pub [u8; 16]);

impl std::fmt::Debug for TemporaryExposureKey {
    // A TEK is secret until the user shares it: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemporaryExposureKey(..)")
    }
}

impl TemporaryExposureKey {
    /// A new TEK from 16 bytes of the caller's cryptographically secure RNG
    /// (this crate draws no randomness itself).
    pub fn from_random_bytes(random: [u8; 16]) -> Self {
        Self(random)
    }

    /// A TEK from a byte slice, which must be 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        array("TEK", bytes).map(Self)
    }

    /// RPIK = HKDF-SHA256(IKM = TEK, salt = none, info = "EN-RPIK", 16 bytes).
    pub fn rpik(&self) -> Result<Rpik> {
        hkdf16(&self.0, RPIK_INFO).map(Rpik)
    }

    /// AEMK = HKDF-SHA256(IKM = TEK, salt = none, info = "EN-AEMK", 16 bytes).
    pub fn aemk(&self) -> Result<Aemk> {
        hkdf16(&self.0, AEMK_INFO).map(Aemk)
    }

    /// The [`TEK_ROLLING_PERIOD`] RPIs of this key, for the intervals
    /// `rolling_start, rolling_start + 1, ..., rolling_start + 143`, in that order.
    pub fn rpis(&self, rolling_start: EnIntervalNumber) -> Result<Vec<(EnIntervalNumber, Rpi)>> {
        let period = TEK_ROLLING_PERIOD;
        if rolling_start.0.checked_add(period - 1).is_none() {
            return Err(Error::PeriodOutOfRange {
                start: rolling_start.0,
                period,
            });
        }
        let rpik = self.rpik()?;
        Ok((0..period)
            .map(|i| {
                let enin = EnIntervalNumber(rolling_start.0 + i);
                (enin, rpik.rpi(enin))
            })
            .collect())
    }
}

/// Rolling Proximity Identifier Key, derived from a TEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rpik(pub [u8; 16]);

impl Rpik {
    /// The padded data encrypted into an RPI:
    /// `"EN-RPI"` ‖ 6 zero bytes ‖ ENIN as u32 little-endian.
    pub fn padded_data(enin: EnIntervalNumber) -> [u8; 16] {
        let mut block = [0u8; 16];
        block[..6].copy_from_slice(RPI_PAD);
        block[12..].copy_from_slice(&enin.0.to_le_bytes());
        block
    }

    /// RPI_i = AES-128(RPIK, PaddedData_i) — a single-block ECB encryption.
    pub fn rpi(&self, enin: EnIntervalNumber) -> Rpi {
        let cipher = Aes128::new(GenericArray::from_slice(&self.0));
        let mut block = GenericArray::from(Self::padded_data(enin));
        cipher.encrypt_block(&mut block);
        Rpi(block.into())
    }
}

/// Rolling Proximity Identifier: the 16 bytes broadcast over BLE in one interval.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Rpi(pub [u8; 16]);

impl Rpi {
    /// An RPI from a byte slice, which must be 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        array("RPI", bytes).map(Self)
    }
}

/// Bluetooth metadata carried (encrypted) beside the RPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// Version byte (major in the top 2 bits, minor in the next 2; 0x40 = v1.0).
    pub version: u8,
    /// Transmit power, in dBm.
    pub tx_power_dbm: i8,
    /// Two reserved bytes (zero in v1.x).
    pub reserved: [u8; 2],
}

impl Metadata {
    /// The 4-byte wire form: version, TX power, 2 reserved bytes.
    pub fn to_bytes(self) -> [u8; 4] {
        let [tx] = self.tx_power_dbm.to_le_bytes();
        [self.version, tx, self.reserved[0], self.reserved[1]]
    }

    /// Parses the 4-byte wire form.
    pub fn from_bytes(bytes: [u8; 4]) -> Self {
        let [version, tx, r0, r1] = bytes;
        Self {
            version,
            tx_power_dbm: i8::from_le_bytes([tx]),
            reserved: [r0, r1],
        }
    }

    /// Parses the wire form from a slice, which must be 4 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        array("metadata", bytes).map(Self::from_bytes)
    }
}

/// Associated Encrypted Metadata Key, derived from a TEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aemk(pub [u8; 16]);

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

impl Aemk {
    fn apply(&self, rpi: &Rpi, data: &mut [u8; 4]) {
        // 4 bytes never reach the end of the first keystream block, so the counter
        // width and endianness do not matter; 128-bit big-endian is standard AES-CTR.
        let mut cipher = Aes128Ctr::new(
            GenericArray::from_slice(&self.0),
            GenericArray::from_slice(&rpi.0),
        );
        cipher.apply_keystream(data);
    }

    /// AEM = AES-128-CTR(key = AEMK, IV = RPI, metadata).
    pub fn encrypt(&self, rpi: &Rpi, metadata: Metadata) -> Aem {
        let mut data = metadata.to_bytes();
        self.apply(rpi, &mut data);
        Aem(data)
    }

    /// Decrypts an AEM received beside `rpi` (AES-CTR is its own inverse).
    pub fn decrypt(&self, rpi: &Rpi, aem: &Aem) -> Metadata {
        let mut data = aem.0;
        self.apply(rpi, &mut data);
        Metadata::from_bytes(data)
    }
}

/// Associated Encrypted Metadata: the 4 encrypted metadata bytes broadcast with an RPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Aem(pub [u8; 4]);

impl Aem {
    /// An AEM from a byte slice, which must be 4 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        array("AEM", bytes).map(Self)
    }
}
