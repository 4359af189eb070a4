//! The device side of the city, played hour by hour on one blocking thread: each app user's
//! phone (GAEN [`Broadcaster`] + [`SightingLog`] + device key), each sensor room's
//! air-quality device, and what they send to their edge in each hour.
//!
//! RSSI samples are not materialised for the whole city: for every [`Event::Encounter`]
//! piece, both phones' samples come from [`City::sightings`] at the configured scan
//! interval (GAEN scans every 3.5–5 minutes), each sample carrying the RPI (and AEM) the
//! heard phone had on air at that second, and pass through the observer's sighting filter.
//! A broadcaster is advanced lazily to the times it is needed (it only changes at its
//! rotations and at UTC midnight), so idle phones cost nothing.
//!
//! Phones upload every simulated hour: the encounters first heard in
//! `[T − 3600 − 1200, T − 1200)` at the hour's end `T` (a heard RPI is on air at most 20
//! minutes, so those are complete), grouped by the phone's own RPI
//! ([`uploads_by_own_rpi`]: no upload links two of its RPIs), each signed by the phone's
//! own key, and packed into as few signed readings as fit ([`EncounterBatch`]). The same
//! uploads also feed an evaluation-only [`Evaluator`], on a thread of its own (see
//! [`Player::evaluate_complete_days`]).

use std::collections::{BTreeSet, HashMap};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use trustedge_aerosol::alert::VenueSecret;
use trustedge_citysim::{City, Event, PersonId, RoomId};
use trustedge_contracts::diagnosis::{VerificationCertificate, keys_digest};
use trustedge_device::{DeviceIdentity, SignedReading};
use trustedge_distance::channel::DeviceModel;
use trustedge_edge::exposure::{DeviceLink, DistanceScorer, EngineConfig, ExposureEngine};
use trustedge_node::aerosol_worker::{AIR_QUALITY_KIND, encode_air_quality};
use trustedge_node::tracing_worker::{DIAGNOSIS_KIND, encode_diagnosis};
use trustedge_tracing::broadcast::{Advertisement, Broadcaster, MAX_ROTATION_S};
use trustedge_tracing::sightings::{Sighting, SightingFilter, SightingLog};
use trustedge_tracing::upload::{BATCH_READING_KIND, EncounterBatch, uploads_by_own_rpi};
use trustedge_tracing::{DiagnosisKey, ReportType};
use trustedge_types::{Hash, Keypair};

/// How long a phone keeps sightings in this simulation, s: it uploads every hour, so two
/// hours cover every encounter still to upload.
const LOG_RETENTION_S: u64 = 2 * 3600;
/// Seconds in a day.
const DAY_S: u64 = 86_400;

/// A phone of an app user.
pub struct Phone {
    /// Its person.
    pub person: PersonId,
    /// The edge that serves it (by household).
    pub edge: usize,
    /// Its device key (registered on the ledger by the edge operator).
    pub key: Keypair,
    identity: DeviceIdentity,
    model: DeviceModel,
    broadcaster: Broadcaster,
    rng: ChaCha8Rng,
    /// `(from_s, advertisement)` of the recent RPIs on air, oldest first.
    recent: Vec<(u64, Advertisement)>,
    log: SightingLog,
}

/// A sensor room's air-quality device.
pub struct Sensor {
    /// The room.
    pub room: RoomId,
    /// The edge it publishes to.
    pub edge: usize,
    /// Its device key.
    pub key: Keypair,
    /// The venue secret of its room (venue ids derive from it per day).
    pub secret: VenueSecret,
    identity: DeviceIdentity,
}

/// Something a device sends to its edge: through pool connection `slot` of edge `edge` (a
/// device always uses the same connection, so its sequence numbers arrive in order).
pub struct Outgoing {
    /// The edge.
    pub edge: usize,
    /// The pool connection.
    pub slot: usize,
    /// The signed reading.
    pub reading: SignedReading,
    /// How many items it carries: the uploads of an encounter batch, 1 otherwise.
    pub items: u64,
}

