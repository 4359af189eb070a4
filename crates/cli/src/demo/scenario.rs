//! The scripted part: admission of a new organisation by health-authority approvals, then
//! transactions that must fail, each with its error code.

use super::*;

pub(super) async fn scenario(
    shared: Arc<Shared>,
    net: Network,
    nodes: Vec<DemoNode>,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = scenario_steps(&shared, &net, &nodes, &mut stop).await {
        if !*stop.borrow() {
            shared.problem(format!("scenario stopped: {e:#}"));
        }
        return;
    }
    shared.stats().scenario_done = true;
}

/// Waits until the node behind `client` has committed `height`: a follower admits
/// transactions against its own state, so a signer admitted at `height` is unknown to a
/// follower that has not reached it yet.
pub(super) async fn reach(client: &Client, height: u64) -> Result<(), ApiFailure> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = remote::head(client).await?;
        if head.height >= height {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ApiFailure {
                code: "timeout".into(),
                message: format!("{} did not reach height {height} in 30 s", client.url()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits through `client` once it has reached `after` and waits for the commit; Err if
/// refused or not committed.
pub(super) async fn commit(
    shared: &Shared,
    client: &Client,
    after: &mut u64,
    signer: &mut Signer,
    payload: Payload,
) -> Result<trustedge_chain::TxInclusionProof, ApiFailure> {
    reach(client, *after).await?;
    let r = commit_now(shared, client, signer, payload).await;
    if let Ok(p) = &r {
        *after = (*after).max(p.header.height);
    }
    r
}

pub(super) async fn commit_now(
    shared: &Shared,
    client: &Client,
    signer: &mut Signer,
    payload: Payload,
) -> Result<trustedge_chain::TxInclusionProof, ApiFailure> {
    let head = remote::head(client).await?;
    let tx = signer.sign(&head, payload);
    let id = remote::call(client.submit_tx(&tx)).await?;
    shared.stats().submitted += 1;
    remote::wait_committed(client, &id, Duration::from_secs(30)).await
}

/// Expects a committed transaction to succeed.
pub(super) fn expect_success(
    shared: &Shared,
    what: &str,
    p: &trustedge_chain::TxInclusionProof,
) -> bool {
    match remote::outcome_failure(p) {
        None => true,
        Some(f) => {
            shared.problem(format!("{what} failed [{}]: {}", f.code, f.message));
            false
        }
    }
}

/// Expects a committed transaction to have failed with `code`.
pub(super) fn expect_failure(
    shared: &Shared,
    what: &str,
    code: &str,
    r: Result<trustedge_chain::TxInclusionProof, ApiFailure>,
) {
    match r.map(|p| remote::outcome_failure(&p)) {
        Ok(Some(f)) if f.code == code => {
            *shared
                .stats()
                .intended_failures
                .entry(code.to_string())
                .or_default() += 1;
            shared.on_purpose(format!(
                "{what} -> error [{}]: {}",
                f.code,
                clip(&f.message, 90)
            ));
        }
        Ok(Some(f)) => shared.problem(format!(
            "{what}: expected [{code}], got [{}] {}",
            f.code, f.message
        )),
        Ok(None) => shared.problem(format!("{what}: expected [{code}], but it succeeded")),
        Err(e) => shared.problem(format!("{what}: expected [{code}] in a block, got {e}")),
    }
}

/// Expects the API to refuse a transaction with `code`.
pub(super) async fn expect_refusal(
    shared: &Shared,
    client: &Client,
    what: &str,
    code: &str,
    tx: &SignedTx,
) {
    match remote::call(client.submit_tx(tx)).await {
        Err(e) if e.code == code => {
            shared.refused(code, true);
            shared.on_purpose(format!(
                "{what} -> error [{}]: {}",
                e.code,
                clip(&e.message, 90)
            ));
        }
        Err(e) => {
            shared.refused(&e.code, false);
            shared.problem(format!("{what}: expected [{code}], got {e}"));
        }
        Ok(id) => shared.problem(format!(
            "{what}: expected [{code}], but it was accepted as {id}"
        )),
    }
}

pub(super) async fn scenario_steps(
    shared: &Shared,
    net: &Network,
    nodes: &[DemoNode],
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let by_role = |r: NodeRole| {
        nodes
            .iter()
            .find(|n| n.role == r)
            .or(nodes.first())
            .map(|n| n.client.clone())
    };
    let validator = by_role(NodeRole::Validator).context("no nodes")?;
    let edge = by_role(NodeRole::Edge).context("no nodes")?;
    let cloud = by_role(NodeRole::Cloud).context("no nodes")?;
    if wait_or_stop(stop, Duration::from_secs(1)).await {
        return Ok(());
    }

    // 1. Admission of a new organisation by health-authority approvals.
    let has = net.health_authorities();
    let mut ha_signers = Vec::new();
    for id in &has {
        if let Some(k) = net.admin(id) {
            ha_signers.push(Signer::new(k.clone(), &validator).await?);
        }
    }
    if ha_signers.is_empty() {
        anyhow::bail!("no health-authority admin keys");
    }
    let required = net.genesis.policy.admission_approvals as usize;
    let mut org_id = String::new();
    for n in 2..100 {
        let id = format!("hospital-{n}");
        if remote::call(validator.query("orgs", &format!("org/{id}"), &[]))
            .await
            .is_err()
        {
            org_id = id;
            break;
        }
    }
    if org_id.is_empty() {
        anyhow::bail!("no free organisation id hospital-2..hospital-99");
    }
    let new_admin = crate::keys::generate();
    // Height of the last commit the next step depends on.
    let mut after = 0u64;
    let propose = OrgsCall::ProposeAdmission {
        org_id: org_id.clone(),
        name: "Northside Community Hospital".into(),
        kind: OrgKind::Hospital,
        admin_key: new_admin.public(),
    };
    let p = commit(
        shared,
        &validator,
        &mut after,
        &mut ha_signers[0],
        Payload::new("orgs", &propose),
    )
    .await?;
    if !expect_success(shared, "admission proposal", &p) {
        return Ok(());
    }
    for (i, s) in ha_signers
        .iter_mut()
        .enumerate()
        .skip(1)
        .take(required.saturating_sub(1))
    {
        // Approvals go through the cloud node, which forwards them to the validator.
        let via = if i % 2 == 1 { &cloud } else { &edge };
        let approve = OrgsCall::ApproveAdmission {
            org_id: org_id.clone(),
        };
        let p = commit(shared, via, &mut after, s, Payload::new("orgs", &approve)).await?;
        if !expect_success(shared, "admission approval", &p) {
            return Ok(());
        }
    }
    if remote::call(validator.query("orgs", &format!("org/{org_id}"), &[]))
        .await
        .is_ok()
    {
        shared
            .stats()
            .admitted
            .push(format!("{org_id} ({required} of {} approvals)", has.len()));
    } else {
        shared.problem(format!(
            "{org_id} is not an organisation after {required} approvals"
        ));
        return Ok(());
    }

    // 2. The new organisation registers a device through the edge node.
    let mut admin = Signer::new(new_admin, &edge).await?;
    let device = crate::keys::generate();
    let register = DevicesCall::Register {
        key: device.public(),
        class: DeviceClass::Wearable,
        model: model_of(DeviceClass::Wearable).into(),
        attributes: vec![DeviceAttribute {
            key: "firmware".into(),
            value: "2.0.0".into(),
        }],
    };
    let p = commit(
        shared,
        &edge,
        &mut after,
        &mut admin,
        Payload::new("devices", &register),
    )
    .await?;
    expect_success(shared, "first device of the new organisation", &p);
    if wait_or_stop(stop, Duration::from_millis(500)).await {
        return Ok(());
    }

    // 3. Mistakes that must fail, each with its code.
    let personal = DevicesCall::Register {
        key: crate::keys::generate().public(),
        class: DeviceClass::Wearable,
        model: model_of(DeviceClass::Wearable).into(),
        attributes: vec![DeviceAttribute {
            key: "owner".into(),
            value: "alice".into(),
        }],
    };
    let r = commit(
        shared,
        &edge,
        &mut after,
        &mut admin,
        Payload::new("devices", &personal),
    )
    .await;
    expect_failure(
        shared,
        "a device attribute naming its owner (personal data)",
        "invalid_argument",
        r,
    );

    if let Some(k) = net.admin(init::EDGE_OPERATOR_ORG) {
        let mut op = Signer::new(k.clone(), &validator).await?;
        let overreach = OrgsCall::ProposeAdmission {
            org_id: "rogue-clinic".into(),
            name: "Rogue Clinic".into(),
            kind: OrgKind::Clinic,
            admin_key: crate::keys::generate().public(),
        };
        let r = commit(
            shared,
            &validator,
            &mut after,
            &mut op,
            Payload::new("orgs", &overreach),
        )
        .await;
        expect_failure(
            shared,
            "an edge operator admitting an organisation",
            "access_denied",
            r,
        );
    }

    for c in [&validator, &edge, &cloud] {
        reach(c, after).await?;
    }
    let head = remote::head(&validator).await?;
    let ha = &mut ha_signers[0];
    let used = ha.next_nonce.saturating_sub(1);
    let replay = remote::sign(
        &ha.key,
        &head,
        used,
        Payload::new(
            "orgs",
            &OrgsCall::ApproveAdmission {
                org_id: org_id.clone(),
            },
        ),
    );
    let what = format!("a transaction reusing nonce {used}");
    expect_refusal(shared, &cloud, &what, "replayed_nonce", &replay).await;

    let mut forged = ha.sign(
        &head,
        Payload::new(
            "orgs",
            &OrgsCall::SuspendOrg {
                org_id: "hospital-1".into(),
            },
        ),
    );
    forged.signature.0[0] ^= 0x55;
    expect_refusal(
        shared,
        &validator,
        "a transaction with a forged signature",
        "bad_signature",
        &forged,
    )
    .await;
    // The forged transaction never reached a block: give its nonce back.
    ha.next_nonce -= 1;

    let stranger = crate::keys::generate();
    let intruder = remote::sign(
        &stranger,
        &head,
        1,
        Payload::new(
            "devices",
            &DevicesCall::Register {
                key: crate::keys::generate().public(),
                class: DeviceClass::Phone,
                model: "Unknown".into(),
                attributes: Vec::new(),
            },
        ),
    );
    expect_refusal(
        shared,
        &edge,
        "a key no organisation knows",
        "unknown_signer",
        &intruder,
    )
    .await;
    Ok(())
}
