//! `trustedge tracing`: the GAEN v1.2 key schedule of `trustedge-tracing` on the command
//! line, for checking values by hand against other implementations; and GAEN key export
//! files (`trustedge-gaen-export`): inspect, build, and a signing key pair to build with.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use trustedge_gaen_export as gaen;
use trustedge_tracing::{DiagnosisKey, EnIntervalNumber, Metadata, TemporaryExposureKey};

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
    /// Score the BLE distance service (learned model vs GAEN attenuation threshold vs
    /// path-loss inversion) with NIST TC4TL's nDCF at 1.8 m on held-out device models.
    DistanceEval(crate::distance_cmd::DistanceEvalArgs),
    /// Contact tracing end to end on loopback: a validator and a tracing edge in this
    /// process, N simulated phones over MQTT playing a seeded day, a confirmed case relayed;
    /// prints precision/recall of the notices, their latency and pure-GAEN agreement.
    Simulate(crate::tracing_sim::SimulateArgs),
    /// Close-contact precision / recall / nDCF of the real path (device filter, edge scorer,
    /// rule) on a simulated city against its ground truth, by true distance and carry.
    CityEval(crate::contact_eval::CityEvalArgs),
    /// Contact chains of a confirmed case (its diagnosis upload id) through other confirmed
    /// cases, from a cloud node with `[contacts]`: per hop the two cases, day and score.
    Chains(crate::chains_cmd::ChainsArgs),
    /// GAEN key export files (a zip of export.bin + export.sig): inspect, build, keygen.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ExportCommand {
    /// Read an export zip (or a raw export.bin) and check its signature. With --json, prints
    /// one JSON object: signature_valid (true/false for a zip; null for a raw export.bin or
    /// without --public-key, with signature_reason saying why), the header fields and the
    /// keys. A tampered file reports signature_valid false; the exit status is 0 whenever
    /// the file could be read.
    Inspect {
        /// The export zip, or a raw export.bin.
        file: PathBuf,
        /// PEM public key (SubjectPublicKeyInfo) of the health authority that signed it.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Build a signed export zip from a JSON array of diagnosis keys ({key_data (hex),
    /// rolling_start_interval_number, rolling_period, report_type, days_since_onset}). When
    /// there are more keys than --max-keys-per-file, writes OUT's stem + "-N-of-M.zip" files.
    Build {
        /// JSON file: an array of diagnosis keys.
        #[arg(long)]
        keys: PathBuf,
        /// PEM P-256 signing key (PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY").
        #[arg(long)]
        signing_key: PathBuf,
        /// The zip to write.
        #[arg(long)]
        out: PathBuf,
        /// Region of the keys (e.g. a country code or MCC).
        #[arg(long, default_value = "TE")]
        region: String,
        /// Start of the keys' window, Unix seconds (default: the earliest key's start).
        #[arg(long)]
        start_timestamp: Option<u64>,
        /// End of the keys' window, Unix seconds (default: the latest key's end).
        #[arg(long)]
        end_timestamp: Option<u64>,
        /// verification_key_id of the signature info ([a-zA-Z0-9_]; for Apple: the MCC).
        #[arg(long, default_value = "000")]
        key_id: String,
        /// verification_key_version of the signature info ([a-zA-Z0-9_]).
        #[arg(long, default_value = "v1")]
        key_version: String,
        /// Keys per file before the day is split into batches.
        #[arg(long, default_value_t = gaen::MAX_KEYS_PER_FILE)]
        max_keys_per_file: usize,
    },
    /// Write a new P-256 key pair for signing exports: DIR/export-signing-key.pem (PKCS#8,
    /// owner-only) and DIR/export-public-key.pem (for the apps). Never overwrites.
    Keygen {
        /// Directory to write the two PEM files into (created if missing).
        #[arg(long)]
        out: PathBuf,
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
        TracingCommand::DistanceEval(args) => crate::distance_cmd::run(args),
        TracingCommand::CityEval(args) => crate::contact_eval::run(args),
        // Async inside the CLI's multi-thread runtime: this thread blocks, others run it.
        TracingCommand::Simulate(args) => tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(crate::tracing_sim::run(args))
        }),
        TracingCommand::Chains(args) => tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(crate::chains_cmd::run(args))
        }),
        TracingCommand::Export { command } => match command {
            ExportCommand::Inspect {
                file,
                public_key,
                json,
            } => inspect(file, public_key.as_deref(), *json),
            ExportCommand::Build {
                keys,
                signing_key,
                out,
                region,
                start_timestamp,
                end_timestamp,
                key_id,
                key_version,
                max_keys_per_file,
            } => build(&BuildArgs {
                keys,
                signing_key,
                out,
                region,
                start_timestamp: *start_timestamp,
                end_timestamp: *end_timestamp,
                key_id,
                key_version,
                max_keys_per_file: *max_keys_per_file,
            }),
            ExportCommand::Keygen { out } => keygen(out),
        },
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

