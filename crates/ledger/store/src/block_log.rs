//! The block log: an append-only file of committed blocks with their certificates, synced on
//! every append, that makes a block durable without a durable store commit.
//!
//! A durable redb commit writes every page the block dirtied and syncs the file twice (quick
//! repair implies two-phase commit). Random-keyed tables (latest state, tree values,
//! transaction index, event attributes) dirty a page per key once the store is large, so that
//! write is most of a commit's cost and grows with the state. The ledger therefore commits
//! blocks to the store with [`crate::Store::commit_block_deferred`] (visible at once, durable
//! at the next [`crate::Store::checkpoint`]) and makes each one durable here first: one
//! sequential append and one `fdatasync`. After a crash the store reopens at its last
//! checkpoint and the caller (which can execute blocks; this crate cannot) replays the
//! blocks logged above it. After a checkpoint the log is emptied.
//!
//! # Format
//!
//! An 8-byte magic, then records, each:
//! `height (u64 BE) ‖ length (u32 BE) ‖ payload ‖ SHA-256(domain ‖ height ‖ length ‖ payload)`,
//! where the payload is the Borsh encoding of `(Block, CommitCertificate)`. Heights are
//! consecutive. A record that is cut short or whose checksum fails ends the log: an append
//! interrupted by a crash leaves exactly that, and the block it held was not yet reported
//! committed. [`BlockLog::open`] truncates the file there.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use trustedge_types::{Block, CommitCertificate, Height, decode, encode};

use crate::StoreError;

/// First bytes of a block log file.
const MAGIC: &[u8; 8] = b"TEBLOG01";
/// Bytes of a record around its payload: height, length and checksum.
const RECORD_OVERHEAD: u64 = 8 + 4 + 32;
/// Largest payload read back. A block is at most `trustedge_types::MAX_BLOCK_BYTES`; this
/// only stops a damaged length from asking for an absurd allocation.
const MAX_PAYLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// Domain tag of the record checksum.
const CHECKSUM_DOMAIN: &[u8] = b"trustedge/store/block-log/v1";

/// A block read back from the log with its commit certificate.
#[derive(Clone, Debug)]
pub struct LoggedBlock {
    /// The committed block.
    pub block: Block,
    /// Its commit certificate.
    pub certificate: CommitCertificate,
}

/// An open block log. Not shared: the ledger holds it behind its commit lock.
#[derive(Debug)]
pub struct BlockLog {
    file: File,
    path: PathBuf,
    /// Length of the intact part of the file (where the next record goes).
    len: u64,
    /// Height of the last record, if any.
    last: Option<Height>,
}

fn io_err(what: &'static str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("block log {}: {what}: {e}", path.display()))
}

fn checksum(height: Height, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHECKSUM_DOMAIN);
    h.update(height.to_be_bytes());
    h.update((payload.len() as u64).to_be_bytes());
    h.update(payload);
    h.finalize().into()
}

