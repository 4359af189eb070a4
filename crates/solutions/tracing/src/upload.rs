//! What a device uploads to its edge node: the encounters heard while it broadcast ONE of
//! its own RPIs.
//!
//! An [`EncounterUpload`] carries one own RPI, the interval it was derived for, the device
//! model and TX power (for per-model calibration at the edge) and the encounters. It holds
//! nothing that links two of the device's own RPIs: there is one upload per own RPI, no
//! device identifier, no sequence number and no reference to another upload, and
//! [`uploads_by_own_rpi`] puts each heard RPI under exactly one own RPI (a heard RPI
//! listed under two of our RPIs would link them). The upload is signed by the device
//! crate's `DeviceIdentity::sign_reading(seq, READING_KIND, bytes)`; that signature tells
//! the device's own edge who sent it, and the edge must not share that (ARCHITECTURE's
//! privacy invariant), only the RPI-keyed content.
//!
//! The Borsh form is bounded by [`MAX_UPLOAD_BYTES`], the device crate's reading payload
//! limit; [`EncounterUpload::split_to_fit`] splits a larger upload into several, all for
//! the same own RPI.

use std::collections::HashMap;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::broadcast::BroadcastLog;
use crate::sightings::{Encounter, MAX_RANGE_CM, MAX_RANGES_PER_ENCOUNTER};
use crate::{EnIntervalNumber, Rpi};

/// The reading kind of an encounter upload in `DeviceIdentity::sign_reading`.
pub const READING_KIND: &str = "encounters";

/// The reading kind of an [`EncounterBatch`]: several uploads in one signed reading.
pub const BATCH_READING_KIND: &str = "encounter_batch";

/// Most uploads in one [`EncounterBatch`].
pub const MAX_UPLOADS_PER_BATCH: usize = 64;

/// Largest encoded upload: `trustedge_device::MAX_READING_PAYLOAD_BYTES` (4 KiB).
pub const MAX_UPLOAD_BYTES: usize = 4 * 1024;

/// Longest device model name, in bytes.
pub const MAX_DEVICE_MODEL_BYTES: usize = 32;

/// Most RSSI samples per encounter in an upload.
pub const MAX_SAMPLES_PER_ENCOUNTER: usize = 256;

