//! Read-only commands: `query`, `status`, `block`, `verify-proof`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};
use trustedge_chain::Proof;
use trustedge_contracts::Genesis;

use crate::remote;

/// Largest proof file read.
const MAX_PROOF_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Parses `key=value` pairs.
pub fn parse_params(params: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            anyhow::bail!("--param {p:?} is not of the form key=value");
        };
        if k.is_empty() {
            anyhow::bail!("--param {p:?} has an empty key");
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            anyhow::bail!("--param {k:?} is given twice");
        }
    }
    Ok(out)
}

/// `trustedge query`.
pub async fn query(node: &str, module: &str, path: &str, params: &[String]) -> anyhow::Result<()> {
    let params = parse_params(params)?;
    let client = remote::client(node)?;
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = remote::call(client.query(module, path, &pairs)).await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// `trustedge status`.
pub async fn status(node: &str, json: bool) -> anyhow::Result<()> {
    let client = remote::client(node)?;
    let s = remote::call(client.status()).await?;
    let v = serde_json::to_value(&s)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("chain:      {}", text(&v, "chain_id"));
        println!("height:     {}", text(&v, "height"));
        println!("block hash: {}", text(&v, "block_hash"));
        println!("state root: {}", text(&v, "state_root"));
        println!("time (ms):  {}", text(&v, "time_ms"));
        println!("mempool:    {} transactions", text(&v, "mempool_txs"));
        for (k, val) in v.as_object().into_iter().flatten() {
            if ![
                "chain_id",
                "height",
                "block_hash",
                "state_root",
                "time_ms",
                "mempool_txs",
            ]
            .contains(&k.as_str())
            {
                println!("{k}: {}", compact(val));
            }
        }
    }
    Ok(())
}

/// `trustedge block`.
pub async fn block(node: &str, height: u64, json: bool) -> anyhow::Result<()> {
    if height == 0 {
        anyhow::bail!("height 0 is the genesis state, not a block; blocks start at 1");
    }
    let client = remote::client(node)?;
    let b = remote::call(client.block(height)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(());
    }
    let h = &b.header;
    println!("height:      {}", b.height);
    println!("hash:        {}", b.hash);
    println!("time (ms):   {}", h.time_ms);
    println!("prev hash:   {}", h.prev_hash);
    println!("state root:  {}", b.state_root);
    println!("tx root:     {}", h.tx_root);
    println!("results:     {}", h.results_root);
    println!("proposer:    {}", h.proposer);
    println!(
        "certificate: {}",
        b.certificate
            .as_ref()
            .map_or("none".to_string(), |c| format!(
                "{} signature(s), round {}",
                c.signatures.len(),
                c.round
            ))
    );
    println!("txs:         {}", b.txs.len());
    for t in &b.txs {
        let outcome = match t.result.as_ref().map(|r| &r.outcome) {
            Some(trustedge_types::TxOutcome::Success) => "ok".to_string(),
            Some(trustedge_types::TxOutcome::Failed(f)) => format!("failed [{}]", f.code),
            None => "?".to_string(),
        };
        let call = t.call.as_ref().map_or("?".to_string(), compact);
        println!(
            "  {} {} nonce {} {outcome} {call}",
            t.hash, t.tx.body.payload.module, t.tx.body.nonce
        );
    }
    Ok(())
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The outcome of checking a proof file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofVerdict {
    /// Whether it verified.
    pub valid: bool,
    /// `tx` or `state`, if the file parsed.
    pub kind: Option<&'static str>,
    /// Why not, or what was checked.
    pub reason: String,
}

/// Checks a proof file; never fails, every problem is a verdict.
pub fn check_proof_file(file: &Path, genesis: Option<&Path>) -> ProofVerdict {
    let invalid = |kind, reason: String| ProofVerdict {
        valid: false,
        kind,
        reason,
    };
    let proof = match read_proof(file) {
        Ok(p) => p,
        Err(e) => return invalid(None, format!("{e:#}")),
    };
    let kind = Some(match proof {
        Proof::Tx(_) => "tx",
        Proof::State(_) => "state",
    });
    let validators = match genesis {
        None => None,
        Some(g) => match read_genesis(g).and_then(|g| {
            g.validator_set()
                .map_err(|e| anyhow::anyhow!("genesis validator set: {e}"))
        }) {
            Ok(set) => Some(set),
            Err(e) => return invalid(kind, format!("{e:#}")),
        },
    };
    match proof.verify(validators.as_ref()) {
        Ok(()) => ProofVerdict {
            valid: true,
            kind,
            reason: if validators.is_some() {
                "proof verifies and the block's commit certificate is signed by a quorum of the \
                 genesis validators"
                    .into()
            } else {
                "proof verifies against the block header (certificate not checked: no --genesis)"
                    .into()
            },
        },
        Err(e) => invalid(kind, e.to_string()),
    }
}

fn read_proof(file: &Path) -> anyhow::Result<Proof> {
    let bytes = read_bounded(file, MAX_PROOF_FILE_BYTES)?;
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", file.display()))?;
    // Accept the proof itself or an API answer that wraps it as `{"proof": …}`.
    let v = match v {
        Value::Object(ref m) if !m.contains_key("kind") && m.contains_key("proof") => {
            m.get("proof").cloned().unwrap_or(Value::Null)
        }
        other => other,
    };
    serde_json::from_value(v)
        .with_context(|| format!("{} is not a TrustEdge proof", file.display()))
}

/// Reads and validates a genesis file.
pub fn read_genesis(file: &Path) -> anyhow::Result<Genesis> {
    let bytes = read_bounded(
        file,
        trustedge_contracts::genesis::MAX_GENESIS_JSON_BYTES as u64,
    )?;
    Genesis::from_json(&bytes).with_context(|| format!("invalid genesis {}", file.display()))
}

fn read_bounded(file: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > limit {
        anyhow::bail!(
            "{} is {} bytes, over the limit of {limit}",
            file.display(),
            meta.len()
        );
    }
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

/// `trustedge verify-proof`: prints the verdict as JSON; exit code 0 only if valid.
pub fn verify_proof(file: &Path, genesis: Option<&Path>) -> ExitCode {
    let v = check_proof_file(file, genesis);
    let out = json!({ "valid": v.valid, "kind": v.kind, "reason": v.reason });
    println!(
        "{}",
        serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string())
    );
    if v.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
