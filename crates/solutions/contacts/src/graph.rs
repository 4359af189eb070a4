//! The immutable contact index: compressed sparse rows, one row per case, each row sorted by
//! time, both directions of every encounter stored.

use std::cmp::Ordering;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use crate::ContactError;
use crate::query::{self, Adjacency, ChainQuery, ContactChains, EdgeRef};

/// A confirmed case, as numbered by the cloud. Ids need not be dense, but dense ids
/// (0..n) make the row lookup a direct index instead of a binary search.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct CaseId(pub u32);

impl std::fmt::Display for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A close contact between two confirmed cases, as scored by an edge (symmetric: `a` met
/// `b` and `b` met `a`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Encounter {
    /// One side.
    pub a: CaseId,
    /// The other side (never equal to `a`).
    pub b: CaseId,
    /// When the encounter began, in seconds (Unix time, or any base shared by all
    /// encounters of one graph).
    pub start_s: u64,
    /// How long it lasted, in seconds.
    pub duration_s: u32,
    /// Its weighted risk score (GAEN-style: attenuation- and duration-weighted); finite, >= 0.
    pub score: f32,
}

impl Encounter {
    /// Checks what every stored encounter must satisfy: two different cases and a finite,
    /// non-negative score.
    pub fn validate(&self) -> Result<(), ContactError> {
        if self.a == self.b {
            return Err(ContactError::SelfContact(self.a.0));
        }
        if !self.score.is_finite() || self.score < 0.0 {
            return Err(ContactError::InvalidScore {
                a: self.a.0,
                b: self.b.0,
                score: self.score,
            });
        }
        Ok(())
    }
}

/// An inclusive time range `from_s ..= to_s` for encounter start times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    /// Earliest start kept.
    pub from_s: u64,
    /// Latest start kept.
    pub to_s: u64,
}

impl TimeWindow {
    /// Whether `t_s` lies in the window.
    pub fn contains(&self, t_s: u64) -> bool {
        self.from_s <= t_s && t_s <= self.to_s
    }
}

/// Which encounters an index keeps at all (queries can narrow further).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncounterFilter {
    /// Least score kept.
    pub min_score: f32,
    /// Least duration kept, in seconds.
    pub min_duration_s: u32,
    /// Start times kept; `None` keeps all.
    pub window: Option<TimeWindow>,
}

impl Default for EncounterFilter {
    /// Keeps everything.
    fn default() -> Self {
        EncounterFilter {
            min_score: 0.0,
            min_duration_s: 0,
            window: None,
        }
    }
}

impl EncounterFilter {
    /// Whether a (valid) encounter passes the filter.
    pub fn keeps(&self, e: &Encounter) -> bool {
        e.score >= self.min_score
            && e.duration_s >= self.min_duration_s
            && self.window.is_none_or(|w| w.contains(e.start_s))
    }

    fn validate(&self) -> Result<(), ContactError> {
        if !self.min_score.is_finite() {
            return Err(ContactError::InvalidQuery(
                "filter min_score must be finite",
            ));
        }
        if self.window.is_some_and(|w| w.from_s > w.to_s) {
            return Err(ContactError::InvalidQuery(
                "filter window ends before it starts",
            ));
        }
        Ok(())
    }
}

/// One stored direction of an encounter: 16 bytes, no padding.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub(crate) struct Edge {
    /// Start, as seconds after the graph's `base_s`.
    offset_s: u32,
    /// The other case.
    to: u32,
    duration_s: u32,
    score: f32,
}

/// The canonical order of a row: time, then other case, then duration, then score. Queries
/// visit edges in this order, so results do not depend on insertion order.
fn edge_order(x: &Edge, y: &Edge) -> Ordering {
    (x.offset_s, x.to, x.duration_s)
        .cmp(&(y.offset_s, y.to, y.duration_s))
        .then(x.score.total_cmp(&y.score))
}

/// The immutable contact index. Build it with [`ContactGraph::build`]; query it with
/// [`ContactGraph::chains`].
///
/// Layout: `ids` (sorted case ids, one per row), `offsets` (row `i` is
/// `edges[offsets[i]..offsets[i + 1]]`), `edges` (16 bytes each, two per encounter).
#[derive(Clone, Debug, PartialEq)]
pub struct ContactGraph {
    ids: Vec<u32>,
    offsets: Vec<u64>,
    edges: Vec<Edge>,
    base_s: u64,
    /// `ids[i] == i` for every row: the row of a case is its id.
    dense: bool,
    filter: EncounterFilter,
}

