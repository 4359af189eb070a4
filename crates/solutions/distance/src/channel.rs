//! A BLE RSSI channel simulator: labelled data for the distance model, and the radio of the
//! city simulation.
//!
//! The received power of one advertisement, in dBm, is
//!
//! ```text
//! rssi_true = tx_power − PL(1 m) − 10·n·log10(d / 1 m)          log-distance path loss
//!           − carry(tx) − carry(rx) − body − orientation          body, bag, pocket, pose
//!           + S + s(t)                                            shadowing (session, slow)
//!           + F                                                   multipath fading (per packet)
//! rssi_reported = round(rssi_true − rssi_offset(rx))              the receiver's radio bias
//! ```
//!
//! `n` and the shadowing σ depend on the [`Environment`]; `F` is the power of a Rician
//! (Rayleigh when there is no line of sight) unit-mean channel, in dB; `S` ~ N(0, σ) is
//! drawn once per session and `s(t)` is a slow AR(1) term for people moving. A
//! [`DeviceModel`]'s `rssi_offset_db` follows GAEN's `rssi_correction`: the value a receiver
//! adds to its reported RSSI to get the true one. The [`DEVICE_MODELS`] table is synthetic
//! (like GAEN's calibration table in shape, not in values).

use rand_core::RngCore;
use rand_distr::{Distribution, Normal, StandardNormal, Uniform};
use serde::Serialize;

use crate::DistanceError;

/// Free-space path loss at 1 m and 2.44 GHz (BLE advertising band): 20·log10(4π·1 m / λ)
/// with λ = 0.123 m is 40.2 dB.
pub const REFERENCE_LOSS_1M_DB: f64 = 40.2;

/// Lowest RSSI a phone radio reports; weaker packets are lost.
pub const DEFAULT_SENSITIVITY_DBM: f64 = -100.0;

/// Where two devices meet: sets the path-loss exponent, shadowing and multipath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// Open air, line of sight.
    Outdoor,
    /// Open-plan office: desks, partitions.
    Office,
    /// A flat or house.
    Home,
    /// Bus, train, tram: a metal box (waveguide: n < 2, strong multipath).
    Transit,
    /// A shop or supermarket: shelves.
    Retail,
}

impl Environment {
    /// Every environment, in a fixed order.
    pub const ALL: [Environment; 5] = [
        Environment::Outdoor,
        Environment::Office,
        Environment::Home,
        Environment::Transit,
        Environment::Retail,
    ];

    /// The channel parameters of this environment. Values are typical of indoor/outdoor
    /// 2.4 GHz measurements (n between 1.6 in corridors and vehicles and 3 in cluttered
    /// offices; shadowing σ 4–8 dB).
    pub fn params(self) -> EnvironmentParams {
        let (n, sigma, k) = match self {
            Environment::Outdoor => (2.0, 4.0, Some(6.0)),
            Environment::Office => (2.6, 6.0, Some(3.0)),
            Environment::Home => (2.3, 5.0, Some(3.0)),
            Environment::Transit => (1.8, 7.0, None),
            Environment::Retail => (2.2, 5.5, Some(1.0)),
        };
        EnvironmentParams {
            path_loss_exponent: n,
            shadowing_sigma_db: sigma,
            rician_k_db: k,
        }
    }
}

/// Channel parameters of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EnvironmentParams {
    /// Path-loss exponent n (2 in free space).
    pub path_loss_exponent: f64,
    /// Log-normal shadowing standard deviation, dB.
    pub shadowing_sigma_db: f64,
    /// Rician K factor in dB (line-of-sight to scattered power); `None` for Rayleigh.
    pub rician_k_db: Option<f64>,
}

/// Where a phone is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Carry {
    /// In the hand or on a table.
    Hand,
    /// In a trouser or jacket pocket, against the body.
    Pocket,
    /// In a bag or backpack.
    Bag,
}

impl Carry {
    /// Every carry position.
    pub const ALL: [Carry; 3] = [Carry::Hand, Carry::Pocket, Carry::Bag];

    /// Mean extra loss of this position, dB (body absorption at 2.4 GHz).
    pub fn mean_loss_db(self) -> f64 {
        match self {
            Carry::Hand => 0.0,
            Carry::Pocket => 6.0,
            Carry::Bag => 9.0,
        }
    }
}

