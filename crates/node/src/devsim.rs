//! Simulated phones for contact tracing: what `trustedge tracing simulate` and the node's
//! end-to-end test drive against a real edge node.
//!
//! A [`SimPhone`] is the device SDK of `trustedge-tracing` ([`Broadcaster`] and
//! [`SightingLog`]) with a [`DeviceIdentity`] that signs its uploads and, once
//! [`connect`](SimPhone::connect)ed, a [`DeviceClient`] to an edge's MQTT broker. A
//! [`Population`] plays proximity between phones one step at a time: every phone
//! advertises, and every receiver within range of a transmitter logs the RPI with an RSSI
//! drawn from the distance service's channel model
//! ([`trustedge_distance::channel::sample_rssi`]) for the pair's link context.
//!
//! Nothing here reads the clock or draws its own randomness: the simulated time (an
//! accelerated clock: the caller steps it, e.g. one minute per step) and a seeded RNG are
//! arguments, so a run is reproducible from its seed.

use std::collections::HashMap;
use std::net::SocketAddr;

use rand_core::RngCore;
use trustedge_contracts::diagnosis::VerificationCertificate;
use trustedge_device::{DeviceError, DeviceIdentity, SignedReading};
use trustedge_distance::channel::{DeviceModel, LinkContext, sample_rssi};
use trustedge_tracing::broadcast::{BroadcastError, Broadcaster};
use trustedge_tracing::matching::match_notices;
use trustedge_tracing::sightings::{Sighting, SightingError, SightingFilter, SightingLog};
use trustedge_tracing::upload::{
    BATCH_READING_KIND, EncounterBatch, EncounterUpload, READING_KIND, UploadError,
    uploads_by_own_rpi,
};
use trustedge_tracing::{DiagnosisKey, ReportType, Rpi};
use trustedge_types::Keypair;

use crate::mqtt::{Ack, DeviceClient, DeviceClientOptions, MqttError};
use crate::tracing_worker::{DIAGNOSIS_KIND, NoticeMessage, encode_diagnosis};

pub mod aerosol;