/// A confirmed case's request to relay its keys.
pub struct Confirmation {
    /// The case.
    pub person: PersonId,
    /// Simulated confirmation time.
    pub time_s: u64,
    /// Upload id (`keys_digest` of its keys).
    pub upload_id: Hash,
    /// The signed `diagnosis` reading, routed like [`Outgoing`].
    pub out: Outgoing,
}

/// What one simulated hour produced.
#[derive(Default)]
pub struct HourWork {
    /// Hour index.
    pub index: u32,
    /// Simulated end of the hour.
    pub end_s: u64,
    /// Encounter uploads.
    pub uploads: Vec<Outgoing>,
    /// Own RPIs named in those uploads, with their phone: the phones' own RPI tables, to
    /// recognise their notices.
    pub own_rpis: Vec<([u8; 16], PersonId)>,
    /// Air-quality readings.
    pub air: Vec<Outgoing>,
    /// Confirmed app users' relay requests.
    pub confirmations: Vec<Confirmation>,
    /// Confirmed people without the app (no keys to relay).
    pub confirmed_without_app: Vec<PersonId>,
    /// Encounter pieces seen.
    pub encounters: u64,
    /// RSSI samples generated.
    pub samples: u64,
    /// Samples the phones' filters refused (too weak, full).
    pub refused_samples: u64,
    /// Raw bytes the hour's events stand for (scan records, air readings, …).
    pub raw_bytes: u64,
}

/// Ids of devices a [`Player`] needs registered.
pub struct DeviceKey {
    /// Its public key.
    pub key: Keypair,
    /// Phone or air-quality sensor.
    pub sensor: bool,
    /// Hardware model label.
    pub model: String,
}

/// The city's devices, played hour by hour.
pub struct Player {
    /// Phones, indexed by `phone_of`.
    pub phones: Vec<Phone>,
    /// Person → phone index (app users only).
    pub phone_of: HashMap<PersonId, usize>,
    /// Sensors.
    pub sensors: Vec<Sensor>,
    sensor_of: HashMap<RoomId, usize>,
    pool: usize,
    lab: Keypair,
    chain_id: String,
    /// Wall-clock (Unix s) the certificates are issued at: the ledger checks them against
    /// its block time, which is real time.
    issue_now_s: u64,
    /// What the evaluation still has to be given, in order (see [`Evaluator`]).
    eval_out: Vec<EvalInput>,
    /// The next day (since the epoch) the evaluation judges.
    next_eval_day: Option<u64>,
    cert_seq: u64,
}

/// What the evaluation is given, in the order the phones produced it.
pub enum EvalInput {
    /// An upload a phone sent (its person's device link).
    Upload(PersonId, trustedge_tracing::upload::EncounterUpload),
    /// Every upload of UTC `day` (days since the epoch) was given: judge it with the app
    /// users' keys of that day. `start_day` is day 0 of the run.
    Day {
        /// The day judged.
        day: u64,
        /// Day 0 of the run.
        start_day: u64,
        /// Each app user's diagnosis keys of that day (none: not listed).
        keys: Vec<(PersonId, Vec<DiagnosisKey>)>,
    },
}

/// The evaluation of close contacts (never part of the system): a pure [`ExposureEngine`]
/// with the edges' settings, given every upload the phones sent and, once a day is
/// complete, every app user's key of that day; it keeps the pair-days `(day index, a, b)`
/// (a < b) it decides close. It is fed by [`Player::take_eval_inputs`] and runs on a thread
/// of its own, beside the city's.
pub struct Evaluator {
    engine: ExposureEngine,
    decided: BTreeSet<(u32, PersonId, PersonId)>,
}

impl Evaluator {
    /// An evaluator matching with the edges' skew `skew_s`.
    pub fn new(skew_s: u64) -> anyhow::Result<Evaluator> {
        Ok(Evaluator {
            engine: ExposureEngine::new(EngineConfig {
                skew_s,
                max_encounters: usize::MAX / 2,
                ..EngineConfig::default()
            })?,
            decided: BTreeSet::new(),
        })
    }

