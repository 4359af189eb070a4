//! Events: stored by position, indexed by module, kind, (module, kind) and attribute, and read
//! back a page at a time.
//!
//! A position is (height, transaction index, event index). Every index entry is a 32-byte
//! selector followed by the position, so the entries of one selector are a contiguous range
//! in position order and a height range is a sub-range. A query walks the range of the most
//! selective index its filter allows (attribute, then (module, kind), then kind, then module;
//! with no condition, the events table itself), checks the rest of the filter on each event,
//! and stops at `limit` events or after examining [`MAX_EVENT_SCAN`] entries, whichever is
//! first. The page's `next` cursor is the position of the first entry not examined, so a
//! client that follows `next` until it is `None` sees every matching event exactly once, in
//! position order. A page may hold fewer than `limit` events while `next` is still `Some`.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use redb::{ReadTransaction, ReadableTable, Table};
use serde::{Deserialize, Serialize};
use trustedge_types::{Event, Hash, Height};

use crate::StoreError;
use crate::tables::{
    EVENT_INDEX, EVENTS, Selector, decode_event_pos, event_pos, index_key, pos_from_u128,
    pos_to_u128, selector,
};

/// Most events in one page.
pub const MAX_EVENT_PAGE: usize = 1000;
/// Most index entries one query examines; bounds the work of a selective filter over a
/// sparse index.
pub const MAX_EVENT_SCAN: usize = 10_000;
/// Largest stored event record decoded.
const MAX_EVENT_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Which events to return. Every given condition must hold; heights are inclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Module that emitted the event.
    pub module: Option<String>,
    /// Kind of the event.
    pub kind: Option<String>,
    /// An attribute `(key, value)` the event must have.
    pub attribute: Option<(String, String)>,
    /// Lowest height.
    pub from_height: Option<Height>,
    /// Highest height.
    pub to_height: Option<Height>,
}

impl EventFilter {
    /// Whether `event` satisfies the module, kind and attribute conditions.
    pub fn matches(&self, event: &Event) -> bool {
        self.module.as_deref().is_none_or(|m| event.module == m)
            && self.kind.as_deref().is_none_or(|k| event.kind == k)
            && self.attribute.as_ref().is_none_or(|(k, v)| {
                event
                    .attributes
                    .iter()
                    .any(|a| &a.key == k && &a.value == v)
            })
    }

    fn primary_selector(&self) -> Option<[u8; 32]> {
        let sel = match (&self.attribute, &self.module, &self.kind) {
            (Some((k, v)), _, _) => Selector::Attribute(k, v),
            (None, Some(m), Some(k)) => Selector::ModuleKind(m, k),
            (None, None, Some(k)) => Selector::Kind(k),
            (None, Some(m), None) => Selector::Module(m),
            (None, None, None) => return None,
        };
        Some(selector(sel))
    }
}

/// A position in the event log: where a page starts.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct EventCursor {
    /// Block height.
    pub height: Height,
    /// Index of the transaction in the block.
    pub tx_index: u32,
    /// Index of the event in the transaction's result.
    pub event_index: u32,
}

impl EventCursor {
    fn to_u128(self) -> u128 {
        pos_to_u128(self.height, self.tx_index, self.event_index)
    }

    fn from_u128(p: u128) -> EventCursor {
        let (height, tx_index, event_index) = pos_from_u128(p);
        EventCursor {
            height,
            tx_index,
            event_index,
        }
    }
}

/// `height-tx_index-event_index`, for query strings.
impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.height, self.tx_index, self.event_index)
    }
}

impl FromStr for EventCursor {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::InvalidArgument(format!("event cursor {s:?} is not h-t-e"));
        let mut parts = s.trim().split('-');
        let (Some(h), Some(t), Some(e), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(EventCursor {
            height: h.parse().map_err(|_| bad())?,
            tx_index: t.parse().map_err(|_| bad())?,
            event_index: e.parse().map_err(|_| bad())?,
        })
    }
}

/// An event with where it happened.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IndexedEvent {
    /// Block height.
    pub height: Height,
    /// Index of the transaction in the block; [`BLOCK_EVENTS_TX_INDEX`] for an event of
    /// the block's end-of-block hooks.
    pub tx_index: u32,
    /// Index of the event in the transaction's result.
    pub event_index: u32,
    /// Hash of the transaction ([`Hash::ZERO`] for an end-of-block event).
    pub tx_hash: Hash,
    /// The event.
    pub event: Event,
}

/// The transaction index under which a block's end-of-block events are stored and indexed:
/// after every transaction of the block, so that position order is execution order.
pub const BLOCK_EVENTS_TX_INDEX: u32 = u32::MAX;

/// One page of events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// Matching events in position order.
    pub events: Vec<IndexedEvent>,
    /// Where the next page starts; `None` when there is nothing more to examine.
    pub next: Option<EventCursor>,
}