/// Errors of encounter uploads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// The encoded upload is larger than allowed.
    #[error("encounter upload is {size_bytes} bytes, over the limit of {max_bytes}")]
    TooLarge {
        /// Encoded size.
        size_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The bytes are not a Borsh-encoded upload (or have trailing bytes).
    #[error("malformed encounter upload: {0}")]
    Malformed(String),
    /// The device model is empty, too long or not printable ASCII.
    #[error(
        "device model must be 1..={MAX_DEVICE_MODEL_BYTES} printable ASCII characters, got {0:?}"
    )]
    InvalidDeviceModel(String),
    /// A batch holds no upload, too many, or two for the same own RPI.
    #[error("invalid encounter batch: {0}")]
    InvalidBatch(&'static str),
    /// An upload inside a batch is invalid.
    #[error("upload {index} of the batch: {source}")]
    InBatch {
        /// Position of the upload in the batch.
        index: usize,
        /// What is wrong with it.
        source: Box<UploadError>,
    },
    /// An encounter is inconsistent (last before first, unsorted or out-of-span samples,
    /// too many samples).
    #[error("encounter {index} is invalid: {reason}")]
    InvalidEncounter {
        /// Position of the encounter in the upload.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// One encounter alone does not fit in the size limit.
    #[error("encounter {index} alone is {size_bytes} bytes, over the limit of {max_bytes}")]
    EncounterTooLarge {
        /// Position of the encounter.
        index: usize,
        /// Size of an upload holding only it.
        size_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
}

/// The encounters heard while the device broadcast `own_rpi`. See the
/// [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EncounterUpload {
    /// The device's own RPI these encounters belong to.
    pub own_rpi: Rpi,
    /// The interval `own_rpi` was derived for.
    pub own_interval: EnIntervalNumber,
    /// Device model, for per-model RSSI calibration at the edge (1..=32 printable ASCII).
    pub device_model: String,
    /// The device's calibrated TX power, in dBm.
    pub tx_power_dbm: i8,
    /// The encounters.
    pub encounters: Vec<Encounter>,
}

impl EncounterUpload {
    /// Checks the fields: the device model and every encounter.
    pub fn validate(&self) -> Result<(), UploadError> {
        let model_ok = !self.device_model.is_empty()
            && self.device_model.len() <= MAX_DEVICE_MODEL_BYTES
            && self.device_model.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !model_ok {
            return Err(UploadError::InvalidDeviceModel(
                self.device_model.chars().take(64).collect(),
            ));
        }
        for (index, e) in self.encounters.iter().enumerate() {
            let bad = |reason| UploadError::InvalidEncounter { index, reason };
            if e.last_seen_s < e.first_seen_s {
                return Err(bad("last_seen_s is before first_seen_s"));
            }
            if e.samples.len() > MAX_SAMPLES_PER_ENCOUNTER {
                return Err(bad("too many RSSI samples"));
            }
            if e.samples.windows(2).any(|w| w[1].offset_s < w[0].offset_s) {
                return Err(bad("RSSI samples are not in time order"));
            }
            let span = e.duration_s();
            if e.samples.iter().any(|s| u64::from(s.offset_s) > span) {
                return Err(bad("an RSSI sample lies after last_seen_s"));
            }
            if e.ranges.len() > MAX_RANGES_PER_ENCOUNTER {
                return Err(bad("too many range samples"));
            }
            if e.ranges.windows(2).any(|w| w[1].offset_s < w[0].offset_s) {
                return Err(bad("range samples are not in time order"));
            }
            if e.ranges.iter().any(|r| u64::from(r.offset_s) > span) {
                return Err(bad("a range sample lies after last_seen_s"));
            }
            if e.ranges
                .iter()
                .any(|r| r.distance_cm == 0 || r.distance_cm > MAX_RANGE_CM)
            {
                return Err(bad("a range is zero or over MAX_RANGE_CM"));
            }
        }
        Ok(())
    }

    /// The Borsh encoding, after [`validate`](Self::validate), at most [`MAX_UPLOAD_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, UploadError> {
        self.validate()?;
        encode_bounded(self)
    }

    /// Parses and validates an upload; never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, UploadError> {
        let upload: EncounterUpload = decode_bounded(bytes)?;
        upload.validate()?;
        Ok(upload)
    }

    /// Encoded size of this upload, in bytes.
    pub fn encoded_len(&self) -> usize {
        // Fixed part: RPI 16, interval 4, model length 4 + bytes, TX power 1, list length 4.
        29 + self.device_model.len() + self.encounters.iter().map(encounter_len).sum::<usize>()
    }

    /// Splits into uploads for the same own RPI whose encodings are each at most
    /// `max_bytes` (at most [`MAX_UPLOAD_BYTES`]), keeping the encounters' order. An
    /// upload without encounters stays one (empty) upload.
    pub fn split_to_fit(self, max_bytes: usize) -> Result<Vec<EncounterUpload>, UploadError> {
        self.validate()?;
        let max_bytes = max_bytes.min(MAX_UPLOAD_BYTES);
        let empty = EncounterUpload {
            encounters: Vec::new(),
            ..self.clone()
        };
        let base = empty.encoded_len();
        let mut out: Vec<EncounterUpload> = Vec::new();
        let mut current = empty.clone();
        let mut size = base;
        for (index, e) in self.encounters.into_iter().enumerate() {
            let len = encounter_len(&e);
            if base + len > max_bytes {
                return Err(UploadError::EncounterTooLarge {
                    index,
                    size_bytes: base + len,
                    max_bytes,
                });
            }
            if size + len > max_bytes {
                out.push(std::mem::replace(&mut current, empty.clone()));
                size = base;
            }
            size += len;
            current.encounters.push(e);
        }
        out.push(current);
        Ok(out)
    }
}

/// The Borsh encoding of `value`, refused over [`MAX_UPLOAD_BYTES`].
fn encode_bounded<T: BorshSerialize>(value: &T) -> Result<Vec<u8>, UploadError> {
    let bytes = borsh::to_vec(value).map_err(|e| UploadError::Malformed(e.to_string()))?;
    check_size(bytes.len())?;
    Ok(bytes)
}

/// Borsh-decodes `bytes` (all of them), refused over [`MAX_UPLOAD_BYTES`] before parsing.
fn decode_bounded<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, UploadError> {
    check_size(bytes.len())?;
    borsh::from_slice(bytes).map_err(|e| UploadError::Malformed(e.to_string()))
}

fn check_size(size_bytes: usize) -> Result<(), UploadError> {
    if size_bytes > MAX_UPLOAD_BYTES {
        return Err(UploadError::TooLarge {
            size_bytes,
            max_bytes: MAX_UPLOAD_BYTES,
        });
    }
    Ok(())
}

/// Encoded size of one encounter: RPI 16, AEM 4, two times 16, sample list 4 + 5 each,
/// range list 4 + 9 each.
fn encounter_len(e: &Encounter) -> usize {
    44 + 5 * e.samples.len() + 9 * e.ranges.len()
}