    /// Takes one input: adds an upload, or judges a day and then drops the uploads whose
    /// encounters all ended before the next midnight, so the engine holds about a day of
    /// uploads whatever the length of the run.
    pub fn apply(&mut self, input: EvalInput, scorer: &DistanceScorer) -> anyhow::Result<()> {
        match input {
            EvalInput::Upload(person, u) => {
                self.engine.add_upload(DeviceLink(person_link(person)), u)?;
            }
            EvalInput::Day {
                day,
                start_day,
                keys,
            } => {
                self.judge_day(day, start_day, keys, scorer)?;
                self.engine.prune_before((day + 1) * DAY_S);
            }
        }
        Ok(())
    }

    fn judge_day(
        &mut self,
        day: u64,
        start_day: u64,
        keys: Vec<(PersonId, Vec<DiagnosisKey>)>,
        scorer: &DistanceScorer,
    ) -> anyhow::Result<()> {
        let Ok(day_u32) = u32::try_from(day) else {
            anyhow::bail!("day {day} is out of range");
        };
        for (case, keys) in keys {
            let id = keys_digest(&keys);
            let outcome = self.engine.process(id, &keys, scorer, [0; 32]);
            for d in outcome
                .decisions
                .iter()
                .filter(|d| d.close_contact && d.day == day_u32)
            {
                let other = PersonId(u32::from_be_bytes([
                    d.device.0[0],
                    d.device.0[1],
                    d.device.0[2],
                    d.device.0[3],
                ]));
                if other == case {
                    continue;
                }
                let (a, b) = if case < other {
                    (case, other)
                } else {
                    (other, case)
                };
                self.decided.insert(((day - start_day) as u32, a, b));
            }
        }
        Ok(())
    }

    /// The pair-days judged close so far.
    pub fn decided_close_contacts(&self) -> &BTreeSet<(u32, PersonId, PersonId)> {
        &self.decided
    }
}

fn seed_for(seed: u64, purpose: u64, id: u64) -> [u8; 32] {
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ purpose.rotate_left(48) ^ id.rotate_left(17));
    let mut out = [0u8; 32];
    r.fill_bytes(&mut out);
    out
}

/// The edge that serves a person (by household), out of `edges`.
pub fn edge_of_home(home: RoomId, edges: usize) -> usize {
    home.0 as usize % edges.max(1)
}

impl Player {
    /// Phones for the city's app users, sensors for its sensor rooms, keys from `seed`. The
    /// laboratory's key and the edges' matching skew come with [`Player::set_network`] once
    /// the network exists; until then a placeholder laboratory and no skew.
    pub fn new(
        city: &City,
        seed: u64,
        edges: usize,
        pool: usize,
        chain_id: &str,
        issue_now_s: u64,
    ) -> anyhow::Result<Player> {
        let pop = city.population();
        let filter = SightingFilter {
            retention_s: LOG_RETENTION_S,
            ..SightingFilter::default()
        };
        let mut phones = Vec::new();
        let mut phone_of = HashMap::new();
        for p in pop.people.iter().filter(|p| p.app) {
            let key = Keypair::from_seed(seed_for(seed, 1, u64::from(p.id.0)));
            let model = p.device_model();
            phone_of.insert(p.id, phones.len());
            phones.push(Phone {
                person: p.id,
                edge: edge_of_home(p.home, edges),
                identity: DeviceIdentity::new(key.clone(), 0),
                key,
                model,
                broadcaster: Broadcaster::new(model.tx_power_dbm as i8),
                rng: ChaCha8Rng::from_seed(seed_for(seed, 2, u64::from(p.id.0))),
                recent: Vec::new(),
                log: SightingLog::new(filter)?,
            });
        }
        let mut sensors = Vec::new();
        let mut sensor_of = HashMap::new();
        for r in pop.rooms.iter().filter(|r| r.sensor) {
            let key = Keypair::from_seed(seed_for(seed, 3, u64::from(r.id.0)));
            sensor_of.insert(r.id, sensors.len());
            sensors.push(Sensor {
                room: r.id,
                edge: r.id.0 as usize % edges.max(1),
                identity: DeviceIdentity::new(key.clone(), 0),
                key,
                secret: VenueSecret(seed_for(seed, 4, u64::from(r.id.0))),
            });
        }
        Ok(Player {
            phones,
            phone_of,
            sensors,
            sensor_of,
            pool: pool.max(1),
            lab: Keypair::from_seed(seed_for(seed, 5, 0)),
            chain_id: chain_id.to_string(),
            issue_now_s,
            eval_out: Vec::new(),
            next_eval_day: None,
            cert_seq: 0,
        })
    }

