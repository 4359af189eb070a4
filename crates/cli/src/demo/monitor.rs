//! Watching the nodes: every block from the validator, heights, throughput, agreement
//! between nodes, and the live display.

use super::*;

/// Result of comparing the nodes.
#[derive(Clone, Debug)]
pub(super) enum Agreement {
    /// All nodes have the same block hash and state root at this height.
    Agree(u64),
    /// They differ.
    Mismatch(String),
    /// A node could not be asked.
    Unavailable(String),
}

/// Compares block hash and state root of every node at their highest common height.
pub(super) async fn agreement(nodes: &[DemoNode]) -> Agreement {
    let mut heights = Vec::with_capacity(nodes.len());
    for n in nodes {
        match remote::call(n.client.status()).await {
            Ok(s) => heights.push(s.height),
            Err(e) => return Agreement::Unavailable(format!("{}: {e}", n.name)),
        }
    }
    let common = heights.iter().copied().min().unwrap_or(0);
    if common == 0 {
        return Agreement::Unavailable("no block is committed on every node yet".into());
    }
    let mut first: Option<(String, Hash, Hash)> = None;
    for n in nodes {
        let b = match remote::call(n.client.block(common)).await {
            Ok(b) => b,
            Err(e) => return Agreement::Unavailable(format!("{} block {common}: {e}", n.name)),
        };
        match &first {
            None => first = Some((n.name.clone(), b.hash, b.state_root)),
            Some((name, hash, root)) => {
                if *hash != b.hash || *root != b.state_root {
                    return Agreement::Mismatch(format!(
                        "at height {common} {name} has block {} state {} but {} has block {} \
                         state {}",
                        short(hash),
                        short(root),
                        n.name,
                        short(&b.hash),
                        short(&b.state_root)
                    ));
                }
            }
        }
    }
    Agreement::Agree(common)
}

pub(super) fn short(h: &Hash) -> String {
    h.to_hex()[..12].to_string()
}

pub(super) struct NodeView {
    pub(super) height: u64,
    pub(super) block_hash: Hash,
    pub(super) state_root: Hash,
    pub(super) mode: String,
    pub(super) error: Option<String>,
}

pub(super) struct Monitor {
    pub(super) nodes: Vec<DemoNode>,
    pub(super) views: Vec<NodeView>,
    pub(super) seen_height: u64,
    pub(super) txs: u64,
    pub(super) devices: u64,
    pub(super) batches: u64,
    /// The latest anchored batch, as text.
    pub(super) last_anchor: String,
    pub(super) failed: BTreeMap<String, u64>,
    /// (time, committed transactions) samples for the rate.
    pub(super) samples: VecDeque<(Instant, u64)>,
    pub(super) last_check: Instant,
    pub(super) last_agreement: Option<Agreement>,
    pub(super) checks_ok: u64,
    pub(super) mismatches: Vec<String>,
}

impl Monitor {
    pub(super) fn new(nodes: &[DemoNode], start_height: u64) -> Monitor {
        Monitor {
            nodes: nodes.to_vec(),
            views: nodes
                .iter()
                .map(|_| NodeView {
                    height: 0,
                    block_hash: Hash::ZERO,
                    state_root: Hash::ZERO,
                    mode: String::new(),
                    error: None,
                })
                .collect(),
            seen_height: start_height,
            txs: 0,
            devices: 0,
            batches: 0,
            last_anchor: "none yet".into(),
            failed: BTreeMap::new(),
            samples: VecDeque::new(),
            last_check: Instant::now(),
            last_agreement: None,
            checks_ok: 0,
            mismatches: Vec::new(),
        }
    }

