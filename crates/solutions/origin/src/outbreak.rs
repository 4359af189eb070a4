//! A seeded synthetic outbreak with a known transmission tree, for tests and for measuring
//! the inference against the "earliest symptom onset" baseline.
//!
//! # The world
//!
//! `population` people in households (1–4 people), workplaces (about `workplace_size`) and
//! `venues` (rooms of 150–500 m³; a third badly ventilated, 0.2–1 air changes per hour, the
//! rest 2–6) with `sessions_per_day` two-hour sessions a day. Every day household members
//! meet for an evening (score 40–100 weighted minutes), each pair of co-workers meets with
//! probability `work_meet_per_day` (10–90 min at 0.2–0.8 closeness), and each person visits
//! one venue session with probability `venue_visit_per_day`; co-attendees share the room's
//! air and have a close contact with probability `venue_contact_per_pair`.
//!
//! Whether two people meet on a day, and whether an exposure transmits, is decided by a hash
//! of (seed, the pair, the day, the kind), so both sides see the same encounter and the
//! draws do not depend on the order of the simulation.
//!
//! # The epidemic
//!
//! One index case is infected on day 0. An infected person's onset is infection plus a
//! lognormal incubation, its infectiousness follows [`EpiModel::relative_infectiousness`]
//! (reduced by [`EpiModel::asymptomatic_infectiousness`] for the `asymptomatic_fraction`),
//! and it is confirmed (with probability `ascertain_symptomatic` / `ascertain_asymptomatic`)
//! at onset plus a lognormal delay, after which it isolates. An exposure at `t` transmits
//! with probability `p · ρ(t − onset)` (`p`: `1 − exp(−k·score)` for a close contact, the
//! box-model probability for a shared room), in infection-time order (each person's first
//! transmission wins). The same model generates and infers — an idealisation to keep in mind
//! when reading the figures.
//!
//! # What the cloud observes
//!
//! Confirmed cases (onset hidden for asymptomatic ones, reported with a normal error of
//! `onset_report_sd_days` for the others), the close-contact encounters
//! between them before either isolated (each detected with probability `ble_detection`, its
//! score with lognormal noise), and the room windows whose box-model probability (one
//! infector at `quanta_per_h`) reaches `room_alert_threshold`, with the confirmed cases
//! present.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng as _};
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};
use trustedge_contacts::{CaseId, Encounter};

use crate::model::{Case, DAY_S, EpiModel, RoomWindow, VenueId};

/// The shape of a synthetic outbreak.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutbreakSpec {
    /// People (ids `0 .. population`).
    pub population: u32,
    /// Mean people per workplace.
    pub workplace_size: u32,
    /// Venues (rooms).
    pub venues: u32,
    /// Two-hour sessions per venue per day.
    pub sessions_per_day: u32,
    /// Days simulated (and observed).
    pub days: u32,
    /// Chance a person visits a venue session on a day.
    pub venue_visit_per_day: f64,
    /// Chance two co-workers meet on a day.
    pub work_meet_per_day: f64,
    /// Chance two co-attendees of a session have a close contact.
    pub venue_contact_per_pair: f64,
    /// Infected people without symptoms.
    pub asymptomatic_fraction: f64,
    /// Chance a symptomatic infection is confirmed.
    pub ascertain_symptomatic: f64,
    /// Chance an asymptomatic infection is confirmed.
    pub ascertain_asymptomatic: f64,
    /// Chance an encounter between two confirmed cases was recorded.
    pub ble_detection: f64,
    /// Quanta per hour emitted by one infectious person at peak.
    pub quanta_per_h: f64,
    /// Breathing rate, m³/h.
    pub breathing_m3_per_h: f64,
    /// Least box-model probability of a published room window.
    pub room_alert_threshold: f64,
    /// Standard deviation of the error of a reported onset, days (recall; 0: exact).
    pub onset_report_sd_days: f64,
    /// Time of day 0, seconds.
    pub start_s: u64,
    /// The natural history (also what inference assumes).
    pub model: EpiModel,
}

impl Default for OutbreakSpec {
    fn default() -> Self {
        OutbreakSpec {
            population: 800,
            workplace_size: 10,
            venues: 12,
            sessions_per_day: 2,
            days: 21,
            venue_visit_per_day: 0.25,
            work_meet_per_day: 0.25,
            venue_contact_per_pair: 0.15,
            asymptomatic_fraction: 0.3,
            ascertain_symptomatic: 0.85,
            ascertain_asymptomatic: 0.5,
            ble_detection: 0.9,
            quanta_per_h: 25.0,
            breathing_m3_per_h: 0.52,
            room_alert_threshold: 0.03,
            onset_report_sd_days: 1.0,
            start_s: 1_600_000_000,
            model: EpiModel::default(),
        }
    }
}