/// Mean loss when a human body stands between the two phones, dB.
pub const BODY_BETWEEN_LOSS_DB: f64 = 8.0;

/// Largest orientation (antenna pattern) loss drawn by [`LinkContext::random`], dB.
pub const MAX_ORIENTATION_LOSS_DB: f64 = 6.0;

/// A phone model: its true radiated power and receiver bias.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceModel {
    /// Model name (the key of the calibration registry).
    pub name: &'static str,
    /// True radiated TX power of its advertisements, dBm.
    pub tx_power_dbm: f64,
    /// True RSSI correction (GAEN's `rssi_correction`): reported RSSI + this = true RSSI.
    pub rssi_offset_db: f64,
    /// Whether the model is in the published calibration table (else: default calibration).
    pub in_calibration_table: bool,
    /// Whether the model has an ultra-wideband (UWB) radio: two such phones range each
    /// other to ±10 cm (see [`crate::fusion::RangingErrorModel::UWB`]).
    pub uwb: bool,
}

const fn model(name: &'static str, tx: f64, offset: f64, table: bool, uwb: bool) -> DeviceModel {
    DeviceModel {
        name,
        tx_power_dbm: tx,
        rssi_offset_db: offset,
        in_calibration_table: table,
        uwb,
    }
}

/// Sixteen synthetic phone models with distinct TX powers (−22…−2 dBm) and RSSI offsets
/// (−4…+13 dB), four of them missing from the calibration table; six (the flagships) have
/// UWB, so about 14 % of random pairs can range each other.
pub const DEVICE_MODELS: [DeviceModel; 16] = [
    model("aurora-a1", -8.0, 5.0, true, false),
    model("aurora-a2", -12.0, 9.0, true, false),
    model("aurora-x", -4.0, 1.0, true, true),
    model("boreal-5", -16.0, 11.0, true, false),
    model("boreal-6-pro", -10.0, 3.0, true, true),
    model("cirrus-lite", -20.0, 13.0, true, false),
    model("cirrus-max", -6.0, -2.0, true, true),
    model("delta-s", -14.0, 7.0, true, false),
    model("delta-s-plus", -11.0, 6.0, true, true),
    model("ember-2", -18.0, 10.0, true, false),
    model("ember-3", -9.0, 0.0, true, false),
    model("fjord-one", -2.0, -4.0, true, true),
    model("garnet-m", -15.0, 4.0, false, false),
    model("halo-go", -22.0, 12.0, false, false),
    model("indigo-t", -7.0, 8.0, false, true),
    model("juniper-z", -13.0, -1.0, false, false),
];

/// The table entry of a model name.
pub fn device_model(name: &str) -> Option<&'static DeviceModel> {
    DEVICE_MODELS.iter().find(|m| m.name == name)
}

/// Everything about one pair of devices that stays fixed for a session.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkContext {
    /// Where they meet.
    pub environment: Environment,
    /// The advertising phone.
    pub tx: DeviceModel,
    /// The scanning phone.
    pub rx: DeviceModel,
    /// Where the advertiser is carried.
    pub tx_carry: Carry,
    /// Where the scanner is carried.
    pub rx_carry: Carry,
    /// A body between the phones.
    pub body_between: bool,
    /// Antenna orientation loss, dB (≥ 0).
    pub orientation_loss_db: f64,
}

impl LinkContext {
    /// A line-of-sight pair in hand, no body, best orientation.
    pub fn line_of_sight(environment: Environment, tx: DeviceModel, rx: DeviceModel) -> Self {
        LinkContext {
            environment,
            tx,
            rx,
            tx_carry: Carry::Hand,
            rx_carry: Carry::Hand,
            body_between: false,
            orientation_loss_db: 0.0,
        }
    }

    /// A random context for the two models: environment, carry positions (hand 40 %,
    /// pocket 35 %, bag 25 %), body between (30 %), orientation loss uniform in
    /// 0…[`MAX_ORIENTATION_LOSS_DB`].
    pub fn random<R: RngCore + ?Sized>(tx: DeviceModel, rx: DeviceModel, rng: &mut R) -> Self {
        let env_index = Uniform::new(0, Environment::ALL.len()).sample(rng);
        let mut carry = || {
            let u: f64 = Uniform::new(0.0, 1.0).sample(rng);
            if u < 0.40 {
                Carry::Hand
            } else if u < 0.75 {
                Carry::Pocket
            } else {
                Carry::Bag
            }
        };
        let tx_carry = carry();
        let rx_carry = carry();
        let body_between = Uniform::new(0.0, 1.0).sample(rng) < 0.30;
        let orientation_loss_db = Uniform::new(0.0, MAX_ORIENTATION_LOSS_DB).sample(rng);
        LinkContext {
            environment: Environment::ALL[env_index],
            tx,
            rx,
            tx_carry,
            rx_carry,
            body_between,
            orientation_loss_db,
        }
    }