impl BlockLog {
    /// Opens (creating if missing) the log at `path` and returns it with the blocks it holds,
    /// in height order. A torn last record is cut off (and logged); a file that does not start
    /// with the magic, or whose records skip a height, is refused.
    pub fn open(path: &Path) -> Result<(BlockLog, Vec<LoggedBlock>), StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("open", path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| io_err("metadata", path, e))?
            .len();
        let mut log = BlockLog {
            file,
            path: path.to_path_buf(),
            len: 0,
            last: None,
        };
        if file_len < MAGIC.len() as u64 {
            // New, or a crash cut the magic itself short: nothing was ever logged.
            log.reset()?;
            return Ok((log, Vec::new()));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(file_len).unwrap_or(0));
        log.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| log.file.read_to_end(&mut bytes))
            .map_err(|e| io_err("read", path, e))?;
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(StoreError::corrupt(
                "block log",
                format!("{} does not start with the block log magic", path.display()),
            ));
        }
        let (blocks, intact) = parse_records(&bytes, path)?;
        log.len = intact;
        log.last = blocks.last().map(|b| b.block.header.height);
        if intact < file_len {
            tracing::warn!(
                path = %path.display(),
                kept = intact,
                dropped = file_len - intact,
                "block log ends in a torn record (an append cut short by a crash); cut off"
            );
            log.truncate_to(intact)?;
        }
        Ok((log, blocks))
    }

    /// Height of the last logged block.
    pub fn last_height(&self) -> Option<Height> {
        self.last
    }

    /// Whether the log holds no block.
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Appends a block with its certificate and syncs the file: when this returns, the block
    /// survives a crash. Refuses a block that does not follow the last logged one. Returns
    /// the log's length before the append, for [`BlockLog::truncate_to`] should the caller's
    /// commit of the block fail.
    pub fn append(&mut self, block: &Block, cert: &CommitCertificate) -> Result<u64, StoreError> {
        let height = block.header.height;
        if let Some(last) = self.last
            && height != last.saturating_add(1)
        {
            return Err(StoreError::InvalidArgument(format!(
                "block log: height {height} does not follow the last logged height {last}"
            )));
        }
        let payload = encode(&(block, cert));
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| u64::from(l) <= MAX_PAYLOAD_BYTES)
            .ok_or_else(|| {
                StoreError::InvalidArgument(format!(
                    "block log: a record of {} bytes is too large",
                    payload.len()
                ))
            })?;
        let mut record = Vec::with_capacity(payload.len() + RECORD_OVERHEAD as usize);
        record.extend_from_slice(&height.to_be_bytes());
        record.extend_from_slice(&len.to_be_bytes());
        record.extend_from_slice(&payload);
        record.extend_from_slice(&checksum(height, &payload));
        let before = self.len;
        let written = self
            .file
            .seek(SeekFrom::Start(before))
            .and_then(|_| self.file.write_all(&record))
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Leave no partial record behind for the next append to follow.
            let _ = self.truncate_to(before);
            return Err(io_err("append", &self.path, e));
        }
        self.len = before + record.len() as u64;
        self.last = Some(height);
        Ok(before)
    }

    /// Cuts the log back to `len` bytes (a value [`BlockLog::append`] returned) and syncs.
    pub fn truncate_to(&mut self, len: u64) -> Result<(), StoreError> {
        let len = len.max(MAGIC.len() as u64);
        self.file
            .set_len(len)
            .and_then(|_| self.file.sync_all())
            .map_err(|e| io_err("truncate", &self.path, e))?;
        if len < self.len {
            // Only after a failed commit: parse what is left for the last height.
            let mut bytes = Vec::new();
            self.file
                .seek(SeekFrom::Start(0))
                .and_then(|_| self.file.read_to_end(&mut bytes))
                .map_err(|e| io_err("read", &self.path, e))?;
            let (blocks, intact) = parse_records(&bytes, &self.path)?;
            self.last = blocks.last().map(|b| b.block.header.height);
            self.len = intact;
        }
        Ok(())
    }

    /// Empties the log (after a durable store commit made its blocks redundant) and syncs.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        let done = self
            .file
            .set_len(0)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(MAGIC))
            .and_then(|_| self.file.sync_all());
        done.map_err(|e| io_err("reset", &self.path, e))?;
        self.len = MAGIC.len() as u64;
        self.last = None;
        Ok(())
    }
}