    /// The laboratory clinician that certifies confirmed cases (known once the network
    /// exists).
    pub fn set_lab(&mut self, lab: Keypair) {
        self.lab = lab;
    }

    /// What the evaluation is to be given since the last call, in order.
    pub fn take_eval_inputs(&mut self) -> Vec<EvalInput> {
        std::mem::take(&mut self.eval_out)
    }

    /// Every device to register: phones, then sensors.
    pub fn devices(&self) -> Vec<DeviceKey> {
        let mut out: Vec<DeviceKey> = self
            .phones
            .iter()
            .map(|p| DeviceKey {
                key: p.key.clone(),
                sensor: false,
                model: p.model.name.to_string(),
            })
            .collect();
        out.extend(self.sensors.iter().map(|s| DeviceKey {
            key: s.key.clone(),
            sensor: true,
            model: "citysim-aq".into(),
        }));
        out
    }

    fn slot_of(&self, id: u32) -> usize {
        id as usize % self.pool
    }

    /// Plays one hour of the city's stream.
    pub fn play_hour(
        &mut self,
        city: &City,
        hour: &trustedge_citysim::Hour,
    ) -> anyhow::Result<HourWork> {
        let end_s = hour.start_s + 3600;
        let mut work = HourWork {
            index: hour.index,
            end_s,
            ..HourWork::default()
        };
        let mut confirmed = Vec::new();
        for e in &hour.events {
            work.raw_bytes += e.raw_bytes();
            match e {
                Event::Encounter(piece) => {
                    let (Some(&ia), Some(&ib)) =
                        (self.phone_of.get(&piece.a), self.phone_of.get(&piece.b))
                    else {
                        continue;
                    };
                    work.encounters += 1;
                    for (obs, heard, person) in [(ia, ib, piece.a), (ib, ia, piece.b)] {
                        let batch = city.sightings(piece, person)?;
                        work.samples += batch.samples.len() as u64;
                        // Scan records: 29 bytes each on the device.
                        work.raw_bytes += 29 * batch.samples.len() as u64;
                        for (t, rssi) in batch.samples {
                            let Some(ad) = self.ad_at(heard, t)? else {
                                continue;
                            };
                            self.advance(obs, t)?;
                            let sighting = Sighting {
                                rpi: ad.rpi,
                                aem: ad.aem,
                                rssi_dbm: rssi,
                                time_s: t,
                            };
                            if self.phones[obs].log.record(sighting, t).is_err() {
                                work.refused_samples += 1;
                            }
                        }
                    }
                }
                Event::Air(a) => {
                    let Some(&i) = self.sensor_of.get(&a.room) else {
                        continue;
                    };
                    let slot = self.slot_of(a.room.0);
                    let s = &mut self.sensors[i];
                    let reading = s.identity.sign_reading(
                        a.reading.t_s * 1000,
                        AIR_QUALITY_KIND,
                        encode_air_quality(&a.reading),
                    )?;
                    work.air.push(Outgoing {
                        edge: s.edge,
                        slot,
                        reading,
                        items: 1,
                    });
                }
                Event::Confirmed { person, time_s } => match self.phone_of.get(person) {
                    Some(&i) => {
                        let onset = city.epi(*person).and_then(|e| e.observed_onset_s());
                        confirmed.push((i, *time_s, onset));
                    }
                    None => work.confirmed_without_app.push(*person),
                },
                _ => {}
            }
        }
        self.uploads(
            end_s,
            end_s.saturating_sub(3600 + MAX_ROTATION_S),
            &mut work,
        )?;
        // Diagnosis uploads are signed after the hour's encounter uploads: the driver
        // publishes them after those, and an edge refuses a device's reading whose sequence
        // number is not above the last one it stored (signed first, a confirmation was
        // refused as replayed whenever the phone also uploaded encounters that hour).
        for (i, time_s, onset) in confirmed {
            let c = self.confirm(i, time_s, onset)?;
            work.confirmations.push(c);
        }
        Ok(work)
    }