/// Why a simulated phone could not do something.
#[derive(Debug, thiserror::Error)]
pub enum DevSimError {
    /// The broadcaster refused (clock went backwards, TEK reuse, time out of range).
    #[error("broadcast: {0}")]
    Broadcast(#[from] BroadcastError),
    /// The sighting log's rules are invalid.
    #[error("sightings: {0}")]
    Sightings(#[from] SightingError),
    /// The encounters do not make valid uploads.
    #[error("upload: {0}")]
    Upload(#[from] UploadError),
    /// A reading could not be signed.
    #[error("reading: {0}")]
    Device(#[from] DeviceError),
    /// The MQTT connection failed.
    #[error("mqtt: {0}")]
    Mqtt(#[from] MqttError),
    /// The phone is not connected to an edge.
    #[error("phone {0} is not connected")]
    NotConnected(usize),
    /// The edge refused an upload.
    #[error("the edge refused an upload of phone {index}: {ack:?}")]
    Refused {
        /// The phone.
        index: usize,
        /// The edge's answer.
        ack: Box<Ack>,
    },
    /// A contact names a phone that does not exist.
    #[error("no phone {0} in the population")]
    NoSuchPhone(usize),
}

/// One simulated phone.
pub struct SimPhone {
    /// Its index in the [`Population`].
    pub index: usize,
    /// Its hardware model (TX power, calibration key).
    pub model: DeviceModel,
    /// What it advertises, and its key history.
    pub broadcaster: Broadcaster,
    /// What it heard.
    pub sightings: SightingLog,
    /// The key that signs its readings (registered on the ledger as a device).
    pub identity: DeviceIdentity,
    /// Its MQTT client token (random per installation, never its address).
    pub token: String,
    /// The venue ids it heard from beacons (aerosol alerts, [`aerosol`]).
    pub presence: aerosol::PresenceLog,
    client: Option<DeviceClient>,
}

impl SimPhone {
    /// A phone with device key `keypair`, of `model`, using client token `token`.
    pub fn new(
        index: usize,
        keypair: Keypair,
        model: DeviceModel,
        token: String,
    ) -> Result<SimPhone, DevSimError> {
        Ok(SimPhone {
            index,
            model,
            broadcaster: Broadcaster::new(tx_power(model)),
            sightings: SightingLog::new(SightingFilter::default())?,
            identity: DeviceIdentity::new(keypair, 0),
            token,
            presence: aerosol::PresenceLog::new(),
            client: None,
        })
    }

    /// Connects to the edge broker at `addr`.
    pub async fn connect(
        &mut self,
        addr: SocketAddr,
        options: DeviceClientOptions,
    ) -> Result<(), DevSimError> {
        self.client = Some(DeviceClient::connect(addr, &self.token, options).await?);
        Ok(())
    }

    /// The MQTT client, when connected.
    pub fn client(&mut self) -> Option<&mut DeviceClient> {
        self.client.as_mut()
    }

    /// The next notice pushed to this phone within `timeout` (none if nothing came).
    pub async fn next_notice(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<crate::mqtt::Notice>, DevSimError> {
        let index = self.index;
        let client = self
            .client
            .as_mut()
            .ok_or(DevSimError::NotConnected(index))?;
        Ok(client.next_notice(timeout).await)
    }

    /// Takes the MQTT client out (e.g. to listen for notices on another task).
    pub fn take_client(&mut self) -> Option<DeviceClient> {
        self.client.take()
    }

    /// Its encounters at `now_s`, one upload per own RPI.
    fn uploads(&self, now_s: u64) -> Result<Vec<EncounterUpload>, DevSimError> {
        Ok(uploads_by_own_rpi(
            self.broadcaster.log(),
            self.sightings.encounters(now_s),
            self.model.name,
            tx_power(self.model),
        )?)
    }

    /// Its encounters at `now_s` as signed `encounters` readings, one per own RPI, signed
    /// at `signed_at_ms`.
    pub fn encounter_readings(
        &mut self,
        now_s: u64,
        signed_at_ms: u64,
    ) -> Result<Vec<SignedReading>, DevSimError> {
        let uploads = self.uploads(now_s)?;
        let mut out = Vec::with_capacity(uploads.len());
        for u in uploads {
            out.push(
                self.identity
                    .sign_reading(signed_at_ms, READING_KIND, u.to_bytes()?)?,
            );
        }
        Ok(out)
    }

    /// Its encounters at `now_s` as signed `encounter_batch` readings: the uploads of
    /// [`encounter_readings`](Self::encounter_readings) packed into as few readings as fit
    /// ([`EncounterBatch::pack`]). Returns each reading with the number of uploads it carries.
    pub fn encounter_batch_readings(
        &mut self,
        now_s: u64,
        signed_at_ms: u64,
    ) -> Result<Vec<(SignedReading, usize)>, DevSimError> {
        let mut out = Vec::new();
        for batch in EncounterBatch::pack(self.uploads(now_s)?)? {
            let n = batch.uploads.len();
            let reading =
                self.identity
                    .sign_reading(signed_at_ms, BATCH_READING_KIND, batch.to_bytes()?)?;
            out.push((reading, n));
        }
        Ok(out)
    }

    /// Uploads its encounters at `now_s` over MQTT in batches; returns how many readings
    /// the edge accepted and how many uploads they carried (all of them, or an error).
    pub async fn upload_encounter_batches(
        &mut self,
        now_s: u64,
        signed_at_ms: u64,
    ) -> Result<(usize, usize), DevSimError> {
        let readings = self.encounter_batch_readings(now_s, signed_at_ms)?;
        let mut uploads = 0;
        for (r, n) in &readings {
            self.publish(r).await?;
            uploads += n;
        }
        Ok((readings.len(), uploads))
    }

    /// Publishes `reading` and waits for the edge's acceptance.
    pub async fn publish(&mut self, reading: &SignedReading) -> Result<Ack, DevSimError> {
        let index = self.index;
        let client = self
            .client
            .as_mut()
            .ok_or(DevSimError::NotConnected(index))?;
        let ack = client.publish_reading(reading).await?;
        if !ack.accepted {
            return Err(DevSimError::Refused {
                index,
                ack: Box::new(ack),
            });
        }
        Ok(ack)
    }

    /// Uploads its encounters at `now_s` over MQTT; returns how many uploads the edge
    /// accepted (all of them, or an error).
    pub async fn upload_encounters(
        &mut self,
        now_s: u64,
        signed_at_ms: u64,
    ) -> Result<usize, DevSimError> {
        let readings = self.encounter_readings(now_s, signed_at_ms)?;
        for r in &readings {
            self.publish(r).await?;
        }
        Ok(readings.len())
    }

    /// Its diagnosis keys at `now_s` (a confirmed test), for a laboratory to certify.
    pub fn diagnosis_keys(&self, now_s: u64) -> Result<Vec<DiagnosisKey>, DevSimError> {
        Ok(self
            .broadcaster
            .diagnosis_keys(now_s, ReportType::ConfirmedTest, None)?)
    }

    /// The `diagnosis` reading that asks the edge to relay `keys` with `certificate`.
    pub fn diagnosis_reading(
        &mut self,
        keys: Vec<DiagnosisKey>,
        certificate: VerificationCertificate,
        signed_at_ms: u64,
    ) -> Result<SignedReading, DevSimError> {
        Ok(self.identity.sign_reading(
            signed_at_ms,
            DIAGNOSIS_KIND,
            encode_diagnosis(keys, certificate),
        )?)
    }

    /// Whether a pushed notice names one of the RPIs this phone broadcast.
    pub fn is_mine(&self, notice: &NoticeMessage) -> bool {
        notice_is_for(self.broadcaster.log(), notice)
    }
}

/// Whether `notice` names an RPI in `log` (a malformed RPI names none).
pub fn notice_is_for(
    log: &trustedge_tracing::broadcast::BroadcastLog,
    notice: &NoticeMessage,
) -> bool {
    let Some(rpi) = hex::decode(&notice.rpi)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
    else {
        return false;
    };
    !match_notices(log, &[Rpi(rpi)]).is_empty()
}

/// The calibrated TX power a model advertises, dBm (saturating, truncated to whole dB).
fn tx_power(model: DeviceModel) -> i8 {
    model.tx_power_dbm as i8
}

/// One receiver hearing one transmitter at a distance during a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Heard {
    /// The receiving phone.
    pub rx: usize,
    /// The advertising phone.
    pub tx: usize,
    /// Their distance, m.
    pub distance_m: f64,
}

/// Phones and the radio links between them.
pub struct Population {
    /// The phones, by index.
    pub phones: Vec<SimPhone>,
    links: HashMap<(usize, usize), LinkContext>,
    /// Sightings the phones' logs refused (too weak, full): counted, not an error.
    pub refused_sightings: u64,
}

impl Population {
    /// A population of `phones` (their `index` must be their position).
    pub fn new(phones: Vec<SimPhone>) -> Population {
        Population {
            phones,
            links: HashMap::new(),
            refused_sightings: 0,
        }
    }

    /// One step at simulated time `t_s`: every phone advertises (32 random bytes each
    /// from `rng`, in phone order), then each entry of `heard`, in order, logs the
    /// transmitter's advertisement at the receiver with an RSSI sampled from `rng` over
    /// the pair's link context, made by `link(rx, tx)` on the pair's first contact.
    pub fn step<R: RngCore + ?Sized>(
        &mut self,
        t_s: u64,
        heard: &[Heard],
        mut link: impl FnMut(usize, usize) -> LinkContext,
        rng: &mut R,
    ) -> Result<(), DevSimError> {
        let mut ads = Vec::with_capacity(self.phones.len());
        for p in &mut self.phones {
            let mut random = [0u8; 32];
            rng.fill_bytes(&mut random);
            ads.push(p.broadcaster.advertise(t_s, random)?);
        }
        for h in heard {
            let ad = ads.get(h.tx).ok_or(DevSimError::NoSuchPhone(h.tx))?;
            if h.rx >= self.phones.len() {
                return Err(DevSimError::NoSuchPhone(h.rx));
            }
            let ctx = self
                .links
                .entry((h.rx, h.tx))
                .or_insert_with(|| link(h.rx, h.tx));
            let rssi = sample_rssi(h.distance_m, ctx, rng);
            let sighting = Sighting {
                rpi: ad.rpi,
                aem: ad.aem,
                rssi_dbm: rssi,
                time_s: t_s,
            };
            if self.phones[h.rx].sightings.record(sighting, t_s).is_err() {
                self.refused_sightings += 1;
            }
        }
        Ok(())
    }
}