/// The truth about one infected person.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Infection {
    /// The person.
    pub id: CaseId,
    /// Who infected them (`None`: the index case).
    pub infector: Option<CaseId>,
    /// When, seconds.
    pub infection_s: u64,
    /// Whether they were confirmed within the observed days.
    pub confirmed: bool,
}

/// A generated outbreak: what the cloud observes, and the truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outbreak {
    /// Confirmed cases, by id.
    pub cases: Vec<Case>,
    /// Recorded close-contact encounters between confirmed cases.
    pub encounters: Vec<Encounter>,
    /// Published elevated-risk room windows with at least two confirmed cases present.
    pub rooms: Vec<RoomWindow>,
    /// Every infection, in infection order (the first is the index case).
    pub infections: Vec<Infection>,
    /// The index case.
    pub index_case: CaseId,
}

impl Outbreak {
    /// The true origin of a set of cases: the one infected first (`None` if none of them is
    /// infected).
    pub fn true_origin(&self, cases: &[CaseId]) -> Option<CaseId> {
        self.infections
            .iter()
            .filter(|i| cases.contains(&i.id))
            .min_by_key(|i| (i.infection_s, i.id))
            .map(|i| i.id)
    }
}

/// Infection probability of one person sharing a well-mixed room for `hours` with one
/// infector emitting `quanta_per_h` (Miller et al. 2021 box model: loss rate = ventilation +
/// 0.62 h⁻¹ decay + 0.3 h⁻¹ deposition; mean concentration over the stay; `1 − e^(−n)`).
pub fn box_model_probability(
    volume_m3: f64,
    ach_per_h: f64,
    quanta_per_h: f64,
    breathing_m3_per_h: f64,
    hours: f64,
) -> f64 {
    let lambda = ach_per_h + 0.62 + 0.3;
    let lt = lambda * hours;
    let mean = quanta_per_h / (lambda * volume_m3) * (1.0 - (1.0 - (-lt).exp()) / lt);
    1.0 - (-mean * breathing_m3_per_h * hours).exp()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) keyed by (seed, tag, a, b, c).
