//! `trustedge tracing chains`: the contact chains of a confirmed case, from a node with
//! `[contacts]` (a cloud node; `GET /v1/contacts/chains`).

use clap::{Args, ValueEnum};
use trustedge_types::Hash;

use crate::remote;

/// Which way in time chains run from the case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChainDirection {
    /// Whom the case may have infected, onward.
    Forward,
    /// Who may have infected the case.
    Backward,
    /// Both.
    Any,
}

impl ChainDirection {
    fn as_str(self) -> &'static str {
        match self {
            ChainDirection::Forward => "forward",
            ChainDirection::Backward => "backward",
            ChainDirection::Any => "any",
        }
    }
}

/// Arguments of `trustedge tracing chains`.
#[derive(Args, Debug)]
pub struct ChainsArgs {
    /// API URL of a node with `[contacts]` (a cloud node).
    #[arg(long)]
    pub node: String,
    /// The confirmed case: its diagnosis upload id (64 hex digits).
    #[arg(long)]
    pub case: String,
    /// Most hops in a chain (1 ..= 16).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub hops: u8,
    /// Which way in time chains run.
    #[arg(long, value_enum, default_value_t = ChainDirection::Forward)]
    pub direction: ChainDirection,
    /// Ignore time order between hops (fewest-hop chains).
    #[arg(long)]
    pub any_order: bool,
    /// Most chains returned (1 ..= 10000).
    #[arg(long, default_value_t = 100)]
    pub max_results: usize,
    /// Print the node's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// Runs `trustedge tracing chains`.
pub async fn run(args: &ChainsArgs) -> anyhow::Result<()> {
    let case = Hash::from_hex(args.case.trim())
        .map_err(|e| anyhow::anyhow!("--case must be a diagnosis upload id (64 hex): {e}"))?;
    let client = remote::client(&args.node)?;
    let r = remote::call(client.contact_chains(
        &case,
        Some(args.hops),
        Some(args.direction.as_str()),
        Some(!args.any_order),
        Some(args.max_results),
    ))
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "case {}: {} chain(s), up to {} hop(s), {}{}",
        short(&r.case),
        r.chains.len(),
        r.hops,
        r.direction,
        if r.time_respecting {
            ""
        } else {
            " (any time order)"
        }
    );
    for c in &r.chains {
        println!(
            "→ {} [{}] {} hop(s), weakest score {}",
            short(&c.target),
            c.direction,
            c.hops.len(),
            c.score
        );
        for h in &c.hops {
            println!(
                "    {} → {}  day {}  score {}",
                short(&h.from),
                short(&h.to),
                h.day,
                h.score
            );
        }
    }
    if r.truncated {
        println!("(truncated: raise --max-results or narrow the query)");
    }
    Ok(())
}

/// The first 16 hex digits of an id.
fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}
