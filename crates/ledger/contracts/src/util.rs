//! Helpers shared by the modules: identifier rules, bounded pagination, JSON conversion and
//! the one-identity-per-key check.

use std::collections::BTreeMap;

use borsh::BorshDeserialize;
use serde::Serialize;
use trustedge_execution::module::module_key;
use trustedge_execution::state::prefix_end;
use trustedge_execution::{Entries, QueryError, StateError, StateRead};
use trustedge_types::{Address, PublicKey, codec};

use crate::{devices, genesis, orgs};

/// Longest organisation id.
pub const MAX_ID_CHARS: usize = 32;
/// Entries a list query returns when no `limit` is given.
pub const DEFAULT_QUERY_LIMIT: usize = 100;
/// Most entries a list query returns; bigger `limit`s are refused rather than silently cut.
pub const MAX_QUERY_LIMIT: usize = 1000;

/// Whether `s` is 1..=32 characters of `[a-z0-9-]`. Ids go into state keys and URLs, so they
/// must contain neither `/` nor anything that needs escaping.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_CHARS
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Whether every character of `s` is printable ASCII (space to tilde).
pub fn is_printable_ascii(s: &str) -> bool {
    s.bytes().all(|c| (0x20..=0x7e).contains(&c))
}

/// Decodes a stored value for `describe_value`; `None` if it is not a `T`.
pub fn decode_stored<T: BorshDeserialize>(value: &[u8]) -> Option<T> {
    codec::decode(value, usize::MAX).ok()
}

/// Serialises a query answer.
pub fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, QueryError> {
    serde_json::to_value(value)
        .map_err(|e| QueryError::Storage(StateError(format!("cannot encode answer: {e}"))))
}

/// The `limit` query parameter: absent means [`DEFAULT_QUERY_LIMIT`]; 1..=[`MAX_QUERY_LIMIT`].
pub fn query_limit(params: &BTreeMap<String, String>) -> Result<usize, QueryError> {
    let Some(raw) = params.get("limit") else {
        return Ok(DEFAULT_QUERY_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_QUERY_LIMIT).contains(&n) => Ok(n),
        _ => Err(QueryError::Invalid(format!(
            "limit must be an integer in 1..={MAX_QUERY_LIMIT}, got {raw:?}"
        ))),
    }
}

/// Refuses query parameters the query does not know, so that a typo is not silently ignored.
pub fn only_params(params: &BTreeMap<String, String>, known: &[&str]) -> Result<(), QueryError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(QueryError::Invalid(format!(
            "unknown parameter {k:?}; this query takes {known:?}"
        ))),
        None => Ok(()),
    }
}

/// Parses an address parameter.
pub fn parse_address(what: &str, s: &str) -> Result<Address, QueryError> {
    Address::parse(s).map_err(|e| QueryError::Invalid(format!("{what}: {e}")))
}

/// One page of a module's entries under `prefix` (a key relative to `module`), starting just
/// after the relative key `after` if given. Returns relative keys and whether more follow.
pub fn page(
    state: &dyn StateRead,
    module: &str,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Entries, bool), StateError> {
    let lower_rel = match after {
        // The smallest key greater than `after`: `after` followed by a zero byte.
        Some(a) => {
            let mut k = a.to_vec();
            k.push(0);
            k
        }
        None => prefix.to_vec(),
    };
    let full_prefix = module_key(module, prefix);
    let mut lower = module_key(module, &lower_rel);
    if lower < full_prefix {
        lower = full_prefix.clone();
    }
    let upper = prefix_end(&full_prefix);
    let mut entries = state.scan(&lower, &upper, false, limit.saturating_add(1))?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let strip = module.len() + 1;
    Ok((
        entries
            .into_iter()
            .map(|(k, v)| (k[strip..].to_vec(), v))
            .collect(),
        more,
    ))
}

/// What a public key is already used for, if anything.
///
/// Keys are never reused: a signature must be attributable to one identity for the whole life
/// of the ledger, so a key that was ever a member, a device, a validator, or is reserved by
/// a pending admission proposal or a pending or scheduled validator addition cannot be
/// registered again.
pub fn key_in_use(state: &dyn StateRead, key: &PublicKey) -> Result<Option<String>, StateError> {
    if let Some(m) = orgs::member(state, key)? {
        return Ok(Some(format!(
            "key {key} is (or was) a member key of organisation {:?}",
            m.org
        )));
    }
    if devices::device(state, &Address::of_device(key))?.is_some() {
        return Ok(Some(format!("key {key} is (or was) a device key")));
    }
    if let Some(set) = genesis::validator_set(state)?
        && set.validators.iter().any(|v| v.public_key == *key)
    {
        return Ok(Some(format!("key {key} is a validator key")));
    }
    if let Some(why) = genesis::validator_key_reserved(state, key)? {
        return Ok(Some(why));
    }
    if let Some(p) = orgs::pending_proposals(state)?
        .into_iter()
        .find(|p| p.admin_key == *key)
    {
        return Ok(Some(format!(
            "key {key} is the admin key of the pending admission of {:?}",
            p.org_id
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("ha-1"));
        assert!(is_valid_id(&"a".repeat(32)));
        assert!(!is_valid_id(&"a".repeat(33)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("Ha"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("a_b"));
    }

    #[test]
    fn limits() {
        let mut p = BTreeMap::new();
        assert_eq!(query_limit(&p).unwrap(), DEFAULT_QUERY_LIMIT);
        p.insert("limit".to_string(), "1000".to_string());
        assert_eq!(query_limit(&p).unwrap(), 1000);
        for bad in ["0", "1001", "x", "-1"] {
            p.insert("limit".to_string(), bad.to_string());
            assert!(query_limit(&p).is_err(), "{bad}");
        }
    }

    #[test]
    fn paging_walks_a_prefix_exactly_once() {
        let mut s = trustedge_execution::MemState::default();
        for i in 0u8..5 {
            s.map.insert(module_key("m", &[b'p', b'/', i]), vec![i]);
        }
        s.map.insert(module_key("m", b"q/0"), vec![9]);
        s.map.insert(module_key("mm", b"p/0"), vec![9]);
        let (first, more) = page(&s, "m", b"p/", None, 3).unwrap();
        assert!(more);
        assert_eq!(first.len(), 3);
        let last = first[2].0.clone();
        let (rest, more) = page(&s, "m", b"p/", Some(&last), 3).unwrap();
        assert!(!more);
        let got: Vec<u8> = first.iter().chain(&rest).map(|(_, v)| v[0]).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        // a cursor from outside the prefix cannot escape it
        let (none, _) = page(&s, "m", b"p/", Some(b"z"), 3).unwrap();
        assert!(none.is_empty());
        let (all, _) = page(&s, "m", b"p/", Some(b"a"), 10).unwrap();
        assert_eq!(all.len(), 5);
    }
}
