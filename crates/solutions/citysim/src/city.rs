//! [`City::generate`]: population, day-by-day plans, epidemic and ground truth.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use trustedge_aerosol::risk::{
    CarryOver, DEPOSITION_PER_H, VIRAL_DECAY_PER_H, conditional_probability,
};

use crate::epidemic::{contact_dose, draw_course, fires, infectiousness, seed_course};
use crate::plan::{DayPlan, EncounterPiece};
use crate::population::Population;
use crate::rng::{int, stream, tag, u01};
use crate::truth::{CloseContact, Infection, PersonEpi, RiskWindowTruth, Route, Truth};
use crate::{CityConfig, CityError, DAY_S, PersonId};

const NONE: u32 = u32::MAX;

/// Quanta a susceptible inhaled in a room: total, and `(quanta, time, likely infector)` parts.
type Inhaled = (f64, Vec<(f64, u64, PersonId)>);

/// A generated city: population, ground truth, and the seed to regenerate its signals.
#[derive(Clone, Debug)]
pub struct City {
    cfg: CityConfig,
    seed: u64,
    pop: Population,
    truth: Truth,
    epi_idx: Vec<u32>,
}

fn pair_key(a: PersonId, b: PersonId) -> u64 {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    (u64::from(x.0) << 32) | u64::from(y.0)
}

impl City {
    /// Generates the city of `cfg` from `seed`: population, every day's plan, the epidemic
    /// and the ground truth. Signals are produced later by [`City::hours`].
    pub fn generate(cfg: &CityConfig, seed: u64) -> Result<City, CityError> {
        cfg.validate()?;
        if cfg.ble_range_m < cfg.rule_max_distance_m {
            return Err(CityError::InvalidConfig(
                "ble_range_m must be >= rule_max_distance_m",
            ));
        }
        let pop = Population::build(cfg, seed);
        let n = pop.people.len();
        let mut city = City {
            cfg: cfg.clone(),
            seed,
            pop,
            truth: Truth::default(),
            epi_idx: vec![NONE; n],
        };
        city.truth.start_s = cfg.start_s;
        city.truth.end_s = cfg.start_s + u64::from(cfg.days) * DAY_S;
        // index cases: random people, infection times spread over the seeding days
        let mut rng = stream(seed, tag::SEEDS, 0, 0);
        let mut seeds: Vec<PersonId> = Vec::new();
        while seeds.len() < cfg.seed_cases as usize {
            let p = PersonId(int(&mut rng, 0, n as u64 - 1) as u32);
            if !seeds.contains(&p) {
                seeds.push(p);
            }
        }
        let (lo, hi) = (
            cfg.seed_first_day * 60.0 * 24.0,
            cfg.seed_last_day * 60.0 * 24.0,
        );
        let mut first: Vec<Infection> = seeds
            .iter()
            .map(|&p| {
                let minute = (lo + (hi - lo) * u01(&mut rng)).floor();
                let t = (cfg.start_s as i64 + minute as i64 * 60).max(0) as u64;
                Infection {
                    person: p,
                    infector: None,
                    route: Route::Seed,
                    time_s: t,
                }
            })
            .collect();
        first.sort_by_key(|i| (i.time_s, i.person));
        city.infect(first);
        for day in 0..cfg.days {
            city.simulate_day(day)?;
        }
        // index cases are all infected up front: restore the time order
        city.truth.infections.sort_by_key(|i| (i.time_s, i.person));
        Ok(city)
    }

