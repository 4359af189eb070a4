//! The demo's web dashboard: a [`CityObserver`] that keeps bounded series of what a running
//! city simulation reports, an axum server with a self-contained page (`GET /`) and the state
//! as JSON (`GET /api/state`), and the summary report (`report.html`, `report.json`) written
//! when the demo stops.
//!
//! Everything the page draws comes from [`Dashboard::snapshot`]; the report embeds the final
//! snapshot in the same page code, so the live dashboard and the report show the same plots.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;

use crate::city::feed::{ChainPoint, CityObserver, ContactPoint, RoomRiskPoint, TreeView};

/// The page: inline CSS and JS, no external resources.
const PAGE: &str = include_str!("page.html");
/// Where the page code looks for an embedded state (the report) instead of polling.
const EMBED_MARKER: &str = "/*EMBEDDED_STATE*/null";

/// Samples kept per time series; when full, every other sample is dropped, so a long run
/// keeps its whole history at half the resolution instead of only its end.
pub const MAX_SERIES_POINTS: usize = 1_200;
/// Rooms whose risk windows are kept (rooms beyond this are counted, not stored).
pub const MAX_ROOMS: usize = 2_000;
/// Heatmap columns per room kept (one per simulated hour: 60 days).
pub const MAX_HOURS: usize = 24 * 60;
/// Rooms the heatmap shows: the riskiest ones (alerts first, then by peak probability).
pub const HEATMAP_ROOMS: usize = 24;
/// Cases of the transmission tree shown.
pub const MAX_TREE_NODES: usize = 400;
/// Recent event lines kept.
pub const MAX_EVENTS: usize = 40;
/// Throughput is averaged over at least this many wall-clock seconds.
const TPS_WINDOW_S: f64 = 5.0;
/// Seconds per heatmap column.
const HOUR_S: u64 = 3_600;

/// What the demo was started with, shown in the page's header.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RunInfo {
    /// Seed of the city.
    pub seed: u64,
    /// People in the city.
    pub population: u32,
    /// Simulated days.
    pub days: u32,
    /// Simulated seconds per wall-clock second, if paced.
    pub pace: Option<f64>,
}

/// The phase of the run.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nodes starting, city being generated.
    #[default]
    Starting,
    /// The city is streaming.
    Running,
    /// The city reached its last day.
    Finished,
    /// Stopped by the user or by `--seconds`.
    Stopped,
    /// The run failed.
    Failed,
}

/// One cell of a room's heatmap row: the worst window of the hour.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Cell {
    probability: f64,
    alert: bool,
}

/// A time series that halves its resolution instead of dropping its history.
#[derive(Debug)]
struct Series<T> {
    points: Vec<T>,
    /// Only every `stride`-th incoming point is kept (doubles each time the series halves).
    stride: u64,
    seen: u64,
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Series {
            points: Vec::new(),
            stride: 1,
            seen: 0,
        }
    }
}

impl<T: Clone> Series<T> {
    fn push(&mut self, p: T) {
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.stride) {
            // Between kept samples: it replaces the newest one so the end stays current.
            if let Some(last) = self.points.last_mut() {
                *last = p;
            }
            return;
        }
        self.points.push(p);
        if self.points.len() >= MAX_SERIES_POINTS {
            let kept: Vec<T> = self.points.iter().step_by(2).cloned().collect();
            self.points = kept;
            self.stride = self.stride.saturating_mul(2);
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    info: RunInfo,
    phase: Phase,
    chain: Series<ChainPoint>,
    contacts: Series<ContactPoint>,
    /// room → hour index (since the first window) → worst cell.
    rooms: BTreeMap<String, BTreeMap<u64, Cell>>,
    rooms_dropped: u64,
    /// Start of the first window seen, rounded down to the hour.
    first_hour_s: Option<u64>,
    windows: u64,
    alerts: u64,
    tree: Option<TreeView>,
    trees: u64,
    events: VecDeque<String>,
    metrics: Option<serde_json::Value>,
    error: Option<String>,
}

/// The dashboard's state, fed by the city driver through [`CityObserver`].
#[derive(Debug, Default)]
pub struct Dashboard {
    inner: Mutex<Inner>,
}

/// A point of the chain panel: the driver's sample plus the throughput since the previous.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChainRow {
    /// The sample.
    #[serde(flatten)]
    pub point: ChainPoint,
    /// Transactions per wall-clock second over the last few seconds (at least
    /// `TPS_WINDOW_S` once the run is that old).
    pub tps: f64,
}