    /// The final uploads after the last hour ending at `end_s`: everything not yet sent.
    pub fn flush(&mut self, end_s: u64) -> anyhow::Result<HourWork> {
        let mut work = HourWork {
            end_s,
            ..HourWork::default()
        };
        self.uploads(
            u64::MAX,
            end_s.saturating_sub(3600 + MAX_ROTATION_S),
            &mut work,
        )?;
        Ok(work)
    }

    /// Uploads of every phone: encounters first heard in `[from_s, until - 1200)` (all
    /// from `from_s` on when `until` is `u64::MAX`).
    fn uploads(&mut self, until: u64, from_s: u64, work: &mut HourWork) -> anyhow::Result<()> {
        let to_s = until.saturating_sub(MAX_ROTATION_S);
        let now = if until == u64::MAX { work.end_s } else { until };
        for i in 0..self.phones.len() {
            let p = &mut self.phones[i];
            if p.log.is_empty() {
                continue;
            }
            let encounters: Vec<_> = p
                .log
                .encounters(now.max(p.recent.last().map_or(0, |r| r.0)))
                .into_iter()
                .filter(|e| e.first_seen_s >= from_s && e.first_seen_s < to_s)
                .collect();
            p.log.prune(now);
            if encounters.is_empty() {
                continue;
            }
            let ups = uploads_by_own_rpi(
                p.broadcaster.log(),
                encounters,
                p.model.name,
                p.model.tx_power_dbm as i8,
            )?;
            let slot = p.person.0 as usize % self.pool;
            for u in &ups {
                work.own_rpis.push((u.own_rpi.0, p.person));
                self.eval_out.push(EvalInput::Upload(p.person, u.clone()));
            }
            // One signed reading per batch of uploads, not per upload: the phone signs and
            // its edge verifies and stores about a third as many readings.
            for batch in EncounterBatch::pack(ups)? {
                let items = batch.uploads.len() as u64;
                let reading =
                    p.identity
                        .sign_reading(now * 1000, BATCH_READING_KIND, batch.to_bytes()?)?;
                work.uploads.push(Outgoing {
                    edge: p.edge,
                    slot,
                    reading,
                    items,
                });
            }
        }
        Ok(())
    }

    fn confirm(
        &mut self,
        i: usize,
        time_s: u64,
        onset_s: Option<u64>,
    ) -> anyhow::Result<Confirmation> {
        self.advance(i, time_s)?;
        let p = &self.phones[i];
        let keys = p
            .broadcaster
            .diagnosis_keys(time_s, ReportType::ConfirmedTest, None)?;
        self.cert_seq += 1;
        let mut cert_id = [0u8; 16];
        cert_id[..8].copy_from_slice(&self.cert_seq.to_be_bytes());
        cert_id[8..12].copy_from_slice(&p.person.0.to_be_bytes());
        let cert = VerificationCertificate::issue_with_onset(
            &self.lab,
            &self.chain_id,
            cert_id,
            &keys,
            ReportType::ConfirmedTest,
            onset_s.map(|s| (s / DAY_S) as u32),
            self.issue_now_s..self.issue_now_s + 6 * 86_400,
        );
        let upload_id = keys_digest(&keys);
        let slot = p.person.0 as usize % self.pool;
        let edge = p.edge;
        let person = p.person;
        let reading = self.phones[i].identity.sign_reading(
            time_s * 1000,
            DIAGNOSIS_KIND,
            encode_diagnosis(keys, cert),
        )?;
        Ok(Confirmation {
            person,
            time_s,
            upload_id,
            out: Outgoing {
                edge,
                slot,
                reading,
                items: 1,
            },
        })
    }

