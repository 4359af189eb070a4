//! What a running city simulation reports while it runs: the interface between the driver
//! (`city::run`, behind `trustedge simulate` and `trustedge demo`) and whoever watches it
//! (the demo's dashboard, the progress bar). Data only; the driver calls the observer from
//! its tasks, so implementations must be cheap and must not block.

#![allow(dead_code)] // until the driver and the dashboard both use it

use serde::Serialize;

/// The chain as seen by the driver (from the first validator), sampled about once a second.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ChainPoint {
    /// Wall-clock seconds since the run started.
    pub wall_s: f64,
    /// Simulated unix time the city has reached.
    pub sim_s: u64,
    /// Committed height.
    pub height: u64,
    /// Transactions committed since genesis.
    pub txs_total: u64,
}

/// Contact tracing so far (cumulative counts), sampled once per simulated hour.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ContactPoint {
    /// Wall-clock seconds since the run started.
    pub wall_s: f64,
    /// Simulated unix time.
    pub sim_s: u64,
    /// Encounter records the edges have stored (uploaded by phones over MQTT).
    pub encounters_uploaded: u64,
    /// Confirmed cases whose keys are on the ledger.
    pub confirmed_cases: u64,
    /// Exposure notices committed on the ledger.
    pub notices_committed: u64,
    /// Notices delivered to (and matched by) a phone.
    pub notices_delivered: u64,
    /// Aerosol alerts committed on the ledger.
    pub aerosol_alerts: u64,
}

/// The aerosol risk of one room over one window, as the edge computed it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RoomRiskPoint {
    /// Room label of the simulation (local to the dashboard, never on the ledger).
    pub room: String,
    /// Window start, simulated unix time.
    pub start_s: u64,
    /// Window end, simulated unix time.
    pub end_s: u64,
    /// Probability of infection for a susceptible person present in the window.
    pub probability: f64,
    /// Whether this is an alert committed on the ledger for the window (the driver also
    /// reports every window the edges close, without `alert`, as the city plays).
    pub alert: bool,
}

/// A case in the inferred transmission tree.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TreeNode {
    /// Label of the case (e.g. `case 12`).
    pub id: String,
    /// Symptom onset, simulated unix time, when known.
    pub onset_s: Option<u64>,
    /// Posterior probability that this case is the origin of its cluster.
    pub origin_probability: f64,
}

/// An inferred transmission edge.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TreeEdge {
    /// Infector label.
    pub from: String,
    /// Infectee label.
    pub to: String,
    /// Edge weight (relative likelihood) used by the inference.
    pub weight: f64,
    /// `contact` or `room`.
    pub kind: String,
}

/// The inferred transmission tree with its origin(s) marked.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TreeView {
    /// Simulated unix time of the inference.
    pub sim_s: u64,
    /// Confirmed cases.
    pub nodes: Vec<TreeNode>,
    /// The most likely tree's edges.
    pub edges: Vec<TreeEdge>,
    /// The top-ranked origin of each cluster.
    pub origins: Vec<String>,
    /// The true origins (ground truth of the simulation), for comparison.
    pub true_origins: Vec<String>,
}

/// Receives what a running city simulation reports.
pub trait CityObserver: Send + Sync {
    /// A chain sample.
    fn chain(&self, point: ChainPoint);
    /// A contact-tracing sample.
    fn contacts(&self, point: ContactPoint);
    /// A room-risk window.
    fn room_risk(&self, point: RoomRiskPoint);
    /// A new inferred transmission tree.
    fn tree(&self, tree: TreeView);
    /// A notable event, one line (e.g. `day 3 09:00 case 12 confirmed`).
    fn event(&self, line: String);
}

/// An observer that ignores everything (the headless `simulate`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl CityObserver for NoObserver {
    fn chain(&self, _: ChainPoint) {}
    fn contacts(&self, _: ContactPoint) {}
    fn room_risk(&self, _: RoomRiskPoint) {}
    fn tree(&self, _: TreeView) {}
    fn event(&self, _: String) {}
}