/// Largest file `inspect` reads: the zip limit of `trustedge-gaen-export`.
const MAX_INPUT_BYTES: u64 = gaen::MAX_ZIP_BYTES as u64;

fn read_bounded(path: &Path, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= max_bytes,
        "{} is larger than {max_bytes} bytes",
        path.display()
    );
    Ok(bytes)
}

fn inspect(file: &Path, public_key: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let bytes = read_bounded(file, MAX_INPUT_BYTES)?;
    let is_raw_bin = bytes.starts_with(gaen::EXPORT_HEADER);
    let parsed = if is_raw_bin {
        gaen::parse_export_bin(&bytes)
    } else {
        gaen::parse_export_zip(&bytes)
    }
    .with_context(|| format!("{} is not a readable GAEN export", file.display()))?;
    let key = public_key
        .map(|path| {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            gaen::parse_public_key_pem(&pem).with_context(|| path.display().to_string())
        })
        .transpose()?;
    let verdict = key.as_ref().and_then(|k| parsed.verify(k));
    let reason = match (&key, &parsed.signature_list, &verdict) {
        (_, None, _) if is_raw_bin => {
            Some("a raw export.bin carries no signature (export.sig is in the zip)")
        }
        (_, None, _) => Some("the zip has no export.sig"),
        (None, Some(_), _) => Some("no --public-key given"),
        (Some(_), Some(_), Some(v)) if !v.valid => {
            Some("no signature in export.sig verifies over export.bin with this public key")
        }
        _ => None,
    };
    let matched = verdict.as_ref().and_then(|v| v.matched.as_ref()).map(|m| {
        let info = m.signature_info.clone().unwrap_or_default();
        serde_json::json!({
            "index": m.index,
            "verification_key_id": info.verification_key_id,
            "verification_key_version": info.verification_key_version,
            "signature_algorithm": info.signature_algorithm,
            "batch_num": m.batch_num,
            "batch_size": m.batch_size,
        })
    });
    let infos: Vec<_> = parsed
        .signature_infos
        .iter()
        .map(|i| {
            serde_json::json!({
                "verification_key_id": i.verification_key_id,
                "verification_key_version": i.verification_key_version,
                "signature_algorithm": i.signature_algorithm,
            })
        })
        .collect();
    let h = &parsed.header;
    let out = serde_json::json!({
        "file": file.display().to_string(),
        "format": if is_raw_bin { "export.bin" } else { "zip" },
        "signature_valid": verdict.as_ref().map(|v| v.valid),
        "signature_reason": reason,
        "matched_signature": matched,
        "region": h.region,
        "start_timestamp": h.start_timestamp,
        "end_timestamp": h.end_timestamp,
        "batch_num": h.batch_num,
        "batch_size": h.batch_size,
        "signature_infos": infos,
        "key_count": parsed.keys.len(),
        "revised_key_count": parsed.revised_keys.len(),
        "keys": parsed.keys,
        "revised_keys": parsed.revised_keys,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let valid = match out["signature_valid"].as_bool() {
            Some(true) => "valid".to_string(),
            Some(false) => format!("INVALID ({})", reason.unwrap_or_default()),
            None => format!("not checked ({})", reason.unwrap_or_default()),
        };
        let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        println!(
            "{}: {} keys, {} revised",
            file.display(),
            parsed.keys.len(),
            parsed.revised_keys.len()
        );
        println!(
            "region {}, window {}..{} (Unix s), batch {} of {}",
            show(h.region.clone()),
            show(h.start_timestamp.map(|t| t.to_string())),
            show(h.end_timestamp.map(|t| t.to_string())),
            show(h.batch_num.map(|n| n.to_string())),
            show(h.batch_size.map(|n| n.to_string())),
        );
        println!("signature: {valid}");
    }
    Ok(())
}

struct BuildArgs<'a> {
    keys: &'a Path,
    signing_key: &'a Path,
    out: &'a Path,
    region: &'a str,
    start_timestamp: Option<u64>,
    end_timestamp: Option<u64>,
    key_id: &'a str,
    key_version: &'a str,
    max_keys_per_file: usize,
}

