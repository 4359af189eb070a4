//! A contact index that keeps taking encounters: an immutable base [`ContactGraph`] plus a
//! small delta of sorted per-case rows, folded into a new base by [`LiveContactGraph::compact`].

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use crate::ContactError;
use crate::graph::{CaseId, ContactGraph, Encounter, EncounterFilter, edge_ref_order};
use crate::query::{self, Adjacency, ChainQuery, ContactChains, EdgeRef};

/// A base [`ContactGraph`] plus the encounters inserted since it was built. Queries see
/// both and answer exactly as a graph built from all of them would
/// ([`LiveContactGraph::compact`] makes it one). Inserting costs O(d) in the two rows it
/// touches; compact when [`LiveContactGraph::delta_len`] grows past a few percent of the base.
#[derive(Clone, Debug, Default)]
pub struct LiveContactGraph {
    base: ContactGraph,
    /// Per case, its delta edges in canonical order.
    delta: BTreeMap<CaseId, Vec<EdgeRef>>,
    delta_encounters: usize,
}

impl LiveContactGraph {
    /// An empty index keeping what `filter` keeps.
    pub fn new(filter: EncounterFilter) -> LiveContactGraph {
        LiveContactGraph::from_graph(ContactGraph::empty(filter))
    }

    /// Starts from a built graph (its filter applies to inserted encounters too).
    pub fn from_graph(base: ContactGraph) -> LiveContactGraph {
        LiveContactGraph {
            base,
            delta: BTreeMap::new(),
            delta_encounters: 0,
        }
    }

    /// Adds an encounter. Returns whether the filter kept it.
    ///
    /// Errors: an invalid encounter (self-contact, bad score); nothing is added then.
    pub fn insert(&mut self, e: Encounter) -> Result<bool, ContactError> {
        e.validate()?;
        if !self.base.filter().keeps(&e) {
            return Ok(false);
        }
        for (from, to) in [(e.a, e.b), (e.b, e.a)] {
            let edge = EdgeRef {
                to,
                start_s: e.start_s,
                duration_s: e.duration_s,
                score: e.score,
            };
            let row = self.delta.entry(from).or_default();
            let at = row.partition_point(|x| edge_ref_order(x, &edge).is_le());
            row.insert(at, edge);
        }
        self.delta_encounters += 1;
        Ok(true)
    }

    /// Encounters inserted since the base was built.
    pub fn delta_len(&self) -> usize {
        self.delta_encounters
    }

    /// The base graph (without the delta).
    pub fn base(&self) -> &ContactGraph {
        &self.base
    }

    /// All stored encounters, base and delta.
    pub fn encounter_count(&self) -> usize {
        self.base.encounter_count() + self.delta_encounters
    }

    /// Whether `case` has a stored encounter (base or delta).
    pub fn contains(&self, case: CaseId) -> bool {
        self.base.contains(case) || self.delta.contains_key(&case)
    }

    /// Rebuilds the base from base and delta and empties the delta; the result equals
    /// [`ContactGraph::build`] of all encounters with the same filter.
    ///
    /// Errors: [`ContactError::TimeSpanTooLarge`] if the delta stretches the time span past
    /// what a graph holds; nothing changes then.
    pub fn compact(&mut self) -> Result<(), ContactError> {
        if self.delta_encounters == 0 {
            return Ok(());
        }
        let mut all: Vec<Encounter> =
            Vec::with_capacity(self.base.encounter_count() + self.delta_encounters);
        all.extend(self.base.encounters());
        for (&a, row) in &self.delta {
            all.extend(row.iter().filter(|e| a < e.to).map(|e| Encounter {
                a,
                b: e.to,
                start_s: e.start_s,
                duration_s: e.duration_s,
                score: e.score,
            }));
        }
        self.base = ContactGraph::build(&all, *self.base.filter())?;
        self.delta.clear();
        self.delta_encounters = 0;
        Ok(())
    }

    /// The contact chains of `case` over base and delta: see [`crate::query`].
    ///
    /// Errors: as [`ContactGraph::chains`].
    pub fn chains(&self, case: CaseId, q: &ChainQuery) -> Result<ContactChains, ContactError> {
        query::chains(self, case, q)
    }
}

impl Adjacency for LiveContactGraph {
    fn contains(&self, case: CaseId) -> bool {
        LiveContactGraph::contains(self, case)
    }

    fn scan<F: FnMut(EdgeRef) -> ControlFlow<()>>(
        &self,
        case: CaseId,
        lo_s: u64,
        hi_s: u64,
        reverse: bool,
        mut f: F,
    ) -> ControlFlow<()> {
        let Some(row) = self.delta.get(&case) else {
            return self.base.scan(case, lo_s, hi_s, reverse, f);
        };
        let start = row.partition_point(|e| e.start_s < lo_s);
        let end = row.partition_point(|e| e.start_s <= hi_s).max(start);
        let delta = &row[start..end];
        // Collect the base range, then merge the two sorted runs in canonical order.
        let mut base: Vec<EdgeRef> = Vec::new();
        let _ = self.base.scan(case, lo_s, hi_s, false, |e| {
            base.push(e);
            ControlFlow::Continue(())
        });
        let (mut i, mut j) = (0, 0);
        let mut merged = Vec::with_capacity(base.len() + delta.len());
        while i < base.len() || j < delta.len() {
            let take_base =
                j >= delta.len() || (i < base.len() && edge_ref_order(&base[i], &delta[j]).is_le());
            if take_base {
                merged.push(base[i]);
                i += 1;
            } else {
                merged.push(delta[j]);
                j += 1;
            }
        }
        if reverse {
            merged.reverse();
        }
        for e in merged {
            f(e)?;
        }
        ControlFlow::Continue(())
    }
}