fn coin(seed: u64, tag: u64, a: u64, b: u64, c: u64) -> f64 {
    let h = splitmix(splitmix(splitmix(splitmix(seed ^ tag) ^ a) ^ b) ^ c);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const T_HOME: u64 = 1;
const T_WORK: u64 = 2;
const T_VISIT: u64 = 3;
const T_VCLOSE: u64 = 4;
const T_TX: u64 = 5;
const T_OBS: u64 = 6;
const T_PERSON: u64 = 7;
const T_INDEX: u64 = 8;

const SESSION_S: u64 = 2 * 3600;

#[derive(Clone, Copy)]
enum Kind {
    Home,
    Work,
    VenueClose,
    Room(usize),
}

impl Kind {
    fn tag(self) -> u64 {
        match self {
            Kind::Home => 0,
            Kind::Work => 1,
            Kind::VenueClose => 2,
            Kind::Room(_) => 3,
        }
    }
}

/// One possible exposure between two people.
#[derive(Clone, Copy)]
struct Exposure {
    other: u32,
    t_s: u64,
    duration_s: u32,
    score: f64,
    kind: Kind,
    day: u32,
}

struct World {
    household: Vec<Vec<u32>>,
    home_of: Vec<u32>,
    work: Vec<Vec<u32>>,
    work_of: Vec<u32>,
    /// Per venue: (volume, ach).
    rooms: Vec<(f64, f64)>,
    /// attend[day][venue * sessions + session]: attendees, ascending.
    attend: Vec<Vec<Vec<u32>>>,
    /// visit[day][person]: the slot attended, if any.
    visit: Vec<Vec<Option<u32>>>,
}

fn build_world(spec: &OutbreakSpec, seed: u64, rng: &mut ChaCha8Rng) -> World {
    let n = spec.population.max(2) as usize;
    let unit = |rng: &mut ChaCha8Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut household = Vec::new();
    let mut home_of = vec![0u32; n];
    let mut p = 0usize;
    while p < n {
        let size = (1 + (unit(rng) * 4.0) as usize).min(n - p);
        let h = household.len() as u32;
        household.push((p..p + size).map(|x| x as u32).collect());
        home_of[p..p + size].fill(h);
        p += size;
    }
    // Workplaces: a random permutation cut into groups.
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    let wsize = spec.workplace_size.max(1) as usize;
    let mut work = Vec::new();
    let mut work_of = vec![0u32; n];
    for chunk in perm.chunks(wsize) {
        let w = work.len() as u32;
        let mut g = chunk.to_vec();
        g.sort_unstable();
        for &x in &g {
            work_of[x as usize] = w;
        }
        work.push(g);
    }
    let venues = spec.venues.max(1) as usize;
    let rooms = (0..venues)
        .map(|_| {
            let volume = 150.0 + 350.0 * unit(rng);
            let ach = if unit(rng) < 1.0 / 3.0 {
                0.2 + 0.8 * unit(rng)
            } else {
                2.0 + 4.0 * unit(rng)
            };
            (volume, ach)
        })
        .collect();
    let sessions = spec.sessions_per_day.max(1) as usize;
    let mut attend = Vec::with_capacity(spec.days as usize);
    let mut visit = Vec::with_capacity(spec.days as usize);
    for d in 0..spec.days {
        let mut slots = vec![Vec::new(); venues * sessions];
        let mut today = vec![None; n];
        for (x, slot_of) in today.iter_mut().enumerate() {
            let c = coin(seed, T_VISIT, x as u64, u64::from(d), 0);
            if c < spec.venue_visit_per_day {
                let slot = (coin(seed, T_VISIT, x as u64, u64::from(d), 1)
                    * (venues * sessions) as f64) as usize;
                let slot = slot.min(venues * sessions - 1);
                slots[slot].push(x as u32);
                *slot_of = Some(slot as u32);
            }
        }
        attend.push(slots);
        visit.push(today);
    }
    World {
        household,
        home_of,
        work,
        work_of,
        rooms,
        attend,
        visit,
    }
}

impl World {
    /// Every exposure of person `u` on day `d` (each with the same times and scores as seen
    /// from the other side).
    fn exposures(&self, spec: &OutbreakSpec, seed: u64, u: u32, d: u32, out: &mut Vec<Exposure>) {
        let day0 = spec.start_s + u64::from(d) * 86_400;
        let dd = u64::from(d);
        for &v in &self.household[self.home_of[u as usize] as usize] {
            if v == u {
                continue;
            }
            let (a, b) = (u64::from(u.min(v)), u64::from(u.max(v)));
            let c = coin(seed, T_HOME, a, b, dd);
            out.push(Exposure {
                other: v,
                t_s: day0 + 18 * 3600 + (c * 2.0 * 3600.0) as u64,
                duration_s: 3 * 3600 + (c * 7200.0) as u32,
                score: 40.0 + 60.0 * coin(seed, T_HOME, a, b, dd + 1_000_000),
                kind: Kind::Home,
                day: d,
            });
        }
        for &v in &self.work[self.work_of[u as usize] as usize] {
            if v == u {
                continue;
            }
            let (a, b) = (u64::from(u.min(v)), u64::from(u.max(v)));
            if coin(seed, T_WORK, a, b, dd) >= spec.work_meet_per_day {
                continue;
            }
            let c1 = coin(seed, T_WORK, a, b, dd + 1_000_000);
            let c2 = coin(seed, T_WORK, a, b, dd + 2_000_000);
            let minutes = 10.0 + 80.0 * c1;
            out.push(Exposure {
                other: v,
                t_s: day0 + 9 * 3600 + (c2 * 8.0 * 3600.0) as u64,
                duration_s: (minutes * 60.0) as u32,
                score: minutes * (0.2 + 0.6 * c2),
                kind: Kind::Work,
                day: d,
            });
        }
        if let Some(slot) = self.visit[d as usize][u as usize] {
            let sessions = spec.sessions_per_day.max(1) as usize;
            let slot = slot as usize;
            let start = day0 + 11 * 3600 + (slot % sessions) as u64 * 4 * 3600;
            for &v in &self.attend[d as usize][slot] {
                if v == u {
                    continue;
                }
                let (a, b) = (u64::from(u.min(v)), u64::from(u.max(v)));
                out.push(Exposure {
                    other: v,
                    t_s: start,
                    duration_s: SESSION_S as u32,
                    score: 0.0,
                    kind: Kind::Room(slot / sessions),
                    day: d,
                });
                let c = coin(seed, T_VCLOSE, a, b, dd);
                if c < spec.venue_contact_per_pair {
                    let c2 = coin(seed, T_VCLOSE, a, b, dd + 1_000_000);
                    out.push(Exposure {
                        other: v,
                        t_s: start + (c2 * 3600.0) as u64,
                        duration_s: 600 + (c2 * 1800.0) as u32,
                        score: 10.0 + 30.0 * c2,
                        kind: Kind::VenueClose,
                        day: d,
                    });
                }
            }
        }
    }

    fn room_probability(&self, spec: &OutbreakSpec, venue: usize) -> f64 {
        let (volume, ach) = self.rooms[venue];
        box_model_probability(volume, ach, spec.quanta_per_h, spec.breathing_m3_per_h, 2.0)
    }
}

/// Natural history of one infected person, drawn from its own stream.
#[derive(Clone, Copy)]
struct History {
    onset_s: u64,
    reported_onset_s: u64,
    asymptomatic: bool,
    confirmed: bool,
    confirmation_s: u64,
}

fn history(spec: &OutbreakSpec, seed: u64, person: u32, infection_s: u64) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(
        seed ^ splitmix(T_PERSON ^ (u64::from(person) << 8)),
    ));
    let m = &spec.model;
    let inc_days =
        LogNormal::new(m.incubation_mu, m.incubation_sigma).map_or(5.0, |d| d.sample(&mut rng));
    let delay_days = LogNormal::new(m.delay_mu, m.delay_sigma).map_or(3.0, |d| d.sample(&mut rng));
    let u1 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let asymptomatic = u1 < spec.asymptomatic_fraction;
    let ascertain = if asymptomatic {
        spec.ascertain_asymptomatic
    } else {
        spec.ascertain_symptomatic
    };
    let onset_s = infection_s + (inc_days * DAY_S) as u64;
    let confirmation_s = onset_s + (delay_days * DAY_S) as u64;
    let err_days = rand_distr::Normal::new(0.0, spec.onset_report_sd_days.max(0.0))
        .map_or(0.0, |d| d.sample(&mut rng));
    let reported = (onset_s as f64 + err_days * DAY_S).clamp(0.0, confirmation_s as f64);
    History {
        onset_s,
        reported_onset_s: reported as u64,
        asymptomatic,
        confirmed: u2 < ascertain,
        confirmation_s,
    }
}

