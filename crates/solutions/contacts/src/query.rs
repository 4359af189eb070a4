//! Bounded k-hop contact-chain search.
//!
//! # Semantics
//!
//! A *chain* from the source case `c0` is a sequence of encounters `e1 … ej` (`1 <= j <=
//! max_hops`) between `c0–c1`, `c1–c2`, …, `c(j-1)–cj`, the cases pairwise distinct, every
//! encounter passing the query's filters (`window`, `min_score`, `min_duration_s`).
//! Hops are listed from the source outward: `hops[0].from` is the source, `hops[i].to ==
//! hops[i + 1].from`, whatever the direction.
//!
//! - `time_respecting == false`: no order between hop times. Each reached case gets one chain
//!   with the fewest hops (breadth-first; `direction` is ignored, chains are tagged
//!   [`Direction::Any`]).
//! - [`Direction::Forward`], time-respecting: each hop starts at or after the previous one
//!   (onward transmission from the source). Each reached case gets its *earliest-arrival*
//!   chain (the least start time of the last hop, then the fewest hops). With `max_gap_s`,
//!   a hop from case `u` must also start at most `max_gap_s` after `u`'s arrival on the
//!   chain kept for `u` (an infectious period counted from the earliest time `u` can have
//!   been infected through the source); chains not kept for `u` are not extended. Without
//!   `max_gap_s` the result is exact: every case some chain reaches is reported, with the
//!   optimum arrival.
//! - [`Direction::Backward`], time-respecting: each hop starts at or before the previous one
//!   (who may have infected the source, through whom). Each reached case gets its
//!   *latest-departure* chain (the greatest start time of the last hop, then the fewest
//!   hops); `max_gap_s` as for forward, mirrored.
//! - [`Direction::Any`], time-respecting: the forward chains and the backward chains, both
//!   (a case may appear once in each direction).
//!
//! The search proceeds in rounds (round `i` finds chains of `i` hops), relaxing a per-case
//! label (arrival, departure or hop count) that only ever strictly improves, so a case's
//! encounters are scanned at most once per round in which its label improved, and only
//! within the time range its label allows (binary search in its time-sorted row).
//!
//! # Bounds and order
//!
//! At most `max_edges_scanned` stored edges are looked at; past that the search stops and
//! `truncated` is set (the chains found so far are valid chains, not necessarily optimal or
//! complete). At most `max_results` chains are returned (the first ones in result order; the
//! rest dropped with `truncated` set). Result order: hop count, then the last hop's start,
//! then the reached case's id, then direction (forward before backward) — deterministic, and
//! independent of the order in which encounters were inserted.
//!
//! A chain's aggregate `score` is its weakest hop's score (a chain is as strong as its
//! weakest link).

use std::ops::ControlFlow;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::ContactError;
use crate::graph::{CaseId, TimeWindow};

/// Most hops a query may ask for.
pub const MAX_HOPS: u8 = 16;

/// Which way in time chains run from the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Onward: each hop at or after the previous one (whom the source may have infected).
    Forward,
    /// Back: each hop at or before the previous one (who may have infected the source).
    Backward,
    /// Both (time-respecting queries), or no time order (other queries).
    Any,
}

/// What to look for from a source case. `ChainQuery::default()` is a 2-hop forward,
/// time-respecting query with generous bounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainQuery {
    /// Most hops in a chain (1 ..= [`MAX_HOPS`]).
    pub max_hops: u8,
    /// Which way in time chains run (time-respecting queries only).
    pub direction: Direction,
    /// Whether hop times must be ordered along a chain.
    pub time_respecting: bool,
    /// For time-respecting queries: most seconds between a case's arrival on its kept chain
    /// and the next hop from it. `None`: no limit.
    pub max_gap_s: Option<u64>,
    /// Only encounters starting within this window. `None`: all.
    pub window: Option<TimeWindow>,
    /// Only encounters with at least this score.
    pub min_score: f32,
    /// Only encounters lasting at least this long, in seconds.
    pub min_duration_s: u32,
    /// Most chains returned.
    pub max_results: usize,
    /// Most stored edges looked at (the work bound).
    pub max_edges_scanned: u64,
}

