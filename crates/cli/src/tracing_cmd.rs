//! `trustedge tracing`: the GAEN v1.2 key schedule of `trustedge-tracing` on the command
//! line, for checking values by hand against other implementations.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use trustedge_tracing::{EnIntervalNumber, Metadata, TemporaryExposureKey};

/// Contact-tracing (Exposure Notification) tools.
#[derive(Args, Debug)]
pub struct TracingArgs {
    #[command(subcommand)]
    command: TracingCommand,
}

#[derive(Subcommand, Debug)]
enum TracingCommand {
    /// Derive RPIK, AEMK and the RPI of one interval from a TEK (and the AEM of the given
    /// metadata); prints JSON {rpik, aemk, rpi[, aem]} in hex.
    Derive {
        /// Temporary Exposure Key, 16 bytes in hex.
        #[arg(long)]
        tek: String,
        /// ENIntervalNumber (Unix seconds / 600) of the RPI.
        #[arg(long)]
        interval: u32,
        /// Bluetooth metadata, 4 bytes in hex (version, TX power, 2 reserved).
        #[arg(long)]
        metadata: Option<String>,
    },
}

/// Runs a `tracing` subcommand.
pub fn run(args: &TracingArgs) -> anyhow::Result<()> {
    match &args.command {
        TracingCommand::Derive {
            tek,
            interval,
            metadata,
        } => derive(tek, *interval, metadata.as_deref()),
    }
}

fn derive(tek_hex: &str, interval: u32, metadata_hex: Option<&str>) -> anyhow::Result<()> {
    let tek_bytes = hex::decode(tek_hex).context("--tek is not hex")?;
    let tek = TemporaryExposureKey::from_slice(&tek_bytes)?;
    let rpik = tek.rpik()?;
    let aemk = tek.aemk()?;
    let rpi = rpik.rpi(EnIntervalNumber(interval));
    let mut out = serde_json::json!({
        "rpik": hex::encode(rpik.0),
        "aemk": hex::encode(aemk.0),
        "rpi": hex::encode(rpi.0),
    });
    if let Some(m) = metadata_hex {
        let metadata = Metadata::from_slice(&hex::decode(m).context("--metadata is not hex")?)?;
        out["aem"] = serde_json::Value::String(hex::encode(aemk.encrypt(&rpi, metadata).0));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