impl Default for ContactGraph {
    fn default() -> Self {
        ContactGraph::empty(EncounterFilter::default())
    }
}

impl ContactGraph {
    /// A graph with no encounter that will keep (on compaction) what `filter` keeps.
    pub fn empty(filter: EncounterFilter) -> ContactGraph {
        ContactGraph {
            ids: Vec::new(),
            offsets: vec![0],
            edges: Vec::new(),
            base_s: 0,
            dense: true,
            filter,
        }
    }

    /// Builds the index of the encounters `filter` keeps. Time O(n log d) (a counting pass,
    /// a scatter, a sort of each row); memory: 16 bytes per direction, plus 12 per case.
    ///
    /// Errors: an invalid encounter (self-contact, bad score), an invalid filter, or kept
    /// encounters spanning more than `u32::MAX` seconds.
    pub fn build(
        encounters: &[Encounter],
        filter: EncounterFilter,
    ) -> Result<ContactGraph, ContactError> {
        filter.validate()?;
        let mut min_s = u64::MAX;
        let mut max_s = 0u64;
        let mut ids = Vec::new();
        for e in encounters {
            e.validate()?;
            if filter.keeps(e) {
                min_s = min_s.min(e.start_s);
                max_s = max_s.max(e.start_s);
                ids.push(e.a.0);
                ids.push(e.b.0);
            }
        }
        if ids.is_empty() {
            return Ok(ContactGraph::empty(filter));
        }
        let span_s = max_s - min_s;
        if span_s > u64::from(u32::MAX) {
            return Err(ContactError::TimeSpanTooLarge {
                span_s,
                max_s: u64::from(u32::MAX),
            });
        }
        ids.sort_unstable();
        ids.dedup();
        ids.shrink_to_fit();
        let dense = ids
            .last()
            .is_some_and(|&last| last as usize + 1 == ids.len());
        let mut graph = ContactGraph {
            ids,
            offsets: Vec::new(),
            edges: Vec::new(),
            base_s: min_s,
            dense,
            filter,
        };
        let rows = graph.ids.len();
        // Counting pass: row sizes, then exclusive prefix sums.
        let mut offsets = vec![0u64; rows + 1];
        for e in encounters.iter().filter(|e| filter.keeps(e)) {
            for id in [e.a, e.b] {
                if let Some(r) = graph.row(id) {
                    offsets[r + 1] += 1;
                }
            }
        }
        for r in 0..rows {
            offsets[r + 1] += offsets[r];
        }
        // Scatter both directions into place, then sort each row.
        let total = offsets[rows] as usize;
        let mut cursor: Vec<u64> = offsets[..rows].to_vec();
        let mut edges = vec![Edge::default(); total];
        for e in encounters.iter().filter(|e| filter.keeps(e)) {
            // Fits: start_s - base_s <= span_s <= u32::MAX, checked above.
            let offset_s = u32::try_from(e.start_s - min_s).unwrap_or(u32::MAX);
            for (from, to) in [(e.a, e.b), (e.b, e.a)] {
                if let Some(r) = graph.row(from) {
                    let at = cursor[r] as usize;
                    cursor[r] += 1;
                    edges[at] = Edge {
                        offset_s,
                        to: to.0,
                        duration_s: e.duration_s,
                        score: e.score,
                    };
                }
            }
        }
        for r in 0..rows {
            edges[offsets[r] as usize..offsets[r + 1] as usize].sort_unstable_by(edge_order);
        }
        graph.offsets = offsets;
        graph.edges = edges;
        Ok(graph)
    }

    /// The filter this graph was built with.
    pub fn filter(&self) -> &EncounterFilter {
        &self.filter
    }

    /// Number of stored encounters (each counted once, though stored in both directions).
    pub fn encounter_count(&self) -> usize {
        self.edges.len() / 2
    }

    /// Number of cases with at least one stored encounter.
    pub fn case_count(&self) -> usize {
        self.ids.len()
    }

