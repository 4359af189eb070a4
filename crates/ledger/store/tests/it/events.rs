//! (8) Event filters and pagination return exactly the expected events.

use proptest::prelude::*;
use trustedge_store::{
    EventCursor, EventFilter, EventPage, IndexedEvent, MAX_EVENT_PAGE, MAX_EVENT_SCAN, Store,
};
use trustedge_types::{Event, TxOutcome, TxResult};

use crate::common::*;

/// Follows `next` from the start to the end and returns everything, checking page sizes.
fn read_all(store: &Store, filter: &EventFilter, limit: usize) -> Vec<IndexedEvent> {
    let mut out = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page: EventPage = store.events(filter, cursor, limit).unwrap();
        assert!(page.events.len() <= limit.clamp(1, MAX_EVENT_PAGE));
        if let (Some(last), Some(next)) = (page.events.last(), page.next) {
            let last = EventCursor {
                height: last.height,
                tx_index: last.tx_index,
                event_index: last.event_index,
            };
            assert!(next > last, "cursor must move past the page");
        }
        out.extend(page.events);
        pages += 1;
        assert!(pages < 100_000, "paging does not terminate");
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn expected(store: &Store, f: &EventFilter) -> Vec<IndexedEvent> {
    all_events(store)
        .into_iter()
        .filter(|e| f.from_height.is_none_or(|h| e.height >= h))
        .filter(|e| f.to_height.is_none_or(|h| e.height <= h))
        .filter(|e| f.matches(&e.event))
        .collect()
}

fn filter(
    module: Option<&str>,
    kind: Option<&str>,
    attribute: Option<(&str, &str)>,
    from_height: Option<u64>,
    to_height: Option<u64>,
) -> EventFilter {
    EventFilter {
        module: module.map(Into::into),
        kind: kind.map(Into::into),
        attribute: attribute.map(|(k, v)| (k.into(), v.into())),
        from_height,
        to_height,
    }
}

#[test]
fn filters_and_pages_return_exactly_the_matching_events() {
    let (_dir, store) = genesis_store();
    for _ in 0..15 {
        commit_next(&store).unwrap();
    }
    let everything = all_events(&store);
    assert!(everything.len() > 30, "{}", everything.len());
    let filters = [
        filter(None, None, None, None, None),
        filter(Some("demo"), None, None, None, None),
        filter(Some("audit"), None, None, None, None),
        filter(None, Some("touch"), None, None, None),
        filter(Some("demo"), Some("put"), None, None, None),
        filter(Some("audit"), Some("put"), None, None, None),
        filter(None, None, Some(("parity", "1")), None, None),
        filter(Some("demo"), None, Some(("tx", "1")), None, None),
        filter(None, None, Some(("height", "7")), None, None),
        filter(None, None, Some(("nope", "1")), None, None),
        filter(None, None, None, Some(4), Some(9)),
        filter(Some("demo"), Some("put"), None, Some(10), None),
        filter(None, None, Some(("parity", "0")), None, Some(6)),
        filter(None, None, None, Some(9), Some(4)),
        filter(None, None, None, Some(16), None),
        filter(Some("nope"), None, None, None, None),
    ];
    for f in &filters {
        let want = expected(&store, f);
        for limit in [0, 1, 2, 3, 7, 1000, usize::MAX] {
            assert_eq!(read_all(&store, f, limit), want, "{f:?} limit {limit}");
        }
    }
    // A cursor in the middle starts there, inclusively.
    let all = filter(None, None, None, None, None);
    let mid = &everything[everything.len() / 2];
    let page = store
        .events(
            &all,
            Some(EventCursor {
                height: mid.height,
                tx_index: mid.tx_index,
                event_index: mid.event_index,
            }),
            5,
        )
        .unwrap();
    assert_eq!(page.events[0], *mid);
    // A full page whose successor exists points at it exactly.
    let first = store.events(&all, None, 3).unwrap();
    let next = first.next.unwrap();
    assert_eq!(
        (next.height, next.tx_index, next.event_index),
        (
            everything[3].height,
            everything[3].tx_index,
            everything[3].event_index
        )
    );
    // The last page says there is nothing more.
    let last = store.events(&all, None, everything.len()).unwrap();
    assert_eq!(last.events.len(), everything.len());
    assert_eq!(last.next, None);
}

#[test]
fn a_sparse_match_over_a_dense_index_pages_through_the_scan_budget() {
    let (_dir, store) = genesis_store();
    // One block whose transactions emit more events than one query examines; all carry the
    // attribute `common=1`, and three are of module `rare`.
    let per_tx = 50usize;
    let txs_n = MAX_EVENT_SCAN / per_tx + 10;
    let mut parts = content(1);
    let template = parts.txs[0].clone();
    parts.txs.clear();
    parts.results.clear();
    for i in 0..txs_n {
        let mut tx = template.clone();
        tx.body.nonce = 1_000 + i as u64;
        parts.txs.push(
            tx.body
                .clone()
                .sign(&trustedge_types::Keypair::from_seed([2; 32])),
        );
        let events = (0..per_tx)
            .map(|j| {
                let n = i * per_tx + j;
                let module = if n == 5 || n == MAX_EVENT_SCAN + 7 || n == txs_n * per_tx - 1 {
                    "rare"
                } else {
                    "bulk"
                };
                Event::new(module, "e").with("common", 1)
            })
            .collect();
        parts.results.push(TxResult {
            outcome: TxOutcome::Success,
            events,
        });
    }
    commit(&store, &parts).unwrap();
    let f = filter(Some("rare"), None, Some(("common", "1")), None, None);
    let want = expected(&store, &f);
    assert_eq!(want.len(), 3);
    let first = store.events(&f, None, 10).unwrap();
    assert_eq!(
        first.events.len(),
        1,
        "only the first budget's worth was examined"
    );
    assert!(first.next.is_some());
    assert_eq!(read_all(&store, &f, 10), want);
    // The module index alone answers the same question without the budget.
    let by_module = filter(Some("rare"), None, None, None, None);
    let page = store.events(&by_module, None, 10).unwrap();
    assert_eq!(page.events, want);
    assert_eq!(page.next, None);
}

fn small_event() -> impl Strategy<Value = Event> {
    (
        prop_oneof![Just("a"), Just("b")],
        prop_oneof![Just("x"), Just("y"), Just("z")],
        proptest::collection::vec(
            (
                prop_oneof![Just("k1"), Just("k2")],
                prop_oneof![Just("1"), Just("2")],
            ),
            0..3,
        ),
    )
        .prop_map(|(m, k, attrs)| {
            attrs
                .into_iter()
                .fold(Event::new(m, k), |e, (key, v)| e.with(key, v))
        })
}

fn small_filter() -> impl Strategy<Value = EventFilter> {
    (
        proptest::option::of(prop_oneof![Just("a"), Just("b")]),
        proptest::option::of(prop_oneof![Just("x"), Just("y"), Just("z")]),
        proptest::option::of((
            prop_oneof![Just("k1"), Just("k2")],
            prop_oneof![Just("1"), Just("2")],
        )),
        proptest::option::of(0u64..5),
        proptest::option::of(0u64..5),
    )
        .prop_map(|(m, k, a, from, to)| filter(m, k, a, from, to))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_events_random_filters(
        blocks in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(small_event(), 0..4), 0..4),
            1..4,
        ),
        filters in proptest::collection::vec(small_filter(), 1..6),
        limit in 1usize..6,
    ) {
        let (_dir, store) = genesis_store();
        let user = trustedge_types::Keypair::from_seed([2; 32]);
        let template = content(1).txs[0].clone();
        let mut nonce = 0;
        for txs in &blocks {
            let mut parts = Parts { txs: vec![], results: vec![], writes: Default::default() };
            for events in txs {
                nonce += 1;
                let mut body = template.body.clone();
                body.nonce = nonce;
                parts.txs.push(body.sign(&user));
                parts.results.push(TxResult { outcome: TxOutcome::Success, events: events.clone() });
            }
            commit(&store, &parts).unwrap();
        }
        for f in &filters {
            prop_assert_eq!(read_all(&store, f, limit), expected(&store, f), "{:?}", f);
        }
    }
}