fn build(args: &BuildArgs<'_>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(args.keys)
        .with_context(|| format!("cannot read {}", args.keys.display()))?;
    let keys: Vec<DiagnosisKey> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a JSON array of diagnosis keys",
            args.keys.display()
        )
    })?;
    let pem = std::fs::read_to_string(args.signing_key)
        .with_context(|| format!("cannot read {}", args.signing_key.display()))?;
    let signing_key = gaen::parse_signing_key_pem(&pem)
        .with_context(|| args.signing_key.display().to_string())?;
    let interval_s = trustedge_tracing::INTERVAL_LENGTH_S;
    let start = args.start_timestamp.unwrap_or_else(|| {
        keys.iter()
            .map(|k| u64::from(k.rolling_start_interval_number) * interval_s)
            .min()
            .unwrap_or(0)
    });
    let end = args.end_timestamp.unwrap_or_else(|| {
        keys.iter()
            .map(|k| u64::from(k.end_interval_number()) * interval_s)
            .max()
            .unwrap_or(start)
    });
    let meta = gaen::ExportMeta::new(start, end, args.region, args.key_id, args.key_version);
    let files = gaen::build_export_batches(&keys, &meta, &signing_key, args.max_keys_per_file)?;
    let paths: Vec<PathBuf> = if files.len() == 1 {
        vec![args.out.to_path_buf()]
    } else {
        let stem = args.out.file_stem().unwrap_or_default().to_string_lossy();
        (1..=files.len())
            .map(|n| {
                args.out
                    .with_file_name(format!("{stem}-{n}-of-{}.zip", files.len()))
            })
            .collect()
    };
    for (path, bytes) in paths.iter().zip(&files) {
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let out = serde_json::json!({
        "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "keys": keys.len(),
        "start_timestamp": start,
        "end_timestamp": end,
        "region": args.region,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn keygen(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let private_path = dir.join("export-signing-key.pem");
    let public_path = dir.join("export-public-key.pem");
    for path in [&private_path, &public_path] {
        anyhow::ensure!(
            !path.exists(),
            "{} exists; not overwriting it",
            path.display()
        );
    }
    let signing_key = gaen::p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let private_pem = gaen::signing_key_to_pem(&signing_key)?;
    let public_pem = gaen::public_key_to_pem(signing_key.verifying_key())?;
    write_private(&private_path, private_pem.as_bytes())?;
    std::fs::write(&public_path, public_pem)
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    let out = serde_json::json!({
        "signing_key": private_path.display().to_string(),
        "public_key": public_path.display().to_string(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Creates a file readable by its owner only (the private key).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
