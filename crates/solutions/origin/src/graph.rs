//! The candidate transmission graph: one weighted arc `u → v` per ordered pair of confirmed
//! cases with evidence (close contacts from the contact graph, shared elevated-risk room
//! windows), and its clusters (connected components).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use trustedge_contacts::{CaseId, ContactGraph};

use crate::OriginError;
use crate::model::{Case, EpiModel, RoomWindow, VenueId};

/// Most confirmed cases one inference takes.
pub const MAX_CASES: usize = 1_000_000;

/// A piece of evidence behind an arc, as it was observed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvidenceRef {
    /// A close-contact encounter from the contact graph.
    Contact {
        /// Encounter start, seconds.
        start_s: u64,
        /// Duration, seconds.
        duration_s: u32,
        /// GAEN-style risk score.
        score: f32,
    },
    /// Co-presence in an elevated-risk room window.
    Room {
        /// The venue's pseudonym.
        venue: VenueId,
        /// Window start, seconds.
        start_s: u64,
        /// Window end, seconds.
        end_s: u64,
        /// The window's infection probability.
        probability: f64,
    },
}

impl EvidenceRef {
    /// Whether this is a room window.
    pub fn is_room(&self) -> bool {
        matches!(self, EvidenceRef::Room { .. })
    }
}

/// An arc of the candidate graph: everything that supports `from → to`.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateArc {
    /// The candidate infector (index into [`CandidateGraph::cases`]).
    pub from: usize,
    /// The infectee (index into [`CandidateGraph::cases`]).
    pub to: usize,
    /// Sum of the evidence weights (> 0).
    pub weight: f64,
    /// The heaviest single piece of evidence.
    pub best: EvidenceRef,
    /// Its weight.
    pub best_weight: f64,
    /// Contact encounters with positive weight.
    pub contacts: u32,
    /// Room windows with positive weight.
    pub rooms: u32,
}

/// The weighted candidate transmission graph of a set of confirmed cases.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateGraph {
    /// The cases, sorted by id.
    pub cases: Vec<Case>,
    /// Arcs with positive weight, sorted by (to, from).
    pub arcs: Vec<CandidateArc>,
    /// For each case, the range of its in-arcs in `arcs`.
    pub in_range: Vec<std::ops::Range<usize>>,
    /// Evidence naming a case that is not in the case list (skipped).
    pub ignored_evidence: usize,
}

struct Acc {
    weight: f64,
    best: EvidenceRef,
    best_weight: f64,
    contacts: u32,
    rooms: u32,
}

fn add(map: &mut BTreeMap<(usize, usize), Acc>, to: usize, from: usize, w: f64, e: EvidenceRef) {
    if w.is_nan() || w <= 0.0 {
        return;
    }
    let acc = map.entry((to, from)).or_insert(Acc {
        weight: 0.0,
        best: e,
        best_weight: 0.0,
        contacts: 0,
        rooms: 0,
    });
    acc.weight += w;
    if w > acc.best_weight {
        acc.best_weight = w;
        acc.best = e;
    }
    if e.is_room() {
        acc.rooms += 1;
    } else {
        acc.contacts += 1;
    }
}

impl CandidateGraph {
    /// Builds the graph. Errors: a duplicate case id, too many cases, an invalid room window
    /// or model. Evidence naming unknown cases is skipped and counted.
    pub fn build(
        cases: &[Case],
        contacts: &ContactGraph,
        rooms: &[RoomWindow],
        model: &EpiModel,
    ) -> Result<CandidateGraph, OriginError> {
        model.validate()?;
        if cases.len() > MAX_CASES {
            return Err(OriginError::TooManyCases(cases.len()));
        }
        let mut sorted = cases.to_vec();
        sorted.sort_by_key(|c| c.id);
        if let Some(w) = sorted.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(OriginError::DuplicateCase(w[0].id.0));
        }
        for r in rooms {
            r.validate()?;
        }
        let index = |id: CaseId| sorted.binary_search_by_key(&id, |c| c.id).ok();
        let mut ignored = 0usize;
        let mut map: BTreeMap<(usize, usize), Acc> = BTreeMap::new();
        for e in contacts.encounters() {
            let (Some(a), Some(b)) = (index(e.a), index(e.b)) else {
                ignored += 1;
                continue;
            };
            let t = e.start_s + u64::from(e.duration_s / 2);
            let p = model.encounter_risk(f64::from(e.score));
            let ev = EvidenceRef::Contact {
                start_s: e.start_s,
                duration_s: e.duration_s,
                score: e.score,
            };
            add(
                &mut map,
                b,
                a,
                model.evidence_weight(&sorted[a], &sorted[b], t, p),
                ev,
            );
            add(
                &mut map,
                a,
                b,
                model.evidence_weight(&sorted[b], &sorted[a], t, p),
                ev,
            );
        }
        for r in rooms {
            let mut present: Vec<usize> = Vec::with_capacity(r.cases.len());
            for &id in &r.cases {
                match index(id) {
                    Some(i) => present.push(i),
                    None => ignored += 1,
                }
            }
            present.sort_unstable();
            present.dedup();
            let t = r.mid_s();
            let ev = EvidenceRef::Room {
                venue: r.venue,
                start_s: r.start_s,
                end_s: r.end_s,
                probability: r.probability,
            };
            for &u in &present {
                for &v in &present {
                    if u != v {
                        let w = model.evidence_weight(&sorted[u], &sorted[v], t, r.probability);
                        add(&mut map, v, u, w, ev);
                    }
                }
            }
        }
        let mut arcs = Vec::with_capacity(map.len());
        let mut in_range = vec![0..0; sorted.len()];
        for ((to, from), acc) in map {
            if in_range[to].is_empty() {
                in_range[to] = arcs.len()..arcs.len();
            }
            arcs.push(CandidateArc {
                from,
                to,
                weight: acc.weight,
                best: acc.best,
                best_weight: acc.best_weight,
                contacts: acc.contacts,
                rooms: acc.rooms,
            });
            in_range[to].end = arcs.len();
        }
        Ok(CandidateGraph {
            cases: sorted,
            arcs,
            in_range,
            ignored_evidence: ignored,
        })
    }

    /// The in-arcs of case index `v`.
    pub fn in_arcs(&self, v: usize) -> &[CandidateArc] {
        &self.arcs[self.in_range[v].clone()]
    }

    /// Connected components (ignoring direction) as sorted case-index lists; largest first,
    /// then by smallest case id.
    pub fn clusters(&self) -> Vec<Vec<usize>> {
        let n = self.cases.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for a in &self.arcs {
            let (x, y) = (find(&mut parent, a.from), find(&mut parent, a.to));
            if x != y {
                parent[x.max(y)] = x.min(y);
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for v in 0..n {
            let r = find(&mut parent, v);
            groups.entry(r).or_default().push(v);
        }
        let mut out: Vec<Vec<usize>> = groups.into_values().collect();
        out.sort_by(|x, y| y.len().cmp(&x.len()).then(x[0].cmp(&y[0])));
        out
    }
}
