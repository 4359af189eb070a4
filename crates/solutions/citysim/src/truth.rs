//! The ground truth: infections (the true transmission tree), per-person timelines, close
//! contacts under the rule, room risk windows, exposures and clusters.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use trustedge_contacts::CaseId;
use trustedge_origin::Case;

use crate::{DAY_S, PersonId, RoomId};

/// How an infection happened.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// An index case of day 0.
    Seed,
    /// Close-range transmission between two co-present people.
    Contact {
        /// The room.
        room: RoomId,
        /// True distance at the time, m.
        distance_m: f32,
    },
    /// Airborne transmission in a shared room (box model).
    Room {
        /// The room.
        room: RoomId,
    },
}

/// One edge of the true transmission tree.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Infection {
    /// Who got infected.
    pub person: PersonId,
    /// By whom (`None` for seed cases).
    pub infector: Option<PersonId>,
    /// How.
    pub route: Route,
    /// When, Unix s.
    pub time_s: u64,
}

/// A person's true course of infection.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PersonEpi {
    /// Who.
    pub person: PersonId,
    /// Infection time, Unix s.
    pub infected_s: u64,
    /// Start of infectiousness.
    pub infectious_from_s: u64,
    /// End of infectiousness (exclusive).
    pub infectious_until_s: u64,
    /// Symptom onset (for asymptomatic infections: the onset the profile is centred on,
    /// never observed).
    pub onset_s: u64,
    /// Whether symptomatic.
    pub symptomatic: bool,
    /// Test time, if tested.
    pub tested_s: Option<u64>,
    /// Confirmation time, if tested.
    pub confirmed_s: Option<u64>,
}

impl PersonEpi {
    /// The observed onset: `Some` only for symptomatic infections.
    pub fn observed_onset_s(&self) -> Option<u64> {
        self.symptomatic.then_some(self.onset_s)
    }
}

/// A true close contact: a pair-day meeting the rule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CloseContact {
    /// Day index.
    pub day: u32,
    /// One person (smaller id).
    pub a: PersonId,
    /// The other.
    pub b: PersonId,
    /// Minutes within the rule's distance that day.
    pub minutes: f32,
    /// Whether both run the app (the tracing system can only see these).
    pub both_app: bool,
}

/// A sensor room's occupied window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RiskWindowTruth {
    /// The room.
    pub room: RoomId,
    /// Window start, Unix s.
    pub start_s: u64,
    /// Window end, Unix s.
    pub end_s: u64,
    /// Mean occupancy.
    pub mean_occupancy: f32,
    /// Box-model probability for one person present with one infector speaking (the edge
    /// estimator's conditional risk, with the room's true volume and ACH).
    pub conditional_probability: f32,
    /// Probability for one person present all window given the infectious people truly
    /// present (continuous box model).
    pub actual_probability: f32,
    /// Infectious people present at some time of the window.
    pub infectious_present: u32,
}

/// What "elevated risk" means for a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RiskBasis {
    /// Conditional probability ≥ threshold (what the edge alone can know).
    Conditional,
    /// Conditional probability ≥ threshold and an infectious person present.
    ConditionalWithInfectious,
    /// Actual probability ≥ threshold.
    Actual,
}

/// One cluster: a tree of the transmission forest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cluster {
    /// The seed case at its root.
    pub root: PersonId,
    /// All members (root included), by infection time.
    pub members: Vec<PersonId>,
    /// Confirmed members.
    pub confirmed: Vec<PersonId>,
    /// The true origin(s) among confirmed members: those nearest the root (fewest
    /// generations); empty when nobody of the cluster was confirmed.
    pub origins: Vec<PersonId>,
}

/// The whole ground truth.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Truth {
    /// Infections in time order (the transmission forest).
    pub infections: Vec<Infection>,
    /// Per infected person: timelines, in infection order.
    pub epi: Vec<PersonEpi>,
    /// True close contacts, by day then pair.
    pub close_contacts: Vec<CloseContact>,
    /// Pair-days with any co-presence within BLE range (close or not).
    pub copresent_pair_days: u64,
    /// Of those, pair-days where both run the app (the negatives of nDCF are these minus
    /// the app users' close contacts).
    pub copresent_app_pair_days: u64,
    /// Occupied windows of sensor rooms.
    pub risk_windows: Vec<RiskWindowTruth>,
}

impl Truth {
    /// The timeline of a person, if infected.
    pub fn epi_of(&self, p: PersonId) -> Option<&PersonEpi> {
        self.epi.iter().find(|e| e.person == p)
    }

