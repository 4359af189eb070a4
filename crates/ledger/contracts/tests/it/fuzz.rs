//! Arbitrary bytes as a module's call never panic: admission refuses them as malformed, or
//! they decode and execution ends in a recorded outcome.

use proptest::prelude::*;
use trustedge_contracts::MODULES;
use trustedge_execution::{AdmissionError, Role};
use trustedge_types::Payload;

use crate::harness::*;

fn check(module: &str, call: Vec<u8>) -> Result<(), TestCaseError> {
    let mut net = Net::new(&matrix_genesis());
    // a signer that passes most access rules, so decoded calls reach the module's logic
    let signer = member("health-authority", Role::Admin);
    let payload = Payload {
        module: module.into(),
        call,
    };
    match net.admit(&signer, payload.clone()) {
        Ok(_) => {
            let tx = net.tx(&signer, payload);
            let out = net.block(std::slice::from_ref(&tx));
            prop_assert!(out.is_ok(), "{module}: {out:?}");
        }
        Err(AdmissionError::MalformedCall { module: m, .. }) => prop_assert_eq!(m, module),
        Err(e) => prop_assert!(false, "{module}: unexpected admission error {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_call_bytes_never_panic(
        module in proptest::sample::select(MODULES),
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        check(module, bytes)?;
    }

    /// Starting with a valid variant index gets past the first byte far more often.
    #[test]
    fn arbitrary_call_bodies_never_panic(
        module in proptest::sample::select(MODULES),
        variant in 0u8..8,
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut call = vec![variant];
        call.extend(bytes);
        check(module, call)?;
    }
}

/// Truncated, unknown-variant and trailing-byte genesis calls are refused at admission.
#[test]
fn genesis_module_refuses_malformed_calls() {
    let valid =
        borsh::to_vec(&trustedge_contracts::GenesisCall::ApproveValidatorChange { proposal_id: 1 })
            .unwrap();
    let mut trailing = valid.clone();
    trailing.push(0);
    for call in [vec![], vec![0], vec![2], valid[..4].to_vec(), trailing] {
        let mut net = Net::new(&matrix_genesis());
        let e = net
            .admit(
                &member("health-authority", Role::Admin),
                Payload {
                    module: "genesis".into(),
                    call: call.clone(),
                },
            )
            .unwrap_err();
        assert_eq!(e.code(), "malformed_call", "{call:?}");
    }
}