impl Default for ChainQuery {
    fn default() -> Self {
        ChainQuery {
            max_hops: 2,
            direction: Direction::Forward,
            time_respecting: true,
            max_gap_s: None,
            window: None,
            min_score: 0.0,
            min_duration_s: 0,
            max_results: 10_000,
            max_edges_scanned: 1_000_000,
        }
    }
}

impl ChainQuery {
    fn validate(&self) -> Result<(), ContactError> {
        if self.max_hops == 0 || self.max_hops > MAX_HOPS {
            return Err(ContactError::InvalidQuery("max_hops must be 1 ..= 16"));
        }
        if !self.min_score.is_finite() {
            return Err(ContactError::InvalidQuery("min_score must be finite"));
        }
        if self.window.is_some_and(|w| w.from_s > w.to_s) {
            return Err(ContactError::InvalidQuery("window ends before it starts"));
        }
        Ok(())
    }
}

/// One hop of a chain: an encounter, oriented from the source outward.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    /// The case nearer the source.
    pub from: CaseId,
    /// The case farther from the source.
    pub to: CaseId,
    /// When the encounter began, in seconds.
    pub start_s: u64,
    /// How long it lasted, in seconds.
    pub duration_s: u32,
    /// Its score.
    pub score: f32,
}

/// A chain of close contacts from the source to one reached case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    /// [`Direction::Forward`] or [`Direction::Backward`] for time-respecting chains,
    /// [`Direction::Any`] otherwise.
    pub direction: Direction,
    /// The hops, from the source outward (never empty).
    pub hops: Vec<Hop>,
    /// The weakest hop's score.
    pub score: f32,
}

impl Chain {
    /// The reached case (the last hop's `to`).
    pub fn target(&self) -> CaseId {
        self.hops.last().map_or(CaseId(0), |h| h.to)
    }

    /// The last hop's start time: the arrival (forward) or departure (backward) time.
    pub fn last_start_s(&self) -> u64 {
        self.hops.last().map_or(0, |h| h.start_s)
    }
}

/// The answer to a chain query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactChains {
    /// The queried case.
    pub source: CaseId,
    /// The chains, in result order (see the module documentation).
    pub chains: Vec<Chain>,
    /// Whether a bound (`max_edges_scanned` or `max_results`) cut the answer short.
    pub truncated: bool,
    /// Stored edges looked at.
    pub edges_scanned: u64,
}

/// An edge as a query sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EdgeRef {
    pub(crate) to: CaseId,
    pub(crate) start_s: u64,
    pub(crate) duration_s: u32,
    pub(crate) score: f32,
}

/// What the search needs of an index.
pub(crate) trait Adjacency {
    /// Whether `case` has a stored encounter.
    fn contains(&self, case: CaseId) -> bool;
    /// Calls `f` on each edge of `case` starting within `lo_s ..= hi_s`, in canonical order
    /// (time, other case, duration, score), or the reverse.
    fn scan<F: FnMut(EdgeRef) -> ControlFlow<()>>(
        &self,
        case: CaseId,
        lo_s: u64,
        hi_s: u64,
        reverse: bool,
        f: F,
    ) -> ControlFlow<()>;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Untimed,
    Forward,
    Backward,
}

/// A label entry: case `hop.to` reached in `round` hops at `hop.start_s`.
struct Entry {
    round: u8,
    hop: Hop,
    /// The previous entry of the same case (`u32::MAX`: none).
    prev: u32,
}

const NONE: u32 = u32::MAX;

pub(crate) fn chains<A: Adjacency>(
    adj: &A,
    source: CaseId,
    q: &ChainQuery,
) -> Result<ContactChains, ContactError> {
    q.validate()?;
    if !adj.contains(source) {
        return Err(ContactError::UnknownCase(source.0));
    }
    let mut out = ContactChains {
        source,
        chains: Vec::new(),
        truncated: false,
        edges_scanned: 0,
    };
    let modes: &[Mode] = match (q.time_respecting, q.direction) {
        (false, _) => &[Mode::Untimed],
        (true, Direction::Forward) => &[Mode::Forward],
        (true, Direction::Backward) => &[Mode::Backward],
        (true, Direction::Any) => &[Mode::Forward, Mode::Backward],
    };
    for &mode in modes {
        search(adj, source, q, mode, &mut out);
    }
    out.chains.sort_by(|x, y| {
        (x.hops.len(), x.last_start_s(), x.target(), x.direction).cmp(&(
            y.hops.len(),
            y.last_start_s(),
            y.target(),
            y.direction,
        ))
    });
    if out.chains.len() > q.max_results {
        out.chains.truncate(q.max_results);
        out.truncated = true;
    }
    Ok(out)
}

