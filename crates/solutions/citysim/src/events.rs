//! The hourly event stream a driver feeds into devices and edges.

use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use trustedge_aerosol::risk::{CO2_GENERATION_M3_PER_H_PER_PERSON, OUTDOOR_CO2_PPM, Reading};
use trustedge_distance::channel::{LinkContext, SessionConfig, generate_session};
use trustedge_distance::fusion::RangingErrorModel;

use crate::plan::{DayPlan, EncounterPiece};
use crate::population::PlaceKind;
use crate::rng::{chance, normal, range, stream, tag};
use crate::{City, CityError, DAY_S, PersonId, RoomId};

/// RSSI samples one device heard of another.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SightingBatch {
    /// The scanning person's device.
    pub observer: PersonId,
    /// The advertising person's device (the driver maps it to the RPI on air at each time).
    pub heard: PersonId,
    /// The room (ground truth, not a signal).
    pub room: RoomId,
    /// `(unix s, rssi dBm)` in time order.
    pub samples: Vec<(u64, i8)>,
    /// `(unix s, range cm)` in time order: UWB ranges of the heard device, when both phone
    /// models have UWB (one per scan that heard it; noise and NLOS bias from
    /// [`trustedge_distance::fusion::RangingErrorModel::UWB`], NLOS more likely with a body
    /// between). Empty otherwise.
    pub ranges: Vec<(u64, u32)>,
}

/// One air-quality reading of a sensor room.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AirReading {
    /// The sensor's room.
    pub room: RoomId,
    /// The reading.
    pub reading: Reading,
}

/// One event of the stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An app user's visit to a non-home room (venue-beacon presence).
    Visit(crate::Visit),
    /// Two app users within BLE range (when sightings are not materialised).
    Encounter(EncounterPiece),
    /// BLE sightings (when materialised).
    Sightings(SightingBatch),
    /// An air-quality reading.
    Air(AirReading),
    /// Symptom onset of a symptomatic infection.
    Onset {
        /// Who.
        person: PersonId,
        /// When.
        time_s: u64,
    },
    /// A test taken.
    Tested {
        /// Who.
        person: PersonId,
        /// When.
        time_s: u64,
    },
    /// A positive test result: the case is confirmed (the driver uploads its keys).
    Confirmed {
        /// Who.
        person: PersonId,
        /// When.
        time_s: u64,
    },
}

/// Event kinds, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventKind {
    /// [`Event::Visit`].
    Visit,
    /// [`Event::Encounter`].
    Encounter,
    /// [`Event::Sightings`].
    Sightings,
    /// [`Event::Air`].
    Air,
    /// [`Event::Onset`], [`Event::Tested`], [`Event::Confirmed`].
    Clinical,
}

impl Event {
    /// When it happens (for sightings: the first sample or none).
    pub fn time_s(&self) -> u64 {
        match self {
            Event::Visit(v) => v.start_s,
            Event::Encounter(e) => e.start_s,
            Event::Sightings(s) => s.samples.first().map_or(0, |x| x.0),
            Event::Air(a) => a.reading.t_s,
            Event::Onset { time_s, .. }
            | Event::Tested { time_s, .. }
            | Event::Confirmed { time_s, .. } => *time_s,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Visit(_) => EventKind::Visit,
            Event::Encounter(_) => EventKind::Encounter,
            Event::Sightings(_) => EventKind::Sightings,
            Event::Air(_) => EventKind::Air,
            _ => EventKind::Clinical,
        }
    }

    /// Bytes of raw data it stands for on a device / at an edge: a GAEN scan record is
    /// 29 bytes (RPI 16, AEM 4, RSSI 1, time 8), an air reading 48, a visit 24, a clinical
    /// event 12.
    pub fn raw_bytes(&self) -> u64 {
        match self {
            Event::Sightings(s) => 29 * s.samples.len() as u64,
            Event::Encounter(_) => 0,
            Event::Air(_) => 48,
            Event::Visit(_) => 24,
            _ => 12,
        }
    }
}