/// Groups encounters by the own RPI the device was broadcasting when each was FIRST
/// heard (per `log`), one upload per own RPI, in the log's order; each upload is then
/// split to fit [`MAX_UPLOAD_BYTES`]. Every heard RPI appears under exactly one own RPI,
/// so no upload links two of the device's RPIs. Encounters first heard when nothing of
/// ours was on air (outside the log) are left out.
pub fn uploads_by_own_rpi(
    log: &BroadcastLog,
    encounters: Vec<Encounter>,
    device_model: &str,
    tx_power_dbm: i8,
) -> Result<Vec<EncounterUpload>, UploadError> {
    let mut groups: Vec<EncounterUpload> = Vec::new();
    let mut by_rpi: HashMap<Rpi, usize> = HashMap::new();
    for e in encounters {
        let Some(own) = log.at(e.first_seen_s) else {
            continue;
        };
        match by_rpi.get(&own.rpi).and_then(|&i| groups.get_mut(i)) {
            Some(g) => g.encounters.push(e),
            None => {
                by_rpi.insert(own.rpi, groups.len());
                groups.push(EncounterUpload {
                    own_rpi: own.rpi,
                    own_interval: own.enin,
                    device_model: device_model.to_string(),
                    tx_power_dbm,
                    encounters: vec![e],
                });
            }
        }
    }
    groups.sort_by_key(|g| g.own_interval);
    let mut out = Vec::new();
    for g in groups {
        out.extend(g.split_to_fit(MAX_UPLOAD_BYTES)?);
    }
    Ok(out)
}

/// Several [`EncounterUpload`]s of one device in one signed reading (kind
/// [`BATCH_READING_KIND`]), so that a phone signs, and its edge verifies and stores, one
/// reading per upload round instead of one per own RPI.
///
/// Batching changes nothing the edge can link: every reading is signed with the device's
/// key, so the edge knew which uploads came from one device before. Outside the device's
/// edge, only the uploads' RPI-keyed content is shared, one upload at a time. A batch holds
/// each own RPI once, and every heard RPI under one own RPI only (as
/// [`uploads_by_own_rpi`] makes them). Its Borsh form (a list of uploads) is at most
/// [`MAX_UPLOAD_BYTES`], the device crate's reading payload limit.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EncounterBatch {
    /// The uploads, in order of their own interval.
    pub uploads: Vec<EncounterUpload>,
}

impl EncounterBatch {
    /// Checks every upload, the count (1..=[`MAX_UPLOADS_PER_BATCH`]), and that no own RPI
    /// or heard RPI appears under two different own RPIs.
    pub fn validate(&self) -> Result<(), UploadError> {
        if self.uploads.is_empty() {
            return Err(UploadError::InvalidBatch(
                "a batch holds at least one upload",
            ));
        }
        if self.uploads.len() > MAX_UPLOADS_PER_BATCH {
            return Err(UploadError::InvalidBatch("too many uploads in one batch"));
        }
        let mut heard_under: HashMap<Rpi, Rpi> = HashMap::new();
        let mut own_seen: HashMap<Rpi, EnIntervalNumber> = HashMap::new();
        for (index, u) in self.uploads.iter().enumerate() {
            u.validate().map_err(|e| UploadError::InBatch {
                index,
                source: Box::new(e),
            })?;
            if let Some(&interval) = own_seen.get(&u.own_rpi)
                && interval != u.own_interval
            {
                return Err(UploadError::InvalidBatch(
                    "one own RPI is given two different intervals",
                ));
            }
            own_seen.insert(u.own_rpi, u.own_interval);
            for e in &u.encounters {
                if *heard_under.entry(e.rpi).or_insert(u.own_rpi) != u.own_rpi {
                    return Err(UploadError::InvalidBatch(
                        "a heard RPI is listed under two own RPIs",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Encoded size: the list length, then each upload.
    pub fn encoded_len(&self) -> usize {
        4 + self
            .uploads
            .iter()
            .map(EncounterUpload::encoded_len)
            .sum::<usize>()
    }

    /// The Borsh encoding, after [`validate`](Self::validate), at most [`MAX_UPLOAD_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, UploadError> {
        self.validate()?;
        encode_bounded(self)
    }

    /// Parses and validates a batch; never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, UploadError> {
        let batch: EncounterBatch = decode_bounded(bytes)?;
        batch.validate()?;
        Ok(batch)
    }

    /// Packs `uploads` (as [`uploads_by_own_rpi`] returns them) into as few batches as fit,
    /// keeping their order: an upload too large to share a batch is first split (for the
    /// same own RPI, [`EncounterUpload::split_to_fit`]), then uploads are added to the
    /// current batch while it fits. No uploads make no batch.
    pub fn pack(uploads: Vec<EncounterUpload>) -> Result<Vec<EncounterBatch>, UploadError> {
        // A batch's own overhead is its list length.
        let room = MAX_UPLOAD_BYTES - 4;
        let mut out = Vec::new();
        let mut current: Vec<EncounterUpload> = Vec::new();
        let mut size = 4;
        for u in uploads {
            let parts = if u.encoded_len() > room {
                u.split_to_fit(room)?
            } else {
                vec![u]
            };
            for part in parts {
                let len = part.encoded_len();
                if !current.is_empty()
                    && (size + len > MAX_UPLOAD_BYTES || current.len() == MAX_UPLOADS_PER_BATCH)
                {
                    out.push(EncounterBatch {
                        uploads: std::mem::take(&mut current),
                    });
                    size = 4;
                }
                size += len;
                current.push(part);
            }
        }
        if !current.is_empty() {
            out.push(EncounterBatch { uploads: current });
        }
        Ok(out)
    }
}
