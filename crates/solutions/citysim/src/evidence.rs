//! What the real stack can observe for origin inference, built directly from a city
//! (`trustedge origin eval --city`): the evidence [`trustedge_origin::rank_origins`] takes,
//! limited to what the system could know.
//!
//! - **Cases**: people who run the app and were confirmed before the end of the
//!   observation ([`Truth::end_s`]) — only they upload diagnosis keys, so the cloud knows no
//!   other case (the true clusters are scored over these: [`reported_clusters`]) —, numbered `CaseId(person id)`; the onset only for symptomatic cases and only to the
//!   day (a diagnosis key carries days since onset), as noon UTC of the onset day; the
//!   confirmation time exactly (the keys' upload).
//! - **Close contacts** between two confirmed cases who both run the app, on pair-days
//!   meeting the close-contact rule ([`crate::CityConfig::rule`]), at day resolution (noon
//!   UTC, as the cloud's contact linker records them), with a GAEN-style score: weighted
//!   minutes, weight 1 within the rule's distance and 0.3 up to twice it (the default
//!   attenuation-bucket weights 1.0 / 1.0 / 0.3 / 0, read as distance bands).
//! - **Room windows**: the sensor rooms' windows whose conditional risk (carried-over box
//!   model, what the edge estimates, [`crate::RiskWindowTruth::conditional_probability`]) reaches
//!   [`ObserveParams::elevated_threshold`], with the confirmed app users present during the
//!   window (presence from venue beacons heard by their phones) and that probability as the
//!   window's risk; the venue is a per-day pseudonym.
//!
//! Nothing here uses the true transmission tree, infection times, asymptomatic onsets or
//! people without the app.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use trustedge_contacts::{CaseId, Encounter};
use trustedge_origin::{Case, RoomWindow, VenueId};

use crate::plan::DayPlan;
use crate::truth::Truth;
use crate::{City, DAY_S, PersonId, RoomId};

/// An elevated window: start, end (s) and conditional infection probability.
type Window = (u64, u64, f64);

/// How the evidence is observed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObserveParams {
    /// Least conditional probability of an elevated-risk window. Default: the aerosol
    /// alert rule's threshold (1 %), the windows the edge alerts. With the conditional risk
    /// carried across windows (one infector at 25 quanta/h, 15-minute windows) the default
    /// city's windows have median 0.0036, 90th percentile 0.0103, maximum 0.028 (10,000
    /// people, 14 days, seed 1: `cargo run --release -p trustedge-citysim --example
    /// risk_windows`); 9,265 of 84,362 reach 1 %, 7,645 of them in badly ventilated rooms.
    pub elevated_threshold: f64,
}

impl Default for ObserveParams {
    fn default() -> Self {
        ObserveParams {
            elevated_threshold: trustedge_aerosol::alert::AlertRule::default().threshold,
        }
    }
}

/// The evidence of a city.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    /// Confirmed cases (ids = person ids), by id.
    pub cases: Vec<Case>,
    /// Close-contact encounters between confirmed app users, one per pair-day.
    pub encounters: Vec<Encounter>,
    /// Elevated-risk room windows with the confirmed app users present.
    pub rooms: Vec<RoomWindow>,
}

fn noon_of(t: u64) -> u64 {
    t - t % DAY_S + DAY_S / 2
}

fn venue(room: RoomId, day: u32) -> VenueId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&room.0.to_le_bytes());
    b[4..8].copy_from_slice(&day.to_le_bytes());
    VenueId(b)
}

