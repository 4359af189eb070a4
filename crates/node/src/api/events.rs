//! `GET /v1/events`: query parameters to a store filter, and a page to JSON.

use trustedge_store::{EventCursor, EventFilter, EventPage};

use super::error::ApiError;
use super::types::{DEFAULT_EVENTS, EventsQuery, EventsResponse, MAX_EVENTS};

/// Longest module, kind, attribute key or value accepted in a filter.
const MAX_FILTER_FIELD_BYTES: usize = 256;

fn field(name: &str, v: &Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.is_empty() || s.len() > MAX_FILTER_FIELD_BYTES => Err(
            ApiError::invalid_query(format!("{name} must be 1..={MAX_FILTER_FIELD_BYTES} bytes")),
        ),
        other => Ok(other.clone()),
    }
}

/// The filter, cursor and page size a query asks for.
pub fn parse_query(q: &EventsQuery) -> Result<(EventFilter, Option<EventCursor>, usize), ApiError> {
    let attribute = match &q.attr {
        None => None,
        Some(a) => match a.split_once(':') {
            Some((k, v))
                if !k.is_empty()
                    && k.len() <= MAX_FILTER_FIELD_BYTES
                    && v.len() <= MAX_FILTER_FIELD_BYTES =>
            {
                Some((k.to_string(), v.to_string()))
            }
            _ => {
                return Err(ApiError::invalid_query(format!(
                    "attr {a:?} is not key:value"
                )));
            }
        },
    };
    if let (Some(from), Some(to)) = (q.from_height, q.to_height)
        && from > to
    {
        return Err(ApiError::invalid_query(format!(
            "from_height ({from}) is above to_height ({to})"
        )));
    }
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::invalid_query(format!(
            "limit must be in 1..={MAX_EVENTS}, got {limit}"
        )));
    }
    let cursor = q
        .cursor
        .as_deref()
        .map(str::parse::<EventCursor>)
        .transpose()
        .map_err(|e| ApiError::invalid_query(e.to_string()))?;
    let filter = EventFilter {
        module: field("module", &q.module)?,
        kind: field("kind", &q.kind)?,
        attribute,
        from_height: q.from_height,
        to_height: q.to_height,
    };
    Ok((filter, cursor, limit))
}

/// The JSON page.
pub fn to_response(page: EventPage) -> Result<EventsResponse, ApiError> {
    Ok(EventsResponse {
        events: page.events,
        next: page.next.map(|c| c.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_and_refuses_bad_ones() {
        let q = EventsQuery {
            module: Some("devices".into()),
            attr: Some("org_id:edge-op".into()),
            cursor: Some("3-0-1".into()),
            ..EventsQuery::default()
        };
        let (f, c, limit) = parse_query(&q).unwrap();
        assert_eq!(f.attribute, Some(("org_id".into(), "edge-op".into())));
        assert_eq!(c.unwrap().height, 3);
        assert_eq!(limit, DEFAULT_EVENTS);
        for bad in [
            EventsQuery {
                attr: Some("novalue".into()),
                ..EventsQuery::default()
            },
            EventsQuery {
                limit: Some(0),
                ..EventsQuery::default()
            },
            EventsQuery {
                limit: Some(1001),
                ..EventsQuery::default()
            },
            EventsQuery {
                cursor: Some("x".into()),
                ..EventsQuery::default()
            },
            EventsQuery {
                from_height: Some(5),
                to_height: Some(4),
                ..EventsQuery::default()
            },
            EventsQuery {
                module: Some(String::new()),
                ..EventsQuery::default()
            },
        ] {
            assert_eq!(
                parse_query(&bad).unwrap_err().code(),
                "invalid_query",
                "{bad:?}"
            );
        }
    }
}