    /// Whether `case` has a stored encounter.
    pub fn contains(&self, case: CaseId) -> bool {
        self.row(case).is_some()
    }

    /// Number of stored encounters of `case` (0 if unknown).
    pub fn degree(&self, case: CaseId) -> usize {
        self.row(case)
            .map_or(0, |r| (self.offsets[r + 1] - self.offsets[r]) as usize)
    }

    /// The cases with a stored encounter, ascending.
    pub fn cases(&self) -> impl Iterator<Item = CaseId> + '_ {
        self.ids.iter().map(|&id| CaseId(id))
    }

    /// Heap bytes held by the index (ids, offsets and edges, by capacity).
    pub fn memory_bytes(&self) -> usize {
        self.ids.capacity() * size_of::<u32>()
            + self.offsets.capacity() * size_of::<u64>()
            + self.edges.capacity() * size_of::<Edge>()
    }

    /// Every stored encounter once, with `a < b`, by `a`, then in row order.
    pub fn encounters(&self) -> impl Iterator<Item = Encounter> + '_ {
        self.ids.iter().enumerate().flat_map(move |(r, &a)| {
            self.row_edges(r)
                .iter()
                .filter(move |e| a < e.to)
                .map(move |e| Encounter {
                    a: CaseId(a),
                    b: CaseId(e.to),
                    start_s: self.base_s + u64::from(e.offset_s),
                    duration_s: e.duration_s,
                    score: e.score,
                })
        })
    }

    /// The contact chains of `case`: see [`crate::query`] for the semantics.
    ///
    /// Errors: [`ContactError::UnknownCase`] if `case` has no stored encounter,
    /// [`ContactError::InvalidQuery`] for a query out of range.
    pub fn chains(&self, case: CaseId, q: &ChainQuery) -> Result<ContactChains, ContactError> {
        query::chains(self, case, q)
    }

    fn row(&self, case: CaseId) -> Option<usize> {
        if self.dense {
            let r = case.0 as usize;
            (r < self.ids.len()).then_some(r)
        } else {
            self.ids.binary_search(&case.0).ok()
        }
    }

    fn row_edges(&self, r: usize) -> &[Edge] {
        &self.edges[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    /// The edges of `case` starting within `lo ..= hi`, as a slice of its row.
    fn range(&self, case: CaseId, lo_s: u64, hi_s: u64) -> &[Edge] {
        let Some(r) = self.row(case) else {
            return &[];
        };
        if hi_s < self.base_s || lo_s > hi_s {
            return &[];
        }
        let lo = lo_s.saturating_sub(self.base_s);
        let hi = (hi_s - self.base_s).min(u64::from(u32::MAX));
        let row = self.row_edges(r);
        let start = row.partition_point(|e| u64::from(e.offset_s) < lo);
        let end = row.partition_point(|e| u64::from(e.offset_s) <= hi);
        &row[start..end.max(start)]
    }

    pub(crate) fn edge_ref(&self, e: &Edge) -> EdgeRef {
        EdgeRef {
            to: CaseId(e.to),
            start_s: self.base_s + u64::from(e.offset_s),
            duration_s: e.duration_s,
            score: e.score,
        }
    }
}

impl Adjacency for ContactGraph {
    fn contains(&self, case: CaseId) -> bool {
        ContactGraph::contains(self, case)
    }

    fn scan<F: FnMut(EdgeRef) -> ControlFlow<()>>(
        &self,
        case: CaseId,
        lo_s: u64,
        hi_s: u64,
        reverse: bool,
        mut f: F,
    ) -> ControlFlow<()> {
        let edges = self.range(case, lo_s, hi_s);
        if reverse {
            for e in edges.iter().rev() {
                f(self.edge_ref(e))?;
            }
        } else {
            for e in edges {
                f(self.edge_ref(e))?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// The order of [`EdgeRef`]s, the same as [`edge_order`] on stored edges.
pub(crate) fn edge_ref_order(x: &EdgeRef, y: &EdgeRef) -> Ordering {
    (x.start_s, x.to, x.duration_s)
        .cmp(&(y.start_s, y.to, y.duration_s))
        .then(x.score.total_cmp(&y.score))
}