    /// Advances phone `i`'s broadcaster to `t` (its rotations and midnights up to `t`).
    fn advance(&mut self, i: usize, t: u64) -> anyhow::Result<()> {
        let p = &mut self.phones[i];
        loop {
            let step = match (p.broadcaster.next_rotation_s(), p.recent.last()) {
                (Some(next), Some(&(last, _))) => next.min((last / DAY_S + 1) * DAY_S),
                // First advertisement: at the start of the day of `t`.
                _ => t - t % DAY_S,
            };
            if step > t {
                break;
            }
            let mut random = [0u8; 32];
            p.rng.fill_bytes(&mut random);
            let ad = p.broadcaster.advertise(step, random)?;
            if p.recent.last().is_none_or(|r| r.1.rpi != ad.rpi) {
                p.recent.push((step, ad));
            }
            if p.recent.len() > 512 {
                p.recent.drain(..256);
            }
        }
        Ok(())
    }

    /// The advertisement phone `i` had on air at `t` (`None` before its first one).
    fn ad_at(&mut self, i: usize, t: u64) -> anyhow::Result<Option<Advertisement>> {
        self.advance(i, t)?;
        let r = &self.phones[i].recent;
        let k = r.partition_point(|x| x.0 <= t);
        Ok(k.checked_sub(1).and_then(|k| r.get(k)).map(|x| x.1))
    }

    /// Evaluation only (never part of the system): hands the [`Evaluator`] each UTC day
    /// whose encounters have all been uploaded by `now_s` (hours end at `now_s`; an
    /// encounter first heard before midnight is complete and uploaded once
    /// `now_s − MAX_ROTATION_S` reaches that midnight) and that was not handed over yet,
    /// with every app user's key of that day. Days from `start_s` on only; `now_s` is the
    /// end of the last hour played (after [`Player::flush`], that end plus
    /// `MAX_ROTATION_S`), so the days judged are days the city played.
    pub fn evaluate_complete_days(&mut self, now_s: u64, start_s: u64) -> anyhow::Result<()> {
        let start_day = start_s / DAY_S;
        let complete_before = now_s.saturating_sub(MAX_ROTATION_S) / DAY_S;
        let mut day = self.next_eval_day.unwrap_or(start_day).max(start_day);
        while day < complete_before {
            let keys = self.keys_of_day(day)?;
            self.eval_out.push(EvalInput::Day {
                day,
                start_day,
                keys,
            });
            day += 1;
        }
        self.next_eval_day = Some(day);
        Ok(())
    }

    /// Each phone's diagnosis keys of `day` (days since the epoch), phones without one left
    /// out.
    fn keys_of_day(&mut self, day: u64) -> anyhow::Result<Vec<(PersonId, Vec<DiagnosisKey>)>> {
        let day_start_s = day * DAY_S;
        let mut out = Vec::new();
        for i in 0..self.phones.len() {
            self.advance(i, day_start_s + DAY_S - 1)?;
            let p = &self.phones[i];
            let keys: Vec<_> = p
                .broadcaster
                .diagnosis_keys(day_start_s + DAY_S - 1, ReportType::ConfirmedTest, None)?
                .into_iter()
                .filter(|k| {
                    u64::from(k.rolling_start_interval_number)
                        * trustedge_tracing::INTERVAL_LENGTH_S
                        == day_start_s
                })
                .collect();
            if !keys.is_empty() {
                out.push((p.person, keys));
            }
        }
        Ok(out)
    }
}

/// The evaluation engine's device link of a person: its id, big-endian, then zeros.
fn person_link(p: PersonId) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..4].copy_from_slice(&p.0.to_be_bytes());
    out
}

/// A room's venue id on `day` (days since the epoch).
pub fn venue_of(secret: &VenueSecret, day: u32) -> [u8; 16] {
    trustedge_aerosol::alert::VenueId::derive(secret, day).0
}