/// Builds the evidence of `city` (see the module documentation).
pub fn observe(city: &City, params: &ObserveParams) -> Evidence {
    let cfg = city.config();
    let truth: &Truth = city.truth();
    let pop = city.population();
    let mut cases: Vec<Case> = truth
        .epi
        .iter()
        .filter(|e| pop.person(e.person).app)
        .filter_map(|e| {
            truth.observed_confirmation_s(e).map(|c| Case {
                id: CaseId(e.person.0),
                symptom_onset_s: e.observed_onset_s().map(noon_of),
                confirmation_s: c,
            })
        })
        .collect();
    cases.sort_by_key(|c| c.id);
    let watched: BTreeSet<PersonId> = cases.iter().map(|c| PersonId(c.id.0)).collect();
    // elevated windows per (room, start of day)
    let mut windows: BTreeMap<(RoomId, u64), Vec<Window>> = BTreeMap::new();
    for w in &truth.risk_windows {
        let p = f64::from(w.conditional_probability);
        if p >= params.elevated_threshold {
            windows
                .entry((w.room, w.start_s - w.start_s % DAY_S))
                .or_default()
                .push((w.start_s, w.end_s, p));
        }
    }
    let rule_d = cfg.rule_max_distance_m;
    let mut encounters = Vec::new();
    let mut rooms = Vec::new();
    for day in 0..cfg.days {
        let day_start = cfg.start_s + u64::from(day) * DAY_S;
        let plan: DayPlan = city.day_plan(day);
        // per pair: (seconds within the rule's distance, weighted seconds)
        let mut pairs: FxHashMap<(PersonId, PersonId), (u64, f64)> = FxHashMap::default();
        for (room, r) in &plan.rooms {
            let st: Vec<_> = plan.stints[r.clone()]
                .iter()
                .filter(|s| watched.contains(&s.person))
                .copied()
                .collect();
            if st.is_empty() {
                continue;
            }
            DayPlan::overlaps(&st, |a, b, s, e| {
                let d = a.distance_m(b);
                let w = if d <= rule_d {
                    1.0
                } else if d <= 2.0 * rule_d {
                    0.3
                } else {
                    return;
                };
                let key = (a.person.min(b.person), a.person.max(b.person));
                let v = pairs.entry(key).or_insert((0, 0.0));
                if d <= rule_d {
                    v.0 += e - s;
                }
                v.1 += w * (e - s) as f64;
            });
            if let Some(ws) = windows.get(&(*room, day_start)) {
                for &(w0, w1, p) in ws {
                    let mut present: Vec<CaseId> = st
                        .iter()
                        .filter(|s| s.start_s < w1 && s.end_s > w0)
                        .map(|s| CaseId(s.person.0))
                        .collect();
                    present.sort_unstable();
                    present.dedup();
                    if present.len() >= 2 {
                        present.truncate(trustedge_origin::model::MAX_CASES_PER_WINDOW);
                        rooms.push(RoomWindow {
                            venue: venue(*room, day),
                            start_s: w0,
                            end_s: w1,
                            probability: p.clamp(0.0, 1.0),
                            cases: present,
                        });
                    }
                }
            }
        }
        let mut keys: Vec<_> = pairs.into_iter().collect();
        keys.sort_unstable_by_key(|(k, _)| *k);
        for ((a, b), (close_s, weighted_s)) in keys {
            if close_s > 0 && close_s as f64 / 60.0 >= cfg.rule_min_minutes {
                encounters.push(Encounter {
                    a: CaseId(a.0),
                    b: CaseId(b.0),
                    start_s: day_start + DAY_S / 2,
                    duration_s: u32::try_from(close_s).unwrap_or(u32::MAX),
                    score: (weighted_s / 60.0) as f32,
                });
            }
        }
    }
    Evidence {
        cases,
        encounters,
        rooms,
    }
}

/// The true clusters over the cases the system can know (confirmed app users; see
/// [`Truth::clusters_known`]): what [`evaluate_origins`] and the simulation driver score.
pub fn reported_clusters(city: &City) -> Vec<crate::Cluster> {
    let pop = city.population();
    city.truth().clusters_known(|p| pop.person(p).app)
}

/// The result of [`evaluate_origins`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CityOriginEval {
    /// Accuracy against the true clusters.
    pub score: crate::score::OriginScore,
    /// Confirmed cases given to the inference.
    pub cases: usize,
    /// Close-contact encounters between them.
    pub encounters: usize,
    /// Elevated-risk room windows shared by at least two of them.
    pub room_windows: usize,
    /// Clusters of linked cases the inference found (singletons included).
    pub inferred_clusters: usize,
    /// True clusters with at least one confirmed case.
    pub true_clusters: usize,
}

/// Observes `city` ([`observe`]), ranks origins with `rank` (seeded by `seed`) and scores
/// the rankings and the earliest-onset baseline with [`crate::score::score_origins`].
pub fn evaluate_origins(
    city: &City,
    observe_params: &ObserveParams,
    rank: &trustedge_origin::RankParams,
    seed: u64,
) -> Result<CityOriginEval, trustedge_origin::OriginError> {
    evaluate_evidence(city, &observe(city, observe_params), rank, seed)
}

/// Ranks origins from the given evidence of `city` (from [`observe`], or with its close
/// contacts replaced by what a real decision path made of them) and scores them as
/// [`evaluate_origins`] does.
pub fn evaluate_evidence(
    city: &City,
    ev: &Evidence,
    rank: &trustedge_origin::RankParams,
    seed: u64,
) -> Result<CityOriginEval, trustedge_origin::OriginError> {
    let graph = trustedge_contacts::ContactGraph::build(
        &ev.encounters,
        trustedge_contacts::EncounterFilter::default(),
    )?;
    let report = trustedge_origin::rank_origins(&ev.cases, &graph, &ev.rooms, rank, seed)?;
    let person = |c: &CaseId| PersonId(c.0);
    let inferred: Vec<crate::score::InferredCluster> = report
        .clusters
        .iter()
        .map(|c| crate::score::InferredCluster {
            cases: c.cases.iter().map(person).collect(),
            ranking: c.candidates.iter().map(|k| person(&k.case)).collect(),
            baseline: c.baseline.iter().map(person).collect(),
        })
        .collect();
    let clusters = reported_clusters(city);
    Ok(CityOriginEval {
        score: crate::score::score_origins(&clusters, &inferred),
        cases: ev.cases.len(),
        encounters: ev.encounters.len(),
        room_windows: ev.rooms.len(),
        inferred_clusters: report.clusters.len(),
        true_clusters: clusters.iter().filter(|c| c.origin.is_some()).count(),
    })
}
