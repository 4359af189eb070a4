//! Random bodies posted to `POST /v1/txs` never get a server error.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::*;

/// What to post: content type and body.
fn bodies() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let (valid, _) = register_device(&keys().operator, 1, 130);
    let valid = valid.to_bytes();
    let json_value = proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| {
        serde_json::to_vec(&serde_json::json!({
            "tx": hex::encode(&b), "body": b, "signature": "00",
        }))
        .unwrap_or_default()
    });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512)
            .prop_map(|b| ("application/octet-stream", b)),
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| ("application/json", b)),
        ".{0,200}".prop_map(|s| ("application/json", s.into_bytes())),
        "[0-9a-f]{0,400}".prop_map(|s| (
            "application/json",
            format!("{{\"tx\":\"{s}\"}}").into_bytes()
        )),
        json_value.prop_map(|b| ("application/json", b)),
        // A valid transaction with one byte changed.
        (0..valid.len(), any::<u8>()).prop_map(move |(i, x)| {
            let mut b = valid.clone();
            b[i] ^= x | 1;
            ("application/octet-stream", b)
        }),
        (
            "[a-z/+-]{0,30}",
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(_, b)| ("text/plain", b)),
    ]
}

#[test]
fn random_submissions_never_get_a_server_error() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = rt.block_on(sealer());
    let url = n.url();
    let http = reqwest::Client::new();
    let mut runner = TestRunner::new(Config::with_cases(300));
    let result = runner.run(&bodies(), |(ctype, body)| {
        let (status, text) = rt.block_on(async {
            let r = http
                .post(format!("{url}/v1/txs"))
                .header("content-type", ctype)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
        prop_assert!(status < 500, "{status} {text} for {ctype} {body:?}");
        let e: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert!(
            status == 202 || e["code"].is_string(),
            "{status} without a code: {text}"
        );
        Ok(())
    });
    rt.block_on(n.stop());
    result.unwrap();
}