/// Generates one outbreak from `seed` (the same spec and seed give the same outbreak).
pub fn generate_outbreak(spec: &OutbreakSpec, seed: u64) -> Outbreak {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let world = build_world(spec, seed, &mut rng);
    let n = world.home_of.len();
    let end_s = spec.start_s + u64::from(spec.days) * 86_400;
    let index = (rng.next_u64() % n as u64) as u32;
    let t0 = spec.start_s + (coin(seed, T_INDEX, 0, 0, 0) * DAY_S) as u64;
    let mut inf_time = vec![u64::MAX; n];
    let mut infector: Vec<Option<u32>> = vec![None; n];
    let mut hist: Vec<Option<History>> = vec![None; n];
    let mut settled = vec![false; n];
    let mut heap = BinaryHeap::new();
    inf_time[index as usize] = t0;
    heap.push(Reverse((t0, index)));
    let mut order = Vec::new();
    let mut buf = Vec::new();
    let m = &spec.model;
    while let Some(Reverse((t_inf, u))) = heap.pop() {
        let ui = u as usize;
        if settled[ui] || t_inf != inf_time[ui] {
            continue;
        }
        settled[ui] = true;
        order.push(u);
        let h = history(spec, seed, u, t_inf);
        hist[ui] = Some(h);
        let stop_s = if h.confirmed {
            h.confirmation_s.min(end_s)
        } else {
            end_s
        };
        let a = if h.asymptomatic {
            m.asymptomatic_infectiousness
        } else {
            1.0
        };
        let first_day = ((t_inf - spec.start_s) / 86_400) as u32;
        for d in first_day..spec.days {
            if spec.start_s + u64::from(d) * 86_400 >= stop_s {
                break;
            }
            buf.clear();
            world.exposures(spec, seed, u, d, &mut buf);
            for e in &buf {
                let vi = e.other as usize;
                if settled[vi] || e.t_s <= t_inf || e.t_s >= stop_s || e.t_s >= inf_time[vi] {
                    continue;
                }
                let p = match e.kind {
                    Kind::Room(venue) => world.room_probability(spec, venue),
                    _ => m.encounter_risk(e.score),
                };
                let tau = (e.t_s as f64 - h.onset_s as f64) / DAY_S;
                let prob = p * a * m.relative_infectiousness(tau);
                let key = u64::from(e.day) * 4 + e.kind.tag();
                let c = coin(seed, T_TX, u64::from(u), u64::from(e.other), key);
                if c < prob {
                    inf_time[vi] = e.t_s;
                    infector[vi] = Some(u);
                    heap.push(Reverse((e.t_s, e.other)));
                }
            }
        }
    }
    let infections: Vec<Infection> = order
        .iter()
        .map(|&p| {
            let h = hist[p as usize];
            Infection {
                id: CaseId(p),
                infector: infector[p as usize].map(CaseId),
                infection_s: inf_time[p as usize],
                confirmed: h.is_some_and(|h| h.confirmed && h.confirmation_s < end_s),
            }
        })
        .collect();
    // Observation: confirmed cases, their encounters before isolation, room windows.
    let mut confirm_of = vec![None; n];
    let mut cases = Vec::new();
    for inf in infections.iter().filter(|i| i.confirmed) {
        if let Some(h) = hist[inf.id.0 as usize] {
            confirm_of[inf.id.0 as usize] = Some(h.confirmation_s);
            cases.push(Case {
                id: inf.id,
                symptom_onset_s: (!h.asymptomatic).then_some(h.reported_onset_s),
                confirmation_s: h.confirmation_s,
            });
        }
    }
    cases.sort_by_key(|c| c.id);
    let mut encounters = Vec::new();
    let mut room_sets: std::collections::BTreeMap<(u32, usize), Vec<CaseId>> = Default::default();
    for c in &cases {
        let u = c.id.0;
        for d in 0..spec.days {
            buf.clear();
            world.exposures(spec, seed, u, d, &mut buf);
            for e in &buf {
                let Some(cv) = confirm_of[e.other as usize] else {
                    continue;
                };
                if e.t_s >= c.confirmation_s || e.t_s >= cv {
                    continue;
                }
                match e.kind {
                    Kind::Room(venue)
                        if world.room_probability(spec, venue) >= spec.room_alert_threshold =>
                    {
                        let slot = world.visit[d as usize][u as usize].unwrap_or(0) as usize;
                        room_sets.entry((d, slot)).or_default().push(c.id);
                    }
                    Kind::Room(_) => {}
                    _ if e.other > u => {
                        let (a, b) = (u64::from(u), u64::from(e.other));
                        let key = u64::from(e.day) * 4 + e.kind.tag();
                        if coin(seed, T_OBS, a, b, key) >= spec.ble_detection {
                            continue;
                        }
                        // Lognormal score noise (sigma 0.3) by Box–Muller on two coins.
                        let c1 = coin(seed, T_OBS, a, b, key + 1_000_000).max(1e-12);
                        let c2 = coin(seed, T_OBS, a, b, key + 2_000_000);
                        let z = (-2.0 * c1.ln()).sqrt() * (std::f64::consts::TAU * c2).cos();
                        encounters.push(Encounter {
                            a: c.id,
                            b: CaseId(e.other),
                            start_s: e.t_s,
                            duration_s: e.duration_s,
                            score: (e.score * (0.3 * z).exp()) as f32,
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    let sessions = spec.sessions_per_day.max(1) as usize;
    let mut rooms = Vec::new();
    for ((d, slot), mut ids) in room_sets {
        ids.sort_unstable();
        ids.dedup();
        if ids.len() < 2 {
            continue;
        }
        let venue = slot / sessions;
        let start =
            spec.start_s + u64::from(d) * 86_400 + 11 * 3600 + (slot % sessions) as u64 * 4 * 3600;
        let mut pseudonym = [0u8; 16];
        pseudonym[..8].copy_from_slice(&splitmix(seed ^ venue as u64).to_be_bytes());
        pseudonym[8..].copy_from_slice(&splitmix(seed ^ !(venue as u64)).to_be_bytes());
        rooms.push(RoomWindow {
            venue: VenueId(pseudonym),
            start_s: start,
            end_s: start + SESSION_S,
            probability: world.room_probability(spec, venue),
            cases: ids,
        });
    }
    Outbreak {
        cases,
        encounters,
        rooms,
        infections,
        index_case: CaseId(index),
    }
}