    /// Sum of the mean carry, body and orientation losses, dB.
    pub fn extra_loss_db(&self) -> f64 {
        self.tx_carry.mean_loss_db()
            + self.rx_carry.mean_loss_db()
            + if self.body_between {
                BODY_BETWEEN_LOSS_DB
            } else {
                0.0
            }
            + self.orientation_loss_db
    }
}

/// Path loss at `distance_m` for exponent `n`, dB (distances below 10 cm are taken as 10 cm).
pub fn path_loss_db(distance_m: f64, n: f64) -> f64 {
    REFERENCE_LOSS_1M_DB + 10.0 * n * distance_m.max(0.1).log10()
}

/// The true received power without shadowing or fading, dBm.
pub fn mean_rssi_dbm(distance_m: f64, ctx: &LinkContext) -> f64 {
    let p = ctx.environment.params();
    ctx.tx.tx_power_dbm - path_loss_db(distance_m, p.path_loss_exponent) - ctx.extra_loss_db()
}

/// Power gain of one packet through a unit-mean Rician channel with K factor `k_db`
/// (Rayleigh for `None`), dB.
pub fn fading_db<R: RngCore + ?Sized>(k_db: Option<f64>, rng: &mut R) -> f64 {
    let k = k_db.map_or(0.0, |k| 10f64.powf(k / 10.0));
    let los = (k / (k + 1.0)).sqrt();
    let scatter = (1.0 / (2.0 * (k + 1.0))).sqrt();
    let x: f64 = StandardNormal.sample(rng);
    let y: f64 = StandardNormal.sample(rng);
    let re = los + scatter * x;
    let im = scatter * y;
    // |h|² has mean 1; floor the deepest fades at −40 dB (a lost packet in practice)
    10.0 * (re * re + im * im).max(1e-4).log10()
}

fn normal<R: RngCore + ?Sized>(sigma: f64, rng: &mut R) -> f64 {
    let z: f64 = StandardNormal.sample(rng);
    sigma * z
}

fn report(rssi_true_dbm: f64, ctx: &LinkContext) -> i8 {
    let reported = (rssi_true_dbm - ctx.rx.rssi_offset_db).round();
    // i8 range of Android/iOS RSSI reports; the clamp also maps NaN to −127
    reported.clamp(-127.0, 20.0) as i8
}

/// One independent RSSI sample at `distance_m`: fresh shadowing and fading each call (for
/// sessions with correlated samples use [`generate_session`]).
pub fn sample_rssi<R: RngCore + ?Sized>(distance_m: f64, ctx: &LinkContext, rng: &mut R) -> i8 {
    let p = ctx.environment.params();
    let rssi = mean_rssi_dbm(distance_m, ctx)
        + normal(p.shadowing_sigma_db, rng)
        + fading_db(p.rician_k_db, rng);
    report(rssi, ctx)
}

/// How a session is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SessionConfig {
    /// Length of the session, s.
    pub duration_s: u64,
    /// Mean time between scans, s (GAEN: 3.5–5 min; our devices log about once a minute).
    pub scan_interval_s: u64,
    /// Uniform jitter of each scan time, ± s.
    pub scan_jitter_s: u64,
    /// Advertisements heard per scan (each with its own fading).
    pub adverts_per_scan: u32,
    /// Packets weaker than this are lost, dBm.
    pub sensitivity_dbm: f64,
    /// σ of the slow AR(1) shadowing term (people moving), dB.
    pub slow_sigma_db: f64,
    /// Correlation time of the slow term, s.
    pub slow_tau_s: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            duration_s: 600,
            scan_interval_s: 60,
            scan_jitter_s: 5,
            adverts_per_scan: 3,
            sensitivity_dbm: DEFAULT_SENSITIVITY_DBM,
            slow_sigma_db: 2.0,
            slow_tau_s: 90.0,
        }
    }
}