    /// App users' close contacts as `(day, a, b)` (a < b): the recall base of close-contact
    /// detection.
    pub fn app_close_contacts(&self) -> BTreeSet<(u32, PersonId, PersonId)> {
        self.close_contacts
            .iter()
            .filter(|c| c.both_app)
            .map(|c| (c.day, c.a, c.b))
            .collect()
    }

    /// Negatives of close-contact detection: app pair-days co-present in BLE range but not
    /// close.
    pub fn close_contact_negatives(&self) -> u64 {
        self.copresent_app_pair_days
            .saturating_sub(self.app_close_contacts().len() as u64)
    }

    /// Confirmed cases as origin-inference inputs (`CaseId` = person id, observed onset).
    pub fn confirmed_cases(&self) -> Vec<Case> {
        let mut v: Vec<Case> = self
            .epi
            .iter()
            .filter_map(|e| {
                e.confirmed_s.map(|c| Case {
                    id: CaseId(e.person.0),
                    symptom_onset_s: e.observed_onset_s(),
                    confirmation_s: c,
                })
            })
            .collect();
        v.sort_by_key(|c| (c.confirmation_s, c.id));
        v
    }

    /// True exposures to notify: `(exposed, case)` for every close contact of an app user
    /// with a confirmed app-using case on a day from `days_before` days before the case's
    /// onset (or test, if asymptomatic) to its confirmation.
    pub fn true_exposures(&self, days_before: u32, start_s: u64) -> BTreeSet<(PersonId, PersonId)> {
        let mut window: BTreeMap<PersonId, (u32, u32)> = BTreeMap::new();
        for e in &self.epi {
            if let (Some(c), Some(t)) = (e.confirmed_s, e.tested_s) {
                let anchor = if e.symptomatic { e.onset_s.min(t) } else { t };
                let from = (anchor.saturating_sub(start_s) / DAY_S) as u32;
                let to = (c.saturating_sub(start_s) / DAY_S) as u32;
                window.insert(e.person, (from.saturating_sub(days_before), to));
            }
        }
        let mut out = BTreeSet::new();
        for c in self.close_contacts.iter().filter(|c| c.both_app) {
            for (case, other) in [(c.a, c.b), (c.b, c.a)] {
                if let Some(&(from, to)) = window.get(&case)
                    && (from..=to).contains(&c.day)
                {
                    out.insert((other, case));
                }
            }
        }
        out
    }

    /// Elevated-risk windows `(room, start_s)` under `basis` at `threshold`.
    pub fn elevated_windows(&self, threshold: f64, basis: RiskBasis) -> BTreeSet<(RoomId, u64)> {
        self.risk_windows
            .iter()
            .filter(|w| match basis {
                RiskBasis::Conditional => f64::from(w.conditional_probability) >= threshold,
                RiskBasis::ConditionalWithInfectious => {
                    f64::from(w.conditional_probability) >= threshold && w.infectious_present > 0
                }
                RiskBasis::Actual => f64::from(w.actual_probability) >= threshold,
            })
            .map(|w| (w.room, w.start_s))
            .collect()
    }

    /// The clusters: one per seed case, with the true origins among confirmed members.
    pub fn clusters(&self) -> Vec<Cluster> {
        let mut root_of: BTreeMap<PersonId, (PersonId, u32)> = BTreeMap::new();
        let mut clusters: Vec<Cluster> = Vec::new();
        let mut index: BTreeMap<PersonId, usize> = BTreeMap::new();
        for inf in &self.infections {
            let (root, depth) = match inf.infector.and_then(|i| root_of.get(&i).copied()) {
                Some((r, d)) => (r, d + 1),
                None => (inf.person, 0),
            };
            root_of.insert(inf.person, (root, depth));
            let k = *index.entry(root).or_insert_with(|| {
                clusters.push(Cluster {
                    root,
                    members: Vec::new(),
                    confirmed: Vec::new(),
                    origins: Vec::new(),
                });
                clusters.len() - 1
            });
            clusters[k].members.push(inf.person);
        }
        for c in &mut clusters {
            let mut best = u32::MAX;
            for m in &c.members {
                if self.epi_of(*m).and_then(|e| e.confirmed_s).is_some() {
                    c.confirmed.push(*m);
                    let d = root_of.get(m).map_or(u32::MAX, |x| x.1);
                    if d < best {
                        best = d;
                        c.origins.clear();
                    }
                    if d == best {
                        c.origins.push(*m);
                    }
                }
            }
        }
        clusters
    }
}