    pub(super) async fn refresh(&mut self, validator: &DemoNode, shared: &Shared) {
        for (n, v) in self.nodes.iter().zip(self.views.iter_mut()) {
            match remote::call(n.client.status()).await {
                Ok(s) => {
                    v.height = s.height;
                    v.block_hash = s.block_hash;
                    v.state_root = s.state_root;
                    v.mode = serde_json::to_value(s.mode)
                        .ok()
                        .and_then(|m| m.as_str().map(str::to_string))
                        .unwrap_or_default();
                    v.error = None;
                }
                Err(e) => v.error = Some(e.to_string()),
            }
        }
        let top = self
            .nodes
            .iter()
            .zip(&self.views)
            .find(|(n, _)| n.name == validator.name)
            .map(|(_, v)| v.height)
            .unwrap_or(0);
        let until = top.min(self.seen_height + MAX_BLOCKS_PER_TICK);
        while self.seen_height < until {
            let h = self.seen_height + 1;
            let Ok(b) = remote::call(validator.client.block(h)).await else {
                break;
            };
            for t in &b.txs {
                self.txs += 1;
                let Some(r) = &t.result else { continue };
                if let TxOutcome::Failed(f) = &r.outcome {
                    *self.failed.entry(f.code.clone()).or_default() += 1;
                    shared.event(format!(
                        "h{h} x {} failed [{}]: {}",
                        t.tx.body.payload.module,
                        f.code,
                        clip(&f.message, 90)
                    ));
                }
                for e in &r.events {
                    match e.kind.as_str() {
                        "device_registered" => self.devices += 1,
                        "batch_anchored" => {
                            self.batches += 1;
                            self.last_anchor = format!(
                                "h{h}: {} records of {} from {}, root {}",
                                e.attr("count").unwrap_or("?"),
                                e.attr("record_type").unwrap_or("?"),
                                e.attr("org_id").unwrap_or("?"),
                                clip(e.attr("merkle_root").unwrap_or("?"), 12)
                            );
                        }
                        _ => {
                            let attrs: Vec<String> = e
                                .attributes
                                .iter()
                                .filter(|a| a.key != "key")
                                .map(|a| format!("{}={}", a.key, clip(&a.value, 20)))
                                .collect();
                            shared.event(format!(
                                "h{h} {}.{} {}",
                                e.module,
                                e.kind,
                                attrs.join(" ")
                            ));
                        }
                    }
                }
            }
            self.seen_height = h;
        }
        let now = Instant::now();
        self.samples.push_back((now, self.txs));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(5))
        {
            self.samples.pop_front();
        }
    }

    pub(super) fn tx_rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    pub(super) async fn check_agreement(&mut self, shared: &Shared) {
        self.last_check = Instant::now();
        let a = agreement(&self.nodes).await;
        match &a {
            Agreement::Agree(_) => self.checks_ok += 1,
            Agreement::Mismatch(m) => {
                self.mismatches.push(m.clone());
                shared.event(format!("!! DISAGREEMENT {m}"));
            }
            Agreement::Unavailable(_) => {}
        }
        self.last_agreement = Some(a);
    }

    pub(super) fn agreement_text(&self) -> String {
        match &self.last_agreement {
            None => "agreement: not checked yet".into(),
            Some(Agreement::Agree(h)) => format!(
                "agreement: all {} nodes identical at h{h} ({} checks, {} mismatches)",
                self.nodes.len(),
                self.checks_ok,
                self.mismatches.len()
            ),
            Some(Agreement::Mismatch(m)) => format!("agreement: MISMATCH {m}"),
            Some(Agreement::Unavailable(m)) => format!("agreement: waiting ({m})"),
        }
    }

    pub(super) fn plain_line(&self, elapsed: Duration) -> String {
        let heights: Vec<String> = self
            .nodes
            .iter()
            .zip(&self.views)
            .map(|(n, v)| format!("{}={}", n.name, v.height))
            .collect();
        format!(
            "[{:>5.1}s] heights {} | {} txs committed, {:.1} tx/s | {}",
            elapsed.as_secs_f64(),
            heights.join(" "),
            self.txs,
            self.tx_rate(),
            self.agreement_text()
        )
    }
}

pub(super) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

// The live display.

pub(super) struct Ui {
    pub(super) multi: MultiProgress,
    pub(super) header: ProgressBar,
    pub(super) nodes: Vec<ProgressBar>,
    pub(super) stats: ProgressBar,
    pub(super) agreement: ProgressBar,
    pub(super) anchor: ProgressBar,
    pub(super) events: Vec<ProgressBar>,
}

impl Ui {
    pub(super) fn new(nodes: &[DemoNode]) -> Ui {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let style =
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
        let spin = ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let line = |s: &ProgressStyle| {
            let b = multi.add(ProgressBar::new(1));
            b.set_style(s.clone());
            b
        };
        let header = line(&spin);
        let node_bars = nodes.iter().map(|_| line(&style)).collect();
        let stats = line(&style);
        let agreement = line(&style);
        let anchor = line(&style);
        let events = (0..EVENT_LINES + 1).map(|_| line(&style)).collect();
        Ui {
            multi,
            header,
            nodes: node_bars,
            stats,
            agreement,
            anchor,
            events,
        }
    }

    pub(super) fn visible(&self) -> bool {
        !self.multi.is_hidden()
    }

    pub(super) fn draw(&self, mon: &Monitor, shared: &Shared, elapsed: Duration, chain: &str) {
        if !self.visible() {
            return;
        }
        self.header.set_message(format!(
            "TrustEdge demo: chain {chain}, {:.0} s (Ctrl-C to stop)",
            elapsed.as_secs_f64()
        ));
        self.header.tick();
        for ((bar, n), v) in self.nodes.iter().zip(&mon.nodes).zip(&mon.views) {
            let text = match &v.error {
                Some(e) => format!("  {:<12} unreachable: {}", n.name, clip(e, 80)),
                None => format!(
                    "  {:<12} {:<9} height {:>6}  block {}  state {}  ({})",
                    n.name,
                    n.role.to_string(),
                    v.height,
                    short(&v.block_hash),
                    short(&v.state_root),
                    v.mode
                ),
            };
            bar.set_message(text);
        }
        let s = shared.stats();
        let refused: u64 = s.refused.values().map(|(a, b)| a + b).sum();
        let failed: u64 = mon.failed.values().sum();
        self.stats.set_message(format!(
            "  {:.1} tx/s committed | {} txs in {} blocks | {} devices | {} batches anchored, {} \
             records proven | {} refused, {} failed",
            mon.tx_rate(),
            mon.txs,
            mon.seen_height,
            mon.devices,
            mon.batches,
            s.records_proven,
            refused,
            failed
        ));
        self.agreement
            .set_message(format!("  {}", mon.agreement_text()));
        self.anchor
            .set_message(format!("  latest anchored batch {}", mon.last_anchor));
        if let Some(first) = self.events.first() {
            first.set_message("  recent events (governance, failures, refusals):");
        }
        for (i, bar) in self.events.iter().skip(1).enumerate() {
            bar.set_message(
                s.events
                    .get(i)
                    .map(|e| format!("    {}", clip(e, 140)))
                    .unwrap_or_default(),
            );
        }
    }

    pub(super) fn finish(&self) {
        let _ = self.multi.clear();
    }
}