/// One simulated hour of events, in time order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hour {
    /// Hour index from the start.
    pub index: u32,
    /// Unix time of its start.
    pub start_s: u64,
    /// Its events.
    pub events: Vec<Event>,
}

/// Counts of a whole stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Hours.
    pub hours: u64,
    /// Visit events.
    pub visits: u64,
    /// Encounter pieces (materialised or not).
    pub encounters: u64,
    /// Sighting batches.
    pub sighting_batches: u64,
    /// RSSI samples.
    pub rssi_samples: u64,
    /// Air readings.
    pub air_readings: u64,
    /// Onset / test / confirmation events.
    pub clinical: u64,
    /// Raw bytes ([`Event::raw_bytes`]).
    pub raw_bytes: u64,
}

impl Summary {
    /// Adds an hour.
    pub fn add(&mut self, hour: &Hour) {
        self.hours += 1;
        for e in &hour.events {
            self.raw_bytes += e.raw_bytes();
            match e {
                Event::Visit(_) => self.visits += 1,
                Event::Encounter(_) => self.encounters += 1,
                Event::Sightings(s) => {
                    self.sighting_batches += 1;
                    self.rssi_samples += s.samples.len() as u64;
                }
                Event::Air(_) => self.air_readings += 1,
                _ => self.clinical += 1,
            }
        }
    }
}

struct DayState {
    plan: DayPlan,
    pieces: Vec<EncounterPiece>,
    next_piece: usize,
    /// Per sensor room: (room, occupancy per air step).
    occupancy: Vec<(RoomId, Vec<u32>)>,
}

/// Iterator over the hours of a city (see [`City::hours`]).
pub struct Hours<'a> {
    city: &'a City,
    hour: u32,
    day: Option<DayState>,
    /// Per sensor room: CO₂ ppm and PM2.5 excess carried across steps.
    air: Vec<(f64, f64)>,
    clinical: Vec<Event>,
    next_clinical: usize,
}

