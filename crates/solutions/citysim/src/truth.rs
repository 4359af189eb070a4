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
    /// Individual infectiousness `ν` (gamma, mean 1; see [`crate::epidemic`]).
    pub infectiousness_factor: f32,
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

    /// The same course `by_s` seconds later.
    pub fn shifted(&self, by_s: u64) -> PersonEpi {
        PersonEpi {
            infected_s: self.infected_s + by_s,
            infectious_from_s: self.infectious_from_s + by_s,
            infectious_until_s: self.infectious_until_s + by_s,
            onset_s: self.onset_s + by_s,
            tested_s: self.tested_s.map(|t| t + by_s),
            confirmed_s: self.confirmed_s.map(|t| t + by_s),
            ..*self
        }
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
    /// Conditional risk: the probability of infection of one person present all window if
    /// one infector speaking ([`crate::EpiParams::window_quanta_per_h`]) had been present
    /// whenever the room was occupied, its quanta carried across the day's windows
    /// (continuous box model, [`trustedge_aerosol::risk::CarryOver`], with the room's true
    /// volume and ACH and the fraction of the window someone was present) — the risk the
    /// edge estimates. Starts from clean air at the day's start.
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

/// Least confirmed cases of a cluster whose origin is scored ([`crate::score::score_origins`]):
/// with one confirmed case there is nothing to infer.
pub const MIN_SCORED_CONFIRMED: usize = 2;

/// One true cluster: the subtree of the transmission forest grown from one index case.
///
/// Definition shared by the simulation driver and `trustedge origin eval --city`:
/// - its **members** are every infection descending (through the true infector links,
///   confirmed or not) from one index case ([`Route::Seed`]), the root included;
/// - its **confirmed** cases are the members confirmed before the end of the observation
///   ([`Truth::end_s`]): the cases the system can know. Two confirmed cases are in the same
///   cluster exactly when the true tree links them, possibly through unconfirmed people;
/// - its **origin** is its earliest-infected confirmed case (ties: smaller person id) — the
///   case an investigation should point at, since the root itself may never be confirmed.
///   Only clusters with at least [`MIN_SCORED_CONFIRMED`] confirmed cases are scored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cluster {
    /// The index case at its root.
    pub root: PersonId,
    /// All members (root included), by infection time.
    pub members: Vec<PersonId>,
    /// Members confirmed before [`Truth::end_s`], by infection time.
    pub confirmed: Vec<PersonId>,
    /// The earliest-infected confirmed member; `None` when no member was confirmed.
    pub origin: Option<PersonId>,
}