fn search<A: Adjacency>(
    adj: &A,
    source: CaseId,
    q: &ChainQuery,
    mode: Mode,
    out: &mut ContactChains,
) {
    let (win_lo, win_hi) = q.window.map_or((0, u64::MAX), |w| (w.from_s, w.to_s));
    let gap = q.max_gap_s.unwrap_or(u64::MAX);
    // Latest entry of each reached case; entries form per-case lists through `prev`.
    let mut head: FxHashMap<CaseId, u32> = FxHashMap::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut frontier: Vec<CaseId> = vec![source];
    let mut next: Vec<CaseId> = Vec::new();
    for round in 1..=q.max_hops {
        for &u in &frontier {
            // The label `u` had after the previous round (entries of this round are newer).
            let label = if u == source {
                None
            } else {
                let mut i = head.get(&u).copied().unwrap_or(NONE);
                while i != NONE && entries[i as usize].round >= round {
                    i = entries[i as usize].prev;
                }
                if i == NONE {
                    continue;
                }
                Some(entries[i as usize].hop.start_s)
            };
            let (lo, hi, reverse) = match (mode, label) {
                (Mode::Untimed, _) | (_, None) => (win_lo, win_hi, mode == Mode::Backward),
                (Mode::Forward, Some(a)) => {
                    (win_lo.max(a), win_hi.min(a.saturating_add(gap)), false)
                }
                (Mode::Backward, Some(d)) => {
                    (win_lo.max(d.saturating_sub(gap)), win_hi.min(d), true)
                }
            };
            if lo > hi {
                continue;
            }
            let flow = adj.scan(u, lo, hi, reverse, |e| {
                if out.edges_scanned >= q.max_edges_scanned {
                    out.truncated = true;
                    return ControlFlow::Break(());
                }
                out.edges_scanned += 1;
                if e.to == source || e.score < q.min_score || e.duration_s < q.min_duration_s {
                    return ControlFlow::Continue(());
                }
                let current = head.get(&e.to).copied();
                let improves = match (current, mode) {
                    (None, _) => true,
                    (Some(_), Mode::Untimed) => false,
                    (Some(c), Mode::Forward) => e.start_s < entries[c as usize].hop.start_s,
                    (Some(c), Mode::Backward) => e.start_s > entries[c as usize].hop.start_s,
                };
                if improves {
                    let idx = u32::try_from(entries.len()).unwrap_or(NONE);
                    entries.push(Entry {
                        round,
                        hop: Hop {
                            from: u,
                            to: e.to,
                            start_s: e.start_s,
                            duration_s: e.duration_s,
                            score: e.score,
                        },
                        prev: current.unwrap_or(NONE),
                    });
                    head.insert(e.to, idx);
                    next.push(e.to);
                }
                ControlFlow::Continue(())
            });
            if flow.is_break() {
                break;
            }
        }
        if out.truncated || next.is_empty() {
            break;
        }
        next.sort_unstable();
        next.dedup();
        std::mem::swap(&mut frontier, &mut next);
        next.clear();
    }
    // One chain per reached case, from its best (latest) entry back to the source.
    let direction = match mode {
        Mode::Untimed => Direction::Any,
        Mode::Forward => Direction::Forward,
        Mode::Backward => Direction::Backward,
    };
    for &best in head.values() {
        let mut hops = Vec::new();
        let mut e = &entries[best as usize];
        loop {
            hops.push(e.hop);
            if e.hop.from == source || hops.len() > usize::from(q.max_hops) {
                break;
            }
            // The entry of `from` this hop was relaxed from: its latest one of an earlier round.
            let mut i = head.get(&e.hop.from).copied().unwrap_or(NONE);
            while i != NONE && entries[i as usize].round >= e.round {
                i = entries[i as usize].prev;
            }
            if i == NONE {
                break;
            }
            e = &entries[i as usize];
        }
        hops.reverse();
        let score = hops.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
        out.chains.push(Chain {
            direction,
            hops,
            score,
        });
    }
}