impl City {
    /// The event stream: one [`Hour`] per simulated hour, day plans regenerated from the
    /// seed as the stream enters each day (memory: one day at a time).
    pub fn hours(&self) -> Hours<'_> {
        let mut clinical = Vec::new();
        for e in &self.truth().epi {
            if e.symptomatic {
                clinical.push(Event::Onset {
                    person: e.person,
                    time_s: e.onset_s,
                });
            }
            if let Some(t) = e.tested_s {
                clinical.push(Event::Tested {
                    person: e.person,
                    time_s: t,
                });
            }
            if let Some(t) = e.confirmed_s {
                clinical.push(Event::Confirmed {
                    person: e.person,
                    time_s: t,
                });
            }
        }
        clinical.sort_by_key(|e| e.time_s());
        let sensors = self.population().rooms.iter().filter(|r| r.sensor).count();
        Hours {
            city: self,
            hour: 0,
            day: None,
            air: vec![(OUTDOOR_CO2_PPM, 0.0); sensors],
            clinical,
            next_clinical: 0,
        }
    }

    /// The link between `observer` (one side of `piece`) and the other side during the
    /// piece: carry positions, body, orientation drawn per pair and piece, the room's
    /// environment. Ground truth (for breaking results down), not a signal.
    pub fn link_context(&self, piece: &EncounterPiece, observer: PersonId) -> LinkContext {
        self.link(piece, observer).0
    }

    fn link(&self, piece: &EncounterPiece, observer: PersonId) -> (LinkContext, ChaCha8Rng) {
        let heard = if observer == piece.a {
            piece.b
        } else {
            piece.a
        };
        let pop = self.population();
        let (tx, rx) = (
            pop.person(heard).device_model(),
            pop.person(observer).device_model(),
        );
        let mut rng = stream(
            self.seed(),
            tag::LINK,
            (u64::from(observer.0) << 32) | u64::from(heard.0),
            piece.start_s.saturating_sub(self.config().start_s),
        );
        let mut ctx = LinkContext::random(tx, rx, &mut rng);
        ctx.environment = pop.room(piece.room).kind.environment();
        (ctx, rng)
    }

    /// The RSSI samples `observer` (one side of `piece`) heard of the other side: true
    /// distance through [`trustedge_distance::channel::generate_session`] with the
    /// [`City::link_context`] of the pair and piece, scanned every
    /// [`CityConfig::scan_interval_s`](crate::CityConfig) with
    /// [`CityConfig::adverts_per_scan`](crate::CityConfig) adverts heard per scan; and,
    /// when both phones have UWB, one UWB range per scan that heard the peer.
    pub fn sightings(
        &self,
        piece: &EncounterPiece,
        observer: PersonId,
    ) -> Result<SightingBatch, CityError> {
        let heard = if observer == piece.a {
            piece.b
        } else {
            piece.a
        };
        let (ctx, mut rng) = self.link(piece, observer);
        let interval = self.config().scan_interval_s;
        let cfg = SessionConfig {
            duration_s: piece.end_s.saturating_sub(piece.start_s + 1),
            scan_interval_s: interval,
            scan_jitter_s: 5.min(interval / 2 - 1),
            adverts_per_scan: self.config().adverts_per_scan,
            ..SessionConfig::default()
        };
        let samples = generate_session(
            f64::from(piece.distance_m),
            &ctx,
            &cfg,
            piece.start_s,
            &mut rng,
        )?;
        let mut ranges = Vec::new();
        if ctx.tx.uwb && ctx.rx.uwb {
            let model = RangingErrorModel {
                nlos_probability: if ctx.body_between { 0.6 } else { 0.15 },
                ..RangingErrorModel::UWB
            };
            let mut last = None;
            for &(t, _) in &samples {
                if last == Some(t) {
                    continue;
                }
                last = Some(t);
                let r = model.simulate(f64::from(piece.distance_m), &mut rng);
                let cm = (r.estimate.meters * 100.0).round().clamp(1.0, 50_000.0) as u32;
                ranges.push((t, cm));
            }
        }
        Ok(SightingBatch {
            observer,
            heard,
            room: piece.room,
            samples,
            ranges,
        })
    }

    /// Runs the whole stream and counts it.
    pub fn summary(&self) -> Result<Summary, CityError> {
        let mut s = Summary::default();
        for h in self.hours() {
            s.add(&h?);
        }
        Ok(s)
    }
}