/// Figures of the generated epidemic (for calibration and sanity checks).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpiSummary {
    /// Infections, index cases included.
    pub infections: usize,
    /// Index cases.
    pub index_cases: usize,
    /// Infections through close-range contact.
    pub by_contact: usize,
    /// Infections through shared room air.
    pub by_room: usize,
    /// Fraction of infections without symptoms.
    pub asymptomatic_fraction: f64,
    /// Cases confirmed before the end of the observation.
    pub confirmed: usize,
    /// Clusters (one per index case).
    pub clusters: usize,
    /// Clusters with at least [`MIN_SCORED_CONFIRMED`] confirmed cases.
    pub scored_clusters: usize,
    /// Index cases whose whole infectious period lies within the observation: the early-phase cohort over which `r_index` is measured.
    pub index_cohort: usize,
    /// Mean secondary infections of that cohort (the early-phase reproduction number,
    /// isolation after confirmation included; `None` when the cohort is empty).
    pub r_index: Option<f64>,
    /// Share of the cohort's secondary infections caused by its most infectious 20 %
    /// (overdispersion: about 0.8 for k ≈ 0.1–0.5, 0.2–0.4 without).
    pub top20_share: Option<f64>,
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
    /// Start of the observation (day 0), Unix s.
    pub start_s: u64,
    /// End of the observation (end of the last simulated day), Unix s: events at or after
    /// it (e.g. later confirmations) are not observed.
    pub end_s: u64,
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

    /// The confirmation time of `e` if it falls before [`Truth::end_s`].
    pub fn observed_confirmation_s(&self, e: &PersonEpi) -> Option<u64> {
        e.confirmed_s.filter(|&c| c < self.end_s)
    }

    /// Cases confirmed before [`Truth::end_s`] as origin-inference inputs (`CaseId` =
    /// person id, the exact observed onset; see `trustedge origin eval --city` for the
    /// day-resolution form the system actually knows).
    pub fn confirmed_cases(&self) -> Vec<Case> {
        let mut v: Vec<Case> = self
            .epi
            .iter()
            .filter_map(|e| {
                self.observed_confirmation_s(e).map(|c| Case {
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
        self.exposures_of(self.app_close_contacts(), days_before, start_s)
    }

    /// `(exposed, case)` for each pair-day `(day index, a, b)` of `pairs` on which one of
    /// the two is a confirmed case and the day falls in that case's window (as
    /// [`Truth::true_exposures`]): what notifying exactly those pair-days would notify.
    pub fn exposures_of(
        &self,
        pairs: impl IntoIterator<Item = (u32, PersonId, PersonId)>,
        days_before: u32,
        start_s: u64,
    ) -> BTreeSet<(PersonId, PersonId)> {
        let mut window: BTreeMap<PersonId, (u32, u32)> = BTreeMap::new();
        for e in &self.epi {
            if let (Some(c), Some(t)) = (self.observed_confirmation_s(e), e.tested_s) {
                let anchor = if e.symptomatic { e.onset_s.min(t) } else { t };
                let from = (anchor.saturating_sub(start_s) / DAY_S) as u32;
                let to = (c.saturating_sub(start_s) / DAY_S) as u32;
                window.insert(e.person, (from.saturating_sub(days_before), to));
            }
        }
        let mut out = BTreeSet::new();
        for (day, a, b) in pairs {
            for (case, other) in [(a, b), (b, a)] {
                if let Some(&(from, to)) = window.get(&case)
                    && (from..=to).contains(&day)
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

    /// The clusters (see [`Cluster`] for the definition), in index-case infection order.
    pub fn clusters(&self) -> Vec<Cluster> {
        self.clusters_known(|_| true)
    }

    /// The clusters as [`Truth::clusters`], counting as confirmed only the confirmed cases
    /// `known` accepts (e.g. those who run the app: only they upload diagnosis keys, so only
    /// they are cases the system can rank); the origin is the earliest-infected of those.
    pub fn clusters_known(&self, known: impl Fn(PersonId) -> bool) -> Vec<Cluster> {
        let mut root_of: BTreeMap<PersonId, PersonId> = BTreeMap::new();
        let mut clusters: Vec<Cluster> = Vec::new();
        let mut index: BTreeMap<PersonId, usize> = BTreeMap::new();
        let epi: BTreeMap<PersonId, &PersonEpi> = self.epi.iter().map(|e| (e.person, e)).collect();
        let mut order: Vec<&Infection> = self.infections.iter().collect();
        order.sort_by_key(|i| (i.time_s, i.person));
        for inf in order {
            let root = inf
                .infector
                .and_then(|i| root_of.get(&i).copied())
                .unwrap_or(inf.person);
            root_of.insert(inf.person, root);
            let k = *index.entry(root).or_insert_with(|| {
                clusters.push(Cluster {
                    root,
                    members: Vec::new(),
                    confirmed: Vec::new(),
                    origin: None,
                });
                clusters.len() - 1
            });
            clusters[k].members.push(inf.person);
            if known(inf.person)
                && epi
                    .get(&inf.person)
                    .and_then(|e| self.observed_confirmation_s(e))
                    .is_some()
            {
                clusters[k].confirmed.push(inf.person);
            }
        }
        for c in &mut clusters {
            // members are in (infection time, id) order: the first confirmed one is the origin
            c.origin = c.confirmed.first().copied();
        }
        clusters
    }

    /// Figures of the epidemic (see [`EpiSummary`]).
    pub fn epi_summary(&self) -> EpiSummary {
        let mut offspring: BTreeMap<PersonId, usize> = BTreeMap::new();
        let (mut by_contact, mut by_room) = (0, 0);
        for inf in &self.infections {
            match inf.route {
                Route::Seed => {}
                Route::Contact { .. } => by_contact += 1,
                Route::Room { .. } => by_room += 1,
            }
            if let Some(src) = inf.infector {
                *offspring.entry(src).or_default() += 1;
            }
        }
        let index: Vec<&Infection> = self
            .infections
            .iter()
            .filter(|i| matches!(i.route, Route::Seed))
            .collect();
        let mut cohort: Vec<usize> = index
            .iter()
            .filter(|i| {
                self.epi_of(i.person).is_some_and(|e| {
                    e.infectious_from_s >= self.start_s && e.infectious_until_s <= self.end_s
                })
            })
            .map(|i| offspring.get(&i.person).copied().unwrap_or(0))
            .collect();
        cohort.sort_unstable_by(|a, b| b.cmp(a));
        let total: usize = cohort.iter().sum();
        let r_index = (!cohort.is_empty()).then(|| total as f64 / cohort.len() as f64);
        let top = cohort.len().div_ceil(5);
        let top20_share =
            (total > 0).then(|| cohort[..top].iter().sum::<usize>() as f64 / total as f64);
        let clusters = self.clusters();
        let asym = self.epi.iter().filter(|e| !e.symptomatic).count();
        EpiSummary {
            infections: self.infections.len(),
            index_cases: index.len(),
            by_contact,
            by_room,
            asymptomatic_fraction: if self.epi.is_empty() {
                0.0
            } else {
                asym as f64 / self.epi.len() as f64
            },
            confirmed: self
                .epi
                .iter()
                .filter(|e| self.observed_confirmation_s(e).is_some())
                .count(),
            clusters: clusters.len(),
            scored_clusters: clusters
                .iter()
                .filter(|c| c.confirmed.len() >= MIN_SCORED_CONFIRMED)
                .count(),
            index_cohort: cohort.len(),
            r_index,
            top20_share,
        }
    }
}