/// The heatmap of the riskiest rooms.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Heatmap {
    /// Simulated unix time of column 0 (an hour boundary).
    pub start_s: u64,
    /// Seconds per column.
    pub column_s: u64,
    /// Number of columns.
    pub columns: u64,
    /// Row labels.
    pub rooms: Vec<String>,
    /// `cells[row]` = `[column, probability, alert (0/1)]` for the columns with a window.
    pub cells: Vec<Vec<(u64, f64, u8)>>,
    /// Highest probability shown.
    pub max_probability: f64,
    /// Rooms reported in all (the heatmap shows the riskiest).
    pub rooms_total: usize,
    /// Windows the edges reported (points without `alert`).
    pub windows_total: u64,
    /// Alerts reported (points with `alert`: windows already reported, or not, by an edge).
    pub alerts_total: u64,
}

/// Everything the page draws: the body of `GET /api/state` and of `report.json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Snapshot {
    /// Run parameters.
    pub info: RunInfo,
    /// Phase of the run.
    pub phase: Phase,
    /// Chain height and throughput over time.
    pub chain: Vec<ChainRow>,
    /// Cumulative contact-tracing counts over time.
    pub contacts: Vec<ContactPoint>,
    /// Aerosol risk of the riskiest rooms by hour.
    pub rooms: Heatmap,
    /// The latest inferred transmission tree (bounded to [`MAX_TREE_NODES`] cases).
    pub tree: Option<TreeView>,
    /// Trees received.
    pub trees: u64,
    /// Recent events, newest last.
    pub events: Vec<String>,
    /// The driver's final metrics, once it returned.
    pub metrics: Option<serde_json::Value>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}

impl Dashboard {
    /// An empty dashboard for a run with these parameters.
    pub fn new(info: RunInfo) -> Dashboard {
        let d = Dashboard::default();
        d.lock().info = info;
        d
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the state consistent; a panicked writer does not spoil it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the phase shown.
    pub fn set_phase(&self, phase: Phase) {
        self.lock().phase = phase;
    }

    /// Records the driver's final metrics (any serialisable value).
    pub fn set_metrics<M: Serialize>(&self, metrics: &M) {
        let v = serde_json::to_value(metrics).ok();
        self.lock().metrics = v;
    }

    /// Records why the run failed (and marks it failed).
    pub fn set_error(&self, error: String) {
        let mut g = self.lock();
        g.phase = Phase::Failed;
        g.error = Some(error);
    }

    /// Everything the page draws, bounded.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let points = &g.chain.points;
        let mut chain = Vec::with_capacity(points.len());
        // Blocks land in bursts; a rate over a few seconds reads better than per sample.
        let mut from = 0;
        for (i, p) in points.iter().enumerate() {
            while from + 1 < i && points[from + 1].wall_s <= p.wall_s - TPS_WINDOW_S {
                from += 1;
            }
            let q = &points[from];
            let tps = if i > 0 && p.wall_s > q.wall_s {
                p.txs_total.saturating_sub(q.txs_total) as f64 / (p.wall_s - q.wall_s)
            } else {
                0.0
            };
            chain.push(ChainRow {
                point: p.clone(),
                tps,
            });
        }
        let tree = g.tree.as_ref().map(|t| bounded_tree(t, MAX_TREE_NODES));
        Snapshot {
            info: g.info.clone(),
            phase: g.phase,
            chain,
            contacts: g.contacts.points.clone(),
            rooms: heatmap(&g),
            tree,
            trees: g.trees,
            events: g.events.iter().cloned().collect(),
            metrics: g.metrics.clone(),
            error: g.error.clone(),
        }
    }
}

impl CityObserver for Dashboard {
    fn chain(&self, point: ChainPoint) {
        let mut g = self.lock();
        if g.phase == Phase::Starting {
            g.phase = Phase::Running;
        }
        g.chain.push(point);
    }

    fn contacts(&self, point: ContactPoint) {
        self.lock().contacts.push(point);
    }

