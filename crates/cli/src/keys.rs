//! Key files: `{public_key, address, secret_key}` JSON, as the node reads them.

use std::path::Path;

use trustedge_types::{Address, Keypair};

/// Generates a fresh key from the operating system's random source.
pub fn generate() -> Keypair {
    Keypair::generate(&mut rand_core::OsRng)
}

/// Reads a key file.
pub fn load(path: &Path) -> anyhow::Result<Keypair> {
    Ok(trustedge_node::config::load_key(path)?)
}

/// Writes a key file (refusing to overwrite an existing one).
pub fn save(path: &Path, key: &Keypair) -> anyhow::Result<()> {
    Ok(trustedge_node::config::save_key(path, key)?)
}

/// `trustedge keygen`.
pub fn keygen(out: Option<&Path>) -> anyhow::Result<()> {
    let key = generate();
    match out {
        Some(path) => {
            save(path, &key)?;
            println!("public key:     {}", key.public().to_hex());
            println!("address:        {}", Address::of_member(&key.public()));
            println!("device address: {}", Address::of_device(&key.public()));
            println!("written to {}", path.display());
        }
        None => {
            let file = trustedge_node::config::KeyFile::of(&key);
            println!("{}", serde_json::to_string_pretty(&file)?);
        }
    }
    Ok(())
}