impl Hours<'_> {
    fn enter_day(&mut self, day: u32) -> DayState {
        let city = self.city;
        let plan = city.day_plan(day);
        let pieces = city.encounter_pieces(&plan);
        let step = city.config().air_step_s;
        let day_start = city.config().start_s + u64::from(day) * DAY_S;
        let steps = (DAY_S / step) as usize;
        let mut occupancy = Vec::new();
        for (room, r) in &plan.rooms {
            if !city.population().room(*room).sensor {
                continue;
            }
            let mut occ = vec![0u32; steps];
            for s in &plan.stints[r.clone()] {
                // steps whose time t satisfies start ≤ t < end
                let from = (s.start_s - day_start).div_ceil(step) as usize;
                let to = (s.end_s - day_start).div_ceil(step) as usize;
                for o in occ.iter_mut().take(to.min(steps)).skip(from) {
                    *o += 1;
                }
            }
            occupancy.push((*room, occ));
        }
        DayState {
            plan,
            pieces,
            next_piece: 0,
            occupancy,
        }
    }

    fn next_hour(&mut self) -> Result<Option<Hour>, CityError> {
        let city = self.city;
        let cfg = city.config();
        if self.hour >= cfg.days * 24 {
            return Ok(None);
        }
        let day = self.hour / 24;
        if self.hour.is_multiple_of(24) || self.day.is_none() {
            self.day = Some(self.enter_day(day));
        }
        let start_s = cfg.start_s + u64::from(self.hour) * 3600;
        let end_s = start_s + 3600;
        let mut events = Vec::new();
        let Some(state) = self.day.as_mut() else {
            return Ok(None);
        };
        let pop = city.population();
        for v in state
            .plan
            .visits
            .iter()
            .filter(|v| v.start_s >= start_s && v.start_s < end_s)
        {
            if pop.person(v.person).app && pop.room(v.room).kind != PlaceKind::Home {
                events.push(Event::Visit(*v));
            }
        }
        while let Some(piece) = state.pieces.get(state.next_piece) {
            if piece.start_s >= end_s {
                break;
            }
            state.next_piece += 1;
            if cfg.materialize_sightings {
                for observer in [piece.a, piece.b] {
                    let batch = city.sightings(piece, observer)?;
                    if !batch.samples.is_empty() {
                        events.push(Event::Sightings(batch));
                    }
                }
            } else {
                events.push(Event::Encounter(*piece));
            }
        }
        // air readings
        let step = cfg.air_step_s;
        let day_start = cfg.start_s + u64::from(day) * DAY_S;
        for (k, room) in pop.rooms.iter().filter(|r| r.sensor).enumerate() {
            let occ = state
                .occupancy
                .iter()
                .find(|(r, _)| *r == room.id)
                .map(|(_, o)| o.as_slice());
            let mut rng = stream(
                city.seed(),
                tag::AIR,
                u64::from(room.id.0),
                u64::from(self.hour),
            );
            let Some((co2, pm)) = self.air.get_mut(k) else {
                continue;
            };
            let mut t = start_s;
            while t < end_s {
                let i = ((t - day_start) / step) as usize;
                let n = occ.and_then(|o| o.get(i)).copied().unwrap_or(0);
                let dt_h = step as f64 / 3600.0;
                let ach = room.ach_per_h.max(0.05);
                let css = OUTDOOR_CO2_PPM
                    + f64::from(n) * CO2_GENERATION_M3_PER_H_PER_PERSON * 1e6
                        / (room.volume_m3 * ach);
                *co2 = css + (*co2 - css) * (-ach * dt_h).exp();
                // PM2.5 excess: cooking in restaurants at meal times, random spikes, decay
                *pm *= (-(ach + 1.5) * dt_h).exp();
                let hour_of_day = (t - day_start) / 3600;
                if room.kind == PlaceKind::Restaurant
                    && n > 0
                    && (hour_of_day == 12 || hour_of_day == 19)
                {
                    *pm += range(&mut rng, 2.0, 8.0);
                }
                if chance(&mut rng, 0.002) {
                    *pm += range(&mut rng, 30.0, 80.0);
                }
                let reading = Reading {
                    t_s: t,
                    co2_ppm: (*co2 + 15.0 * normal(&mut rng)).max(300.0),
                    pm25_ug_m3: (6.0 + *pm + 1.0 * normal(&mut rng)).max(0.0),
                    temperature_c: 21.0 + 0.02 * f64::from(n) + 0.2 * normal(&mut rng),
                    humidity_pct: (40.0 + 0.05 * f64::from(n) + normal(&mut rng)).clamp(0.0, 100.0),
                    occupancy: n,
                };
                events.push(Event::Air(AirReading {
                    room: room.id,
                    reading,
                }));
                t += step;
            }
        }
        while let Some(e) = self.clinical.get(self.next_clinical) {
            if e.time_s() >= end_s {
                break;
            }
            if e.time_s() >= start_s {
                events.push(e.clone());
            }
            self.next_clinical += 1;
        }
        events.sort_by_key(Event::time_s);
        let hour = Hour {
            index: self.hour,
            start_s,
            events,
        };
        self.hour += 1;
        Ok(Some(hour))
    }
}

impl Iterator for Hours<'_> {
    type Item = Result<Hour, CityError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_hour().transpose()
    }
}