impl SessionConfig {
    /// Most scans a session may have (bounds the memory of one session).
    pub const MAX_SCANS: u64 = 10_000;

    fn validate(&self) -> Result<(), DistanceError> {
        if self.scan_interval_s == 0 {
            return Err(DistanceError::InvalidConfig("scan_interval_s must be > 0"));
        }
        if self.duration_s / self.scan_interval_s > Self::MAX_SCANS {
            return Err(DistanceError::InvalidConfig("more than MAX_SCANS scans"));
        }
        if self.scan_jitter_s * 2 >= self.scan_interval_s {
            return Err(DistanceError::InvalidConfig(
                "scan_jitter_s must be < scan_interval_s / 2",
            ));
        }
        if !(self.slow_tau_s > 0.0 && self.slow_sigma_db >= 0.0) {
            return Err(DistanceError::InvalidConfig(
                "slow_tau_s must be > 0, slow_sigma_db >= 0",
            ));
        }
        Ok(())
    }
}

/// A session's RSSI time series: `(unix time s, rssi dBm)` in time order, for a distance
/// that may change with time (`distance_at(t_s)` in metres). Lost packets are absent.
pub fn generate_session_with<R, F>(
    distance_at: F,
    ctx: &LinkContext,
    cfg: &SessionConfig,
    start_s: u64,
    rng: &mut R,
) -> Result<Vec<(u64, i8)>, DistanceError>
where
    R: RngCore + ?Sized,
    F: Fn(u64) -> f64,
{
    cfg.validate()?;
    let p = ctx.environment.params();
    let session_shadow = normal(p.shadowing_sigma_db, rng);
    let mut slow = normal(cfg.slow_sigma_db, rng);
    let mut out = Vec::new();
    let mut last_t = 0u64;
    let scans = cfg.duration_s / cfg.scan_interval_s + 1;
    for i in 0..scans {
        let nominal = i * cfg.scan_interval_s;
        let jitter = if cfg.scan_jitter_s == 0 {
            0
        } else {
            Uniform::new_inclusive(0, 2 * cfg.scan_jitter_s).sample(rng)
        };
        let offset = (nominal + jitter).saturating_sub(cfg.scan_jitter_s);
        if offset > cfg.duration_s {
            break;
        }
        let t = start_s + offset;
        // AR(1) with correlation time tau: s(t) = a·s(t−dt) + sqrt(1−a²)·σ·z
        let dt = (t.saturating_sub(last_t)) as f64;
        if i > 0 {
            let a = (-dt / cfg.slow_tau_s).exp();
            slow = a * slow + (1.0 - a * a).sqrt() * normal(cfg.slow_sigma_db, rng);
        }
        last_t = t;
        let d = distance_at(t);
        if !(d.is_finite() && d > 0.0) {
            return Err(DistanceError::InvalidMeasurement("distance must be > 0"));
        }
        let mean = mean_rssi_dbm(d, ctx) + session_shadow + slow;
        for _ in 0..cfg.adverts_per_scan {
            let rssi = mean + fading_db(p.rician_k_db, rng);
            if rssi >= cfg.sensitivity_dbm {
                out.push((t, report(rssi, ctx)));
            }
        }
    }
    Ok(out)
}

/// A session at a fixed distance (see [`generate_session_with`]).
pub fn generate_session<R: RngCore + ?Sized>(
    distance_m: f64,
    ctx: &LinkContext,
    cfg: &SessionConfig,
    start_s: u64,
    rng: &mut R,
) -> Result<Vec<(u64, i8)>, DistanceError> {
    generate_session_with(|_| distance_m, ctx, cfg, start_s, rng)
}

/// Normal draw with mean and σ (σ ≥ 0), for other modules' simulators.
pub fn gaussian<R: RngCore + ?Sized>(mean: f64, sigma: f64, rng: &mut R) -> f64 {
    match Normal::new(mean, sigma) {
        Ok(n) => n.sample(rng),
        Err(_) => mean,
    }
}

/// Uniform draw in `[lo, hi)` (returns `lo` when the range is empty).
pub fn uniform<R: RngCore + ?Sized>(lo: f64, hi: f64, rng: &mut R) -> f64 {
    if hi > lo {
        Uniform::new(lo, hi).sample(rng)
    } else {
        lo
    }
}