    fn room_risk(&self, point: RoomRiskPoint) {
        let mut g = self.lock();
        // Edges report every window they close; an alert re-reports one from the ledger.
        if point.alert {
            g.alerts += 1;
        } else {
            g.windows += 1;
        }
        let first = *g
            .first_hour_s
            .get_or_insert(point.start_s - point.start_s % HOUR_S);
        // A window before the first one seen (out of order) is not drawn: columns only grow.
        let Some(offset) = point.start_s.checked_sub(first) else {
            return;
        };
        let hour = offset / HOUR_S;
        if hour >= MAX_HOURS as u64 {
            return;
        }
        if !g.rooms.contains_key(&point.room) && g.rooms.len() >= MAX_ROOMS {
            g.rooms_dropped += 1;
            return;
        }
        let probability = if point.probability.is_finite() {
            point.probability.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let cell = g
            .rooms
            .entry(point.room)
            .or_default()
            .entry(hour)
            .or_default();
        cell.probability = cell.probability.max(probability);
        cell.alert |= point.alert;
    }

    fn tree(&self, tree: TreeView) {
        let mut g = self.lock();
        g.trees += 1;
        g.tree = Some(tree);
    }

    fn event(&self, line: String) {
        let mut g = self.lock();
        g.events.push_back(line);
        while g.events.len() > MAX_EVENTS {
            g.events.pop_front();
        }
    }
}

/// The riskiest rooms: alerts first, then peak probability, then name.
fn heatmap(g: &Inner) -> Heatmap {
    let mut ranked: Vec<(&String, bool, f64)> = g
        .rooms
        .iter()
        .map(|(name, cells)| {
            let alert = cells.values().any(|c| c.alert);
            let peak = cells.values().map(|c| c.probability).fold(0.0, f64::max);
            (name, alert, peak)
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(b.2.total_cmp(&a.2))
            .then_with(|| a.0.cmp(b.0))
    });
    ranked.truncate(HEATMAP_ROOMS);
    let columns = g
        .rooms
        .values()
        .filter_map(|c| c.keys().next_back())
        .max()
        .map_or(0, |h| h + 1);
    let mut max_probability: f64 = 0.0;
    let mut rooms = Vec::with_capacity(ranked.len());
    let mut cells = Vec::with_capacity(ranked.len());
    for (name, _, peak) in ranked {
        max_probability = max_probability.max(peak);
        rooms.push(name.clone());
        let row = g.rooms.get(name).map_or_else(Vec::new, |c| {
            c.iter()
                .map(|(h, c)| (*h, c.probability, u8::from(c.alert)))
                .collect()
        });
        cells.push(row);
    }
    Heatmap {
        start_s: g.first_hour_s.unwrap_or(0),
        column_s: HOUR_S,
        columns,
        rooms,
        cells,
        max_probability,
        rooms_total: g.rooms.len() + usize::try_from(g.rooms_dropped).unwrap_or(usize::MAX),
        windows_total: g.windows,
        alerts_total: g.alerts,
    }
}

/// The tree with at most `max` cases: origins and true origins first, then the cases with
/// the most likely origin posterior; edges only between kept cases.
fn bounded_tree(t: &TreeView, max: usize) -> TreeView {
    if t.nodes.len() <= max {
        return t.clone();
    }
    let mut order: Vec<usize> = (0..t.nodes.len()).collect();
    let marked = |i: usize| {
        let id = &t.nodes[i].id;
        t.origins.contains(id) || t.true_origins.contains(id)
    };
    order.sort_by(|&a, &b| {
        marked(b)
            .cmp(&marked(a))
            .then(
                t.nodes[b]
                    .origin_probability
                    .total_cmp(&t.nodes[a].origin_probability),
            )
            .then(a.cmp(&b))
    });
    order.truncate(max);
    order.sort_unstable();
    let nodes: Vec<_> = order.iter().map(|&i| t.nodes[i].clone()).collect();
    let kept: std::collections::BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let edges = t
        .edges
        .iter()
        .filter(|e| kept.contains(e.from.as_str()) && kept.contains(e.to.as_str()))
        .cloned()
        .collect();
    TreeView {
        sim_s: t.sim_s,
        nodes,
        edges,
        origins: t.origins.clone(),
        true_origins: t.true_origins.clone(),
    }
}

/// The page with `snapshot` embedded: the report, drawn by the same code as the live page,
/// without polling.
pub fn report_html(snapshot: &Snapshot) -> anyhow::Result<String> {
    let json = serde_json::to_string(snapshot).context("cannot serialise the dashboard state")?;
    // Inside <script>, "</" could close the element early; "<\/" is the same JSON string.
    let json = json.replace("</", "<\\/");
    anyhow::ensure!(
        PAGE.contains(EMBED_MARKER),
        "the dashboard page has no embedding marker"
    );
    Ok(PAGE.replacen(EMBED_MARKER, &json, 1))
}

/// Writes `report.html` and `report.json` into `dir`.
pub fn write_report(dashboard: &Dashboard, dir: &Path) -> anyhow::Result<()> {
    let snapshot = dashboard.snapshot();
    let html = report_html(&snapshot)?;
    let json =
        serde_json::to_string_pretty(&snapshot).context("cannot serialise the dashboard state")?;
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, html)
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    let json_path = dir.join("report.json");
    std::fs::write(&json_path, json)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    Ok(())
}

/// The dashboard's routes: `GET /` and `GET /api/state`.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .with_state(dashboard)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn state(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Json(d.snapshot()))
}

/// A bound dashboard listener.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0: any free port).
    pub async fn bind(port: u16) -> anyhow::Result<Server> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| {
                format!("cannot listen on 127.0.0.1:{port} for the dashboard (in use? pass --port)")
            })?;
        let addr = listener
            .local_addr()
            .context("cannot read the dashboard's address")?;
        Ok(Server { listener, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `dashboard` until `shutdown` resolves.
    pub async fn serve(
        self,
        dashboard: Arc<Dashboard>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, router(dashboard))
            .with_graceful_shutdown(shutdown)
            .await
            .context("the dashboard server failed")
    }
}

#[cfg(test)]
mod tests;
