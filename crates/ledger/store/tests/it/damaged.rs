//! A file damaged outside the store is an error when opened, never a panic.

use trustedge_store::{Store, StoreError};

use crate::common::*;

#[test]
fn damaged_files_are_errors_not_panics() {
    let (dir, store) = genesis_store();
    for _ in 0..30 {
        commit_next(&store).unwrap();
    }
    drop(store);
    let good = std::fs::read(dir.path().join("store.redb")).unwrap();
    let n = good.len();
    assert!(n > 16 * 4096, "{n}");
    let flip = |range: std::ops::Range<usize>, mask: u8| {
        let mut b = good.clone();
        for i in range {
            b[i] ^= mask;
        }
        b
    };
    // (name, bytes, must the open fail?) The "must" cases made redb panic before the
    // guarded open; the others must either fail or open a store that reads back correctly.
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("not a store", vec![0xAB; 8192], true),
        ("truncated to half", good[..n / 2].to_vec(), true),
        ("header only", good[..4096].to_vec(), true),
        ("magic flipped", flip(0..64, 0xFF), true),
        ("header fields flipped", flip(64..512, 0x33), true),
        ("early page flipped", flip(4096..8192, 0x5A), true),
        (
            "tail zeroed",
            {
                let mut b = good.clone();
                b[n * 3 / 4..].fill(0);
                b
            },
            true,
        ),
        (
            "middle page flipped",
            flip(n / 2..n / 2 + 4096, 0x5A),
            false,
        ),
    ];
    for (name, bytes, must_fail) in cases {
        let path = dir.path().join(format!("{}.redb", name.replace(' ', "-")));
        std::fs::write(&path, &bytes).unwrap();
        match Store::open(&path) {
            Err(e) => assert!(
                matches!(e, StoreError::Database(_) | StoreError::Corrupt { .. }),
                "{name}: {e}"
            ),
            Ok(store) => {
                assert!(!must_fail, "{name}: opened");
                verify_chain(&store);
            }
        }
    }
}

#[test]
fn a_checked_open_of_a_healthy_store_succeeds() {
    let (dir, store) = genesis_store();
    commit_next(&store).unwrap();
    drop(store);
    let store = Store::open_checked(&dir.path().join("store.redb")).unwrap();
    assert_eq!(verify_chain(&store), 1);
}