/// Writes an event and its index entries.
pub(crate) fn put_event(
    events: &mut Table<'_, &'static [u8], &'static [u8]>,
    index: &mut Table<'_, &'static [u8], ()>,
    height: Height,
    tx_index: u32,
    event_index: u32,
    tx_hash: &Hash,
    event: &Event,
) -> Result<(), StoreError> {
    let pos = pos_to_u128(height, tx_index, event_index);
    let record = trustedge_types::encode(&(tx_hash, event));
    events.insert(event_pos(pos).as_slice(), record.as_slice())?;
    let mut sels = vec![
        selector(Selector::Module(&event.module)),
        selector(Selector::Kind(&event.kind)),
        selector(Selector::ModuleKind(&event.module, &event.kind)),
    ];
    for a in &event.attributes {
        sels.push(selector(Selector::Attribute(&a.key, &a.value)));
    }
    for sel in &sels {
        index.insert(index_key(sel, pos).as_slice(), ())?;
    }
    Ok(())
}

fn decode_record(pos: u128, bytes: &[u8]) -> Result<IndexedEvent, StoreError> {
    let (tx_hash, event): (Hash, Event) = trustedge_types::decode(bytes, MAX_EVENT_RECORD_BYTES)
        .map_err(|e| StoreError::corrupt("event", e))?;
    let (height, tx_index, event_index) = pos_from_u128(pos);
    Ok(IndexedEvent {
        height,
        tx_index,
        event_index,
        tx_hash,
        event,
    })
}

/// Runs an event query on a read transaction. See the module documentation.
pub(crate) fn query(
    txn: &ReadTransaction,
    filter: &EventFilter,
    cursor: Option<EventCursor>,
    limit: usize,
) -> Result<EventPage, StoreError> {
    let limit = limit.clamp(1, MAX_EVENT_PAGE);
    let mut start = filter
        .from_height
        .map(|h| pos_to_u128(h, 0, 0))
        .unwrap_or(0);
    if let Some(c) = cursor {
        start = start.max(c.to_u128());
    }
    let end = filter
        .to_height
        .map(|h| pos_to_u128(h, u32::MAX, u32::MAX))
        .unwrap_or(u128::MAX);
    if start > end {
        return Ok(EventPage::default());
    }
    let events = txn.open_table(EVENTS)?;
    match filter.primary_selector() {
        None => {
            let (lo, hi) = (event_pos(start), event_pos(end));
            let entries = events
                .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
                .map(|entry| {
                    let (k, v) = entry?;
                    let pos = decode_event_pos(k.value())?;
                    Ok((pos, Some(v.value().to_vec())))
                });
            collect(entries, &events, filter, limit)
        }
        Some(sel) => {
            let index = txn.open_table(EVENT_INDEX)?;
            let (lo, hi) = (index_key(&sel, start), index_key(&sel, end));
            let entries = index
                .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
                .map(|entry| {
                    let (k, _) = entry?;
                    Ok((decode_event_pos(k.value())?, None))
                });
            collect(entries, &events, filter, limit)
        }
    }
}

type Entry = Result<(u128, Option<Vec<u8>>), StoreError>;

fn collect(
    entries: impl Iterator<Item = Entry>,
    events: &impl ReadableTable<&'static [u8], &'static [u8]>,
    filter: &EventFilter,
    limit: usize,
) -> Result<EventPage, StoreError> {
    let mut page = EventPage::default();
    for (examined, entry) in entries.enumerate() {
        let (pos, record) = entry?;
        if page.events.len() == limit || examined == MAX_EVENT_SCAN {
            page.next = Some(EventCursor::from_u128(pos));
            break;
        }
        let record = match record {
            Some(r) => r,
            None => events
                .get(event_pos(pos).as_slice())?
                .map(|g| g.value().to_vec())
                .ok_or_else(|| StoreError::corrupt("event index", "entry without an event"))?,
        };
        let ev = decode_record(pos, &record)?;
        if filter.matches(&ev.event) {
            page.events.push(ev);
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_text_round_trip() {
        let c = EventCursor {
            height: 12,
            tx_index: 3,
            event_index: 0,
        };
        assert_eq!(c.to_string(), "12-3-0");
        assert_eq!("12-3-0".parse::<EventCursor>().unwrap(), c);
        for bad in ["", "1-2", "1-2-3-4", "a-1-1", "-1-1-1", "1-2-99999999999"] {
            assert!(bad.parse::<EventCursor>().is_err(), "{bad}");
        }
        assert_eq!(EventCursor::from_u128(c.to_u128()), c);
    }

    #[test]
    fn filter_matching() {
        let e = Event::new("devices", "registered")
            .with("org", "h1")
            .with("class", "wearable");
        assert!(EventFilter::default().matches(&e));
        let f = |m: Option<&str>, k: Option<&str>, a: Option<(&str, &str)>| EventFilter {
            module: m.map(Into::into),
            kind: k.map(Into::into),
            attribute: a.map(|(k, v)| (k.into(), v.into())),
            ..EventFilter::default()
        };
        assert!(
            f(
                Some("devices"),
                Some("registered"),
                Some(("class", "wearable"))
            )
            .matches(&e)
        );
        assert!(!f(Some("orgs"), None, None).matches(&e));
        assert!(!f(None, Some("revoked"), None).matches(&e));
        assert!(!f(None, None, Some(("class", "phone"))).matches(&e));
        assert!(!f(None, None, Some(("wearable", "class"))).matches(&e));
    }
}