/// The intact records of a log file's bytes (which start with the magic) and the length of
/// the intact prefix.
fn parse_records(bytes: &[u8], path: &Path) -> Result<(Vec<LoggedBlock>, u64), StoreError> {
    let mut at = MAGIC.len();
    let mut out: Vec<LoggedBlock> = Vec::new();
    while let Some(head) = bytes.get(at..at + 12) {
        let mut h = [0u8; 8];
        h.copy_from_slice(&head[..8]);
        let height = u64::from_be_bytes(h);
        let mut l = [0u8; 4];
        l.copy_from_slice(&head[8..12]);
        let len = u64::from(u32::from_be_bytes(l));
        if len > MAX_PAYLOAD_BYTES {
            break;
        }
        let len = len as usize;
        let start = at + 12;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        let Some(sum) = bytes.get(start + len..start + len + 32) else {
            break;
        };
        if sum != checksum(height, payload) {
            break;
        }
        let (block, certificate): (Block, CommitCertificate) =
            decode(payload, MAX_PAYLOAD_BYTES as usize)
                .map_err(|e| StoreError::corrupt("block log record", e))?;
        if block.header.height != height || certificate.height != height {
            return Err(StoreError::corrupt(
                "block log record",
                format!(
                    "record of height {height} holds block {} with a certificate for {}",
                    block.header.height, certificate.height
                ),
            ));
        }
        if let Some(prev) = out.last()
            && height != prev.block.header.height.saturating_add(1)
        {
            return Err(StoreError::corrupt(
                "block log",
                format!(
                    "{}: height {height} follows {}",
                    path.display(),
                    prev.block.header.height
                ),
            ));
        }
        out.push(LoggedBlock { block, certificate });
        at = start + len + 32;
    }
    Ok((out, at as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::{Address, BlockHeader, Hash, Keypair};

    fn block(height: Height) -> (Block, CommitCertificate) {
        let header = BlockHeader {
            chain_id: "c".into(),
            height,
            time_ms: height,
            prev_hash: Hash::ZERO,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            results_root: Hash::ZERO,
            validator_set_hash: Hash::ZERO,
            proposer: Address::of_member(&Keypair::from_seed([1; 32]).public()),
        };
        let block = Block {
            header,
            txs: vec![],
        };
        let cert = CommitCertificate {
            height,
            round: 0,
            block_hash: block.hash(),
            signatures: vec![],
        };
        (block, cert)
    }

    fn heights(blocks: &[LoggedBlock]) -> Vec<Height> {
        blocks.iter().map(|b| b.block.header.height).collect()
    }

    #[test]
    fn appends_read_back_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.blocklog");
        let (mut log, found) = BlockLog::open(&path).unwrap();
        assert!(found.is_empty() && log.is_empty());
        for h in 5..=7 {
            let (b, c) = block(h);
            log.append(&b, &c).unwrap();
        }
        assert_eq!(log.last_height(), Some(7));
        let full = std::fs::metadata(&path).unwrap().len();
        drop(log);
        let (_, found) = BlockLog::open(&path).unwrap();
        assert_eq!(heights(&found), vec![5, 6, 7]);
        assert_eq!(found[1].certificate.block_hash, found[1].block.hash());

        // A crash in the middle of the last append: any cut inside its record drops it alone.
        for cut in [full - 1, full - 32, full - 40] {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let (mut log, found) = BlockLog::open(&path).unwrap();
            assert_eq!(heights(&found), vec![5, 6], "cut at {cut}");
            assert_eq!(log.last_height(), Some(6));
            // The next append follows the intact part.
            let (b, c) = block(7);
            log.append(&b, &c).unwrap();
            drop(log);
            assert_eq!(heights(&BlockLog::open(&path).unwrap().1), vec![5, 6, 7]);
        }
        // A flipped byte in the last record's payload fails its checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 40;
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(heights(&BlockLog::open(&path).unwrap().1), vec![5, 6]);
    }

    #[test]
    fn refuses_gaps_and_foreign_files_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.blocklog");
        let (mut log, _) = BlockLog::open(&path).unwrap();
        let (b, c) = block(3);
        log.append(&b, &c).unwrap();
        let (b5, c5) = block(5);
        assert!(matches!(
            log.append(&b5, &c5),
            Err(StoreError::InvalidArgument(_))
        ));
        let before = log.append(&block(4).0, &block(4).1).unwrap();
        log.truncate_to(before).unwrap();
        assert_eq!(log.last_height(), Some(3));
        log.reset().unwrap();
        assert!(log.is_empty());
        log.append(&b5, &c5).unwrap();
        drop(log);
        assert_eq!(heights(&BlockLog::open(&path).unwrap().1), vec![5]);

        std::fs::write(&path, b"not a block log at all").unwrap();
        assert!(matches!(
            BlockLog::open(&path),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