    fn infect(&mut self, infections: Vec<Infection>) {
        for mut inf in infections {
            let mut rng = stream(self.seed, tag::PERSON_EPI, u64::from(inf.person.0), 0);
            let e = if matches!(inf.route, Route::Seed) {
                let e = seed_course(
                    &self.cfg.epi,
                    inf.person,
                    inf.time_s,
                    self.cfg.start_s,
                    &mut rng,
                );
                inf.time_s = e.infected_s;
                e
            } else {
                draw_course(&self.cfg.epi, inf.person, inf.time_s, &mut rng)
            };
            self.epi_idx[inf.person.0 as usize] = self.truth.epi.len() as u32;
            self.truth.epi.push(e);
            self.truth.infections.push(inf);
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CityConfig {
        &self.cfg
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The population.
    pub fn population(&self) -> &Population {
        &self.pop
    }

    /// The ground truth.
    pub fn truth(&self) -> &Truth {
        &self.truth
    }

    /// A person's course of infection, if ever infected.
    pub fn epi(&self, p: PersonId) -> Option<&PersonEpi> {
        let i = *self.epi_idx.get(p.0 as usize)?;
        self.truth.epi.get(i as usize)
    }

    /// Whether `p` stays home on `day` (confirmed and within the isolation period at the
    /// day's start).
    pub fn isolated(&self, p: PersonId, day: u32) -> bool {
        let t = self.cfg.start_s + u64::from(day) * DAY_S;
        self.epi(p).and_then(|e| e.confirmed_s).is_some_and(|c| {
            c <= t && (t as f64) < c as f64 + self.cfg.epi.isolation_d * DAY_S as f64
        })
    }

    /// Everyone's visits and stints of `day` (regenerated from the seed).
    pub fn day_plan(&self, day: u32) -> DayPlan {
        DayPlan::build(&self.pop, &self.cfg, self.seed, day, |p| {
            self.isolated(p, day)
        })
    }

    /// The BLE encounter pieces of a day plan: app users within BLE range, split at hour
    /// boundaries, in start order.
    pub fn encounter_pieces(&self, plan: &DayPlan) -> Vec<EncounterPiece> {
        let mut out = Vec::new();
        for (room, r) in &plan.rooms {
            DayPlan::overlaps(&plan.stints[r.clone()], |a, b, s, e| {
                let (pa, pb) = (self.pop.person(a.person), self.pop.person(b.person));
                let d = a.distance_m(b);
                if !(pa.app && pb.app) || d > self.cfg.ble_range_m {
                    return;
                }
                let (x, y) = if a.person < b.person {
                    (a.person, b.person)
                } else {
                    (b.person, a.person)
                };
                let mut t = s;
                while t < e {
                    let until = e.min((t / 3600 + 1) * 3600);
                    out.push(EncounterPiece {
                        a: x,
                        b: y,
                        room: *room,
                        start_s: t,
                        end_s: until,
                        distance_m: d as f32,
                    });
                    t = until;
                }
            });
        }
        out.sort_by_key(|p| (p.start_s, p.a, p.b));
        out
    }

    fn simulate_day(&mut self, day: u32) -> Result<(), CityError> {
        let cfg = &self.cfg;
        let p = &cfg.epi;
        let day_start = cfg.start_s + u64::from(day) * DAY_S;
        let day_end = day_start + DAY_S;
        let plan = self.day_plan(day);
        let epi = &self.truth.epi;
        let idx = &self.epi_idx;
        let pop = &self.pop;
        let get = |q: PersonId| -> Option<&PersonEpi> {
            let i = idx[q.0 as usize];
            if i == NONE { None } else { epi.get(i as usize) }
        };
        let infectious_today = |q: PersonId| {
            get(q)
                .is_some_and(|e| e.infectious_from_s < day_end && e.infectious_until_s > day_start)
        };
        let mut pairs: FxHashMap<u64, u32> = FxHashMap::default();
        let mut candidates: Vec<Infection> = Vec::new();
        let mut rng = stream(self.seed, tag::EPI_DAY, u64::from(day), 0);
        let mut windows: Vec<RiskWindowTruth> = Vec::new();
        for (room_id, r) in &plan.rooms {
            let st = &plan.stints[r.clone()];
            let room = pop.room(*room_id);
            let any_inf = st.iter().any(|s| infectious_today(s.person));
            DayPlan::overlaps(st, |a, b, s, e| {
                let d = a.distance_m(b);
                if d <= cfg.ble_range_m {
                    let v = pairs.entry(pair_key(a.person, b.person)).or_insert(0);
                    if d <= cfg.rule_max_distance_m {
                        *v += (e - s) as u32;
                    }
                }
                if !any_inf {
                    return;
                }
                for (i, j) in [(a.person, b.person), (b.person, a.person)] {
                    let (Some(ei), None) = (get(i), get(j)) else {
                        continue;
                    };
                    let from = s.max(ei.infectious_from_s);
                    let to = e.min(ei.infectious_until_s);
                    if from >= to {
                        continue;
                    }
                    let w = infectiousness(p, ei, (from + to) / 2);
                    let dose = contact_dose(p, w, (to - from) as f64 / 60.0, d);
                    if fires(dose, &mut rng) {
                        let t = from + ((to - from) as f64 * u01(&mut rng)) as u64;
                        candidates.push(Infection {
                            person: j,
                            infector: Some(i),
                            route: Route::Contact {
                                room: *room_id,
                                distance_m: d as f32,
                            },
                            time_s: t,
                        });
                    }
                }
            });
            if !(any_inf || room.sensor) {
                continue;
            }
            // airborne: continuous box over the day's windows
            let ws = cfg.window_s;
            let dh = ws as f64 / 3600.0;
            let lambda = room.ach_per_h + VIRAL_DECAY_PER_H + DEPOSITION_PER_H;
            // conditional risk: one hypothetical infector present whenever the room is
            // occupied, its quanta carried across the day's windows
            let mut cond = CarryOver::new(room.volume_m3, p.window_quanta_per_h)?;
            let mut conc = 0.0f64;
            let mut acc: BTreeMap<PersonId, Inhaled> = BTreeMap::new();
            let first_start = st.first().map_or(day_start, |s| s.start_s);
            for k in 0..DAY_S / ws {
                let w0 = day_start + k * ws;
                let w1 = w0 + ws;
                if w1 <= first_start && conc == 0.0 {
                    continue;
                }
                let mut occ = 0u64;
                // seconds of the window with someone present (union of the stints)
                let mut occupied_s = 0u64;
                let mut covered_to = w0;
                let mut emission = 0.0;
                let mut top: Option<(f64, PersonId)> = None;
                let mut inf_present = 0u32;
                for s in st.iter().take_while(|s| s.start_s < w1) {
                    let ov = s.end_s.min(w1).saturating_sub(s.start_s.max(w0));
                    if ov == 0 {
                        continue;
                    }
                    occ += ov;
                    let (from, to) = (s.start_s.max(covered_to), s.end_s.min(w1));
                    if to > from {
                        occupied_s += to - from;
                        covered_to = to;
                    }
                    if let Some(e) = get(s.person) {
                        let wi = infectiousness(p, e, s.start_s.max(w0) + ov / 2) * ov as f64
                            / ws as f64;
                        if wi > 0.0 {
                            inf_present += 1;
                            emission += p.quanta_per_h * wi;
                            if top.is_none_or(|(tw, _)| wi > tw) {
                                top = Some((wi, s.person));
                            }
                        }
                    }
                }
                let cond_mean = if room.sensor {
                    cond.step(occupied_s as f64 / ws as f64, room.ach_per_h, dh)?
                } else {
                    0.0
                };
                let css = emission / (lambda * room.volume_m3);
                let x = lambda * dh;
                let mean = css + (conc - css) * (-(-x).exp_m1()) / x;
                conc = css + (conc - css) * (-x).exp();
                if room.sensor && occ > 0 {
                    windows.push(RiskWindowTruth {
                        room: *room_id,
                        start_s: w0,
                        end_s: w1,
                        mean_occupancy: (occ as f64 / ws as f64) as f32,
                        conditional_probability: conditional_probability(
                            cond_mean,
                            p.breathing_m3_per_h,
                            dh,
                            0.0,
                        )? as f32,
                        actual_probability: (-(-(mean * p.breathing_m3_per_h * dh)).exp_m1())
                            as f32,
                        infectious_present: inf_present,
                    });
                }
                if mean <= 0.0 {
                    continue;
                }
                let Some((_, infector)) = top.or_else(|| {
                    // lingering aerosol: attribute to the day's most infectious occupant
                    st.iter()
                        .filter_map(|s| {
                            get(s.person).map(|e| (infectiousness(p, e, s.start_s), s.person))
                        })
                        .filter(|(w, _)| *w > 0.0)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                }) else {
                    continue;
                };
                for s in st.iter().take_while(|s| s.start_s < w1) {
                    let ov = s.end_s.min(w1).saturating_sub(s.start_s.max(w0));
                    if ov == 0 || get(s.person).is_some() || s.person == infector {
                        continue;
                    }
                    let q = mean * p.breathing_m3_per_h * ov as f64 / 3600.0;
                    let entry = acc.entry(s.person).or_default();
                    entry.0 += q;
                    entry.1.push((q, s.start_s.max(w0) + ov / 2, infector));
                }
            }
            for (person, (total, parts)) in acc {
                if !fires(total, &mut rng) {
                    continue;
                }
                let mut u = u01(&mut rng) * total;
                let mut chosen = parts.first().copied();
                for part in &parts {
                    chosen = Some(*part);
                    if u < part.0 {
                        break;
                    }
                    u -= part.0;
                }
                if let Some((_, t, infector)) = chosen {
                    // the infector must have been infected before (always: infectious ≥ 1 day after)
                    candidates.push(Infection {
                        person,
                        infector: Some(infector),
                        route: Route::Room { room: *room_id },
                        time_s: t,
                    });
                }
            }
        }
        // ground truth of close contacts
        let mut keys: Vec<(u64, u32)> = pairs.into_iter().collect();
        keys.sort_unstable();
        for (key, secs) in keys {
            let (a, b) = (PersonId((key >> 32) as u32), PersonId(key as u32));
            let both_app = pop.person(a).app && pop.person(b).app;
            self.truth.copresent_pair_days += 1;
            if both_app {
                self.truth.copresent_app_pair_days += 1;
            }
            let minutes = secs as f64 / 60.0;
            if minutes >= cfg.rule_min_minutes && secs > 0 {
                self.truth.close_contacts.push(CloseContact {
                    day,
                    a,
                    b,
                    minutes: minutes as f32,
                    both_app,
                });
            }
        }
        self.truth.risk_windows.append(&mut windows);
        // earliest successful exposure per person
        candidates.sort_by_key(|c| (c.person, c.time_s));
        candidates.dedup_by_key(|c| c.person);
        candidates.sort_by_key(|c| (c.time_s, c.person));
        self.infect(candidates);
        Ok(())
    }
}
