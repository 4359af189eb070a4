//! Aerosol alerts at the edge: air-quality readings of the rooms an edge node monitors in,
//! per-room window risk and detector alarms, and the `aerosol.publish_alerts` alerts to
//! publish out.
//!
//! A pure state machine ([`AerosolEngine`]): the node registers each room
//! ([`AerosolEngine::add_room`]: volume, nominal air changes per hour if commissioned, the
//! venue's secret) and feeds it the room's readings in time order
//! ([`AerosolEngine::push`]). Readings are grouped into aligned windows
//! ([`WindowParams::window_s`], 15 min by default); when a window closes (a reading of a
//! later window arrives, or the node calls [`AerosolEngine::close_until`] because a device
//! went quiet) the engine scores it and answers with the alerts to publish. No clock, no
//! I/O: times come from the readings and the caller.
//!
//! # Per reading
//! The [`VentilationDetector`] (when the nominal ACH is known) and the [`ParticleDetector`]
//! see every reading as it arrives; the reading joins its window's buffer.
//!
//! # Per closed window
//! 1. **Ventilation failure.** The window is *failing* when the ventilation detector alarmed
//!    in it, or a failure was already active and the window's mean standardized CO₂ residual
//!    (reading − the detector's occupancy-expected prediction at nominal ACH) is still at
//!    least [`AerosolEdgeConfig::failure_clear_z`]; otherwise an active failure clears.
//! 2. **Risk.** The window's ACH is the room's nominal one, or — when the window is failing
//!    or the ACH is unknown — the one [`estimate_windows`] estimates from the window's CO₂
//!    (the nominal one is wrong then). The risk is the *carried-over conditional risk*: the
//!    probability of infection of a susceptible present for the whole window if one infector
//!    ([`WindowParams::quanta_per_h`]) had been present whenever the room was occupied, its
//!    quanta carried from window to window by the continuous box model
//!    ([`trustedge_aerosol::risk::CarryOver`], one per room; the window counts as occupied
//!    for the fraction of its readings that count someone). A room that stays occupied
//!    tends to the steady state E/(λV), so a badly ventilated room crosses the rule's
//!    threshold after a few windows where a well ventilated one never does (scored from
//!    clean air, a 15-minute window almost never reaches 1 %, whatever the ventilation).
//!    Windows without readings (device quiet, room closed) decay the carried quanta over
//!    the gap (from clean air again after more than [`MAX_CARRY_GAP_S`]); a window without
//!    any ACH keeps [`estimate_windows`]' Rudnick–Milton probability. [`AlertRule::validate`]
//!    checks the window.
//! 3. **Decision**, for an occupied window only (no one to alert in an empty room): a
//!    failing window → [`AlertKind::VentilationFailure`]; else a *confirmed* particle alarm
//!    in the window (its mean PM2.5 at least [`AerosolEdgeConfig::particle_confirm_ug_m3`]
//!    above the detector's baseline, so that a chart false alarm on noise or a glitch does
//!    not alert people) → [`AlertKind::ParticleSpike`]; else [`AlertRule::decide`] → an
//!    [`AlertKind::ElevatedRisk`] alert when the probability reaches the threshold.
//!    The alert carries the venue id of the window's UTC day ([`VenueId::derive`]), the
//!    window and the risk in ppm — nothing else (see `trustedge_contracts::aerosol`).
//!
//! Each (venue, start, end, kind) is emitted at most once (the engine keeps the emitted
//! ids for [`AerosolEdgeConfig::dedupe_retention_s`]); [`batches`] groups alerts into calls
//! of at most the contract's 64.
//!
//! # Devices
//! Presence is matched on the device ([`alerts_for_device`]): from the committed alerts and
//! the venue ids the device heard from beacons (or scanned check-in codes) with their
//! times, the alerts of a venue id it heard during the window. Since venue ids roll every
//! UTC day, a beacon heard on another day never matches.
//!
//! # Bounds
//! Rooms ≤ [`AerosolEdgeConfig::max_rooms`], readings per window ≤
//! [`MAX_READINGS_PER_WINDOW`], emitted ids pruned by age; readings are validated (finite,
//! physical ranges) and a reading older than the room's last is refused with
//! [`AerosolEdgeError::OutOfOrder`], never a panic.

use std::collections::{BTreeMap, BTreeSet};

use trustedge_aerosol::AerosolError;
use trustedge_aerosol::alert::{
    AerosolAlert, AlertRule, HeardBeacon, RiskWindow, VenueId, VenueSecret, was_present,
};
use trustedge_aerosol::detect::{
    AlarmKind, ParticleConfig, ParticleDetector, VentilationConfig, VentilationDetector,
};
use trustedge_aerosol::risk::{
    CarryOver, Reading, Room, WindowParams, conditional_probability, estimate_windows,
};
use trustedge_contracts::aerosol::{
    AerosolAlertTx, AerosolCall, AlertKind, DAY_S, MAX_ALERTS_PER_CALL, MAX_WINDOW_S,
};
use trustedge_types::Hash;

/// Most readings one window may hold (one a second for an hour).
pub const MAX_READINGS_PER_WINDOW: usize = 3600;
/// Longest room name (a local label: it never leaves the edge).
pub const MAX_ROOM_NAME_CHARS: usize = 64;
/// A room's carried concentration survives a gap without readings of at most this long
/// (decayed over it); after a longer gap the room starts again from clean air (at the
/// slowest loss rate, 0.92 h⁻¹, a day decays it by e⁻²²).
pub const MAX_CARRY_GAP_S: u64 = DAY_S;

/// Settings of the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AerosolEdgeConfig {
    /// The per-window estimator's assumptions (window length, emission, breathing, masks).
    pub params: WindowParams,
    /// The elevated-risk rule.
    pub rule: AlertRule,
    /// The particle detector of every room.
    pub particle: ParticleConfig,
    /// An active ventilation failure clears on the first window whose mean standardized
    /// CO₂ residual is below this.
    pub failure_clear_z: f64,
    /// A particle alarm alerts only when its window's mean PM2.5 is at least this far
    /// above the detector's baseline, µg/m³.
    pub particle_confirm_ug_m3: f64,
    /// Most rooms.
    pub max_rooms: usize,
    /// How long emitted alert ids are remembered for deduplication, seconds.
    pub dedupe_retention_s: u64,
}

impl Default for AerosolEdgeConfig {
    /// 15-minute windows, the estimator's defaults, a 1 % threshold, failures clearing below
    /// a mean residual of 1 σ, particle alarms confirmed 10 µg/m³ above baseline (≈ 7 σ of
    /// a low-cost sensor; WHO's 24-h guideline is 15), 1024 rooms, ids kept 15 days (the
    /// ledger keeps 14).
    fn default() -> Self {
        Self {
            params: WindowParams::default(),
            rule: AlertRule::default(),
            particle: ParticleConfig::default(),
            failure_clear_z: 1.0,
            particle_confirm_ug_m3: 10.0,
            max_rooms: 1024,
            dedupe_retention_s: 15 * DAY_S,
        }
    }
}

/// One monitored room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomConfig {
    /// Volume, m³.
    pub volume_m3: f64,
    /// Nominal (commissioned) air changes per hour, if known. Without it there is no
    /// ventilation-failure detection and the ACH is estimated from CO₂.
    pub nominal_ach_per_h: Option<f64>,
    /// The venue's secret, from which its per-day venue ids derive.
    pub secret: VenueSecret,
}

/// Errors of the engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AerosolEdgeError {
    /// A configuration value is out of range.
    #[error("invalid aerosol engine configuration: {0}")]
    InvalidConfig(String),
    /// The room name is empty, too long or not printable ASCII.
    #[error("room name {0:?} must be 1..=64 printable ASCII characters")]
    InvalidRoomName(String),
    /// The room is registered already.
    #[error("room {0:?} is already registered")]
    DuplicateRoom(String),
    /// [`AerosolEdgeConfig::max_rooms`] rooms are registered.
    #[error("{0} rooms are registered, the limit")]
    TooManyRooms(usize),
    /// No such room.
    #[error("no room {0:?}")]
    UnknownRoom(String),
    /// A reading is older than the room's previous one, or falls in a window already closed.
    #[error(
        "room {room:?}: reading at {t_s} s is before {after_s} s (readings must come in time order)"
    )]
    OutOfOrder {
        /// The room.
        room: String,
        /// The reading's time.
        t_s: u64,
        /// The earliest time accepted.
        after_s: u64,
    },
    /// A reading's value is not finite or outside its physical range.
    #[error("room {room:?}: {field} = {value} is not in {range}")]
    InvalidReading {
        /// The room.
        room: String,
        /// The field.
        field: &'static str,
        /// The value.
        value: f64,
        /// The accepted range.
        range: &'static str,
    },
    /// The open window holds [`MAX_READINGS_PER_WINDOW`] readings.
    #[error("room {0:?}: the open window holds {MAX_READINGS_PER_WINDOW} readings, the limit")]
    WindowFull(String),
    /// The risk model refused the window (should not happen after validation).
    #[error(transparent)]
    Model(#[from] AerosolError),
}

/// What the engine decided for one closed window (for the edge's logs and dashboard; not
/// published).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowDecision {
    /// Window start, Unix seconds.
    pub start_s: u64,
    /// Window end.
    pub end_s: u64,
    /// The probability used: the carried-over conditional risk (see the module docs).
    pub probability: f64,
    /// Mean occupancy.
    pub mean_occupancy: f64,
    /// Whether the window was failing.
    pub ventilation_failure: bool,
    /// Whether the particle detector alarmed in it.
    pub particle_spike: bool,
    /// The alert published for it, if any.
    pub alert: Option<AerosolAlertTx>,
}

#[derive(Debug, Clone)]
struct RoomState {
    cfg: RoomConfig,
    ventilation: Option<VentilationDetector>,
    /// CO₂ sensor noise the ventilation detector assumes, ppm.
    co2_noise_sd_ppm: f64,
    particle: ParticleDetector,
    /// Readings of the open window (all share one window index).
    window: Vec<Reading>,
    /// Sum and count of the standardized CO₂ residuals of the open window.
    residual_sum: f64,
    residual_n: u32,
    ventilation_alarm: bool,
    particle_alarm: bool,
    failure_active: bool,
    /// Readings before this are refused.
    accept_from_s: u64,
    /// Decisions of the last closed windows, newest last (bounded).
    recent: Vec<WindowDecision>,
    /// The hypothetical infector's quanta carried across windows (the conditional risk).
    carry: CarryOver,
    /// End of the last window `carry` was advanced over.
    carry_until_s: Option<u64>,
    /// ACH of the last window scored with one (the loss rate over gaps).
    carry_ach: Option<f64>,
}

/// Decisions kept per room for [`AerosolEngine::recent_decisions`] (a day of 15-min windows).
pub const RECENT_DECISIONS: usize = 96;

/// The edge's aerosol state machine; see the module docs.
#[derive(Debug, Clone)]
pub struct AerosolEngine {
    cfg: AerosolEdgeConfig,
    rooms: BTreeMap<String, RoomState>,
    /// Emitted alert ids by window start, for deduplication.
    emitted: BTreeSet<(u64, Hash)>,
}

impl AerosolEngine {
    /// An engine with no rooms.
    pub fn new(cfg: AerosolEdgeConfig) -> Result<Self, AerosolEdgeError> {
        let bad = |s: &str| Err(AerosolEdgeError::InvalidConfig(s.to_string()));
        if cfg.params.window_s == 0
            || cfg.params.window_s > MAX_WINDOW_S
            || !DAY_S.is_multiple_of(cfg.params.window_s)
        {
            return bad("window_s must divide a day (so no window crosses midnight)");
        }
        if cfg.params.window_s > cfg.rule.max_window_s {
            return bad("window_s is longer than the alert rule's max_window_s");
        }
        if !(cfg.rule.threshold.is_finite() && (0.0..=1.0).contains(&cfg.rule.threshold)) {
            return bad("rule threshold must be in [0, 1]");
        }
        if !cfg.failure_clear_z.is_finite() {
            return bad("failure_clear_z must be finite");
        }
        if !(cfg.particle_confirm_ug_m3.is_finite() && cfg.particle_confirm_ug_m3 >= 0.0) {
            return bad("particle_confirm_ug_m3 must be finite and >= 0");
        }
        if cfg.max_rooms == 0 {
            return bad("max_rooms must be at least 1");
        }
        // Validates the particle configuration once.
        ParticleDetector::new(cfg.particle)?;
        Ok(Self {
            cfg,
            rooms: BTreeMap::new(),
            emitted: BTreeSet::new(),
        })
    }

    /// Registers a room under a local name (never published).
    pub fn add_room(&mut self, name: &str, room: RoomConfig) -> Result<(), AerosolEdgeError> {
        if name.is_empty()
            || name.len() > MAX_ROOM_NAME_CHARS
            || !name.bytes().all(|c| (0x20..=0x7e).contains(&c))
        {
            return Err(AerosolEdgeError::InvalidRoomName(name.to_string()));
        }
        if self.rooms.contains_key(name) {
            return Err(AerosolEdgeError::DuplicateRoom(name.to_string()));
        }
        if self.rooms.len() >= self.cfg.max_rooms {
            return Err(AerosolEdgeError::TooManyRooms(self.rooms.len()));
        }
        // Validates volume and ACH as the estimator will.
        estimate_windows(
            &Room {
                volume_m3: room.volume_m3,
                ach_per_h: room.nominal_ach_per_h,
            },
            &[],
            &self.cfg.params,
        )?;
        let carry = CarryOver::for_params(room.volume_m3, &self.cfg.params)?;
        let co2_noise_sd_ppm = VentilationConfig::new(room.volume_m3, 1.0).noise_sd_ppm;
        let ventilation = match room.nominal_ach_per_h {
            Some(ach) => Some(VentilationDetector::new(VentilationConfig::new(
                room.volume_m3,
                ach,
            ))?),
            None => None,
        };
        self.rooms.insert(
            name.to_string(),
            RoomState {
                ventilation,
                co2_noise_sd_ppm,
                particle: ParticleDetector::new(self.cfg.particle)?,
                cfg: room,
                window: Vec::new(),
                residual_sum: 0.0,
                residual_n: 0,
                ventilation_alarm: false,
                particle_alarm: false,
                failure_active: false,
                accept_from_s: 0,
                recent: Vec::new(),
                carry,
                carry_until_s: None,
                carry_ach: None,
            },
        );
        Ok(())
    }

    /// The registered rooms' names.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// Whether a ventilation failure is active in `room` (as of its last closed window).
    pub fn failure_active(&self, room: &str) -> Option<bool> {
        self.rooms.get(room).map(|r| r.failure_active)
    }

    /// The decisions of `room`'s last closed windows (at most a day's), oldest first.
    pub fn recent_decisions(&self, room: &str) -> &[WindowDecision] {
        self.rooms.get(room).map_or(&[], |r| r.recent.as_slice())
    }

    /// Feeds one reading of `room`. Returns the alerts of the windows this reading closed
    /// (none while the window stays open). A refused reading changes nothing.
    pub fn push(
        &mut self,
        room: &str,
        reading: &Reading,
    ) -> Result<Vec<AerosolAlertTx>, AerosolEdgeError> {
        let window_s = self.cfg.params.window_s;
        let state = self
            .rooms
            .get(room)
            .ok_or_else(|| AerosolEdgeError::UnknownRoom(room.to_string()))?;
        validate_reading(room, reading)?;
        if reading.t_s < state.accept_from_s {
            return Err(AerosolEdgeError::OutOfOrder {
                room: room.to_string(),
                t_s: reading.t_s,
                after_s: state.accept_from_s,
            });
        }
        let same_window = state
            .window
            .first()
            .is_some_and(|r| r.t_s / window_s == reading.t_s / window_s);
        if same_window && state.window.len() >= MAX_READINGS_PER_WINDOW {
            return Err(AerosolEdgeError::WindowFull(room.to_string()));
        }
        let mut out = Vec::new();
        if !same_window {
            self.close_window(room, &mut out)?;
        }
        let state = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| AerosolEdgeError::UnknownRoom(room.to_string()))?;
        if let Some(det) = state.ventilation.as_mut() {
            if let Some(predicted) = det.predicted_co2_ppm(reading.t_s) {
                // About the detector's standardization: the reading's noise and the
                // prediction's (which carries the previous reading's, decayed a little).
                let sd = state.co2_noise_sd_ppm * 2f64.sqrt();
                state.residual_sum += ((reading.co2_ppm - predicted) / sd).clamp(-4.0, 4.0);
                state.residual_n += 1;
            }
            if det
                .push(reading)
                .is_some_and(|a| a.kind == AlarmKind::VentilationFailure)
            {
                state.ventilation_alarm = true;
            }
        }
        if state
            .particle
            .push(reading)
            .is_some_and(|a| a.kind == AlarmKind::ParticleSpike)
        {
            state.particle_alarm = true;
        }
        state.window.push(*reading);
        state.accept_from_s = reading.t_s;
        self.prune(reading.t_s);
        Ok(out)
    }

    /// Closes `room`'s open window if `now_s` is at or after its end (the device went quiet
    /// or the node is flushing); readings before the window's end are refused afterwards.
    pub fn close_until(
        &mut self,
        room: &str,
        now_s: u64,
    ) -> Result<Vec<AerosolAlertTx>, AerosolEdgeError> {
        let window_s = self.cfg.params.window_s;
        let state = self
            .rooms
            .get(room)
            .ok_or_else(|| AerosolEdgeError::UnknownRoom(room.to_string()))?;
        let mut out = Vec::new();
        let Some(first) = state.window.first() else {
            return Ok(out);
        };
        let end = (first.t_s / window_s)
            .saturating_add(1)
            .saturating_mul(window_s);
        if now_s >= end {
            self.close_window(room, &mut out)?;
            if let Some(s) = self.rooms.get_mut(room) {
                s.accept_from_s = s.accept_from_s.max(end);
            }
        }
        Ok(out)
    }

    /// Scores and decides the open window of `room`, appending its alert to `out`.
    fn close_window(
        &mut self,
        room: &str,
        out: &mut Vec<AerosolAlertTx>,
    ) -> Result<(), AerosolEdgeError> {
        let cfg = self.cfg;
        let state = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| AerosolEdgeError::UnknownRoom(room.to_string()))?;
        if state.window.is_empty() {
            return Ok(());
        }
        let readings = std::mem::take(&mut state.window);
        let mean_z = if state.residual_n > 0 {
            state.residual_sum / f64::from(state.residual_n)
        } else {
            0.0
        };
        let failing = state.ventilation.is_some()
            && (state.ventilation_alarm || (state.failure_active && mean_z >= cfg.failure_clear_z));
        let particle = state.particle_alarm && {
            let mean_pm =
                readings.iter().map(|r| r.pm25_ug_m3).sum::<f64>() / readings.len() as f64;
            state
                .particle
                .baseline_ug_m3()
                .is_some_and(|b| mean_pm - b >= cfg.particle_confirm_ug_m3)
        };
        state.failure_active = failing;
        state.residual_sum = 0.0;
        state.residual_n = 0;
        state.ventilation_alarm = false;
        state.particle_alarm = false;
        let model_room = Room {
            volume_m3: state.cfg.volume_m3,
            ach_per_h: if failing {
                None
            } else {
                state.cfg.nominal_ach_per_h
            },
        };
        let windows = estimate_windows(&model_room, &readings, &cfg.params)?;
        // All readings share one window, so there is exactly one.
        let Some(w) = windows.first() else {
            return Ok(());
        };
        let probability = carried_probability(state, &readings, w, &cfg.params)?;
        let day = trustedge_aerosol::alert::day_of(w.start_s);
        let venue = VenueId::derive(&state.cfg.secret, day);
        let risk = RiskWindow {
            venue,
            start_s: w.start_s,
            end_s: w.end_s,
            probability: probability.clamp(0.0, 1.0),
        };
        cfg.rule.validate(&risk)?;
        let occupied = w.mean_occupancy > 0.0;
        let kind = if !occupied {
            None
        } else if failing {
            Some(AlertKind::VentilationFailure)
        } else if particle {
            Some(AlertKind::ParticleSpike)
        } else if cfg.rule.decide(&risk)?.is_some() {
            Some(AlertKind::ElevatedRisk)
        } else {
            None
        };
        let alert = kind.map(|kind| AerosolAlertTx {
            venue: venue.0,
            start_s: w.start_s,
            end_s: w.end_s,
            risk_ppm: risk_ppm(risk.probability),
            kind,
        });
        let mut published = None;
        if let Some(a) = alert
            && self.emitted.insert((a.start_s, a.id()))
        {
            out.push(a);
            published = Some(a);
        }
        state.recent.push(WindowDecision {
            start_s: w.start_s,
            end_s: w.end_s,
            probability: risk.probability,
            mean_occupancy: w.mean_occupancy,
            ventilation_failure: failing,
            particle_spike: particle,
            alert: published,
        });
        if state.recent.len() > RECENT_DECISIONS {
            state.recent.remove(0);
        }
        Ok(())
    }

    /// Forgets emitted ids of windows older than the retention before `now_s`.
    fn prune(&mut self, now_s: u64) {
        let oldest = now_s.saturating_sub(self.cfg.dedupe_retention_s);
        while let Some(&(start, id)) = self.emitted.first() {
            if start >= oldest {
                break;
            }
            self.emitted.remove(&(start, id));
        }
    }

    /// Alert ids remembered for deduplication.
    pub fn remembered_alerts(&self) -> usize {
        self.emitted.len()
    }
}

/// The conditional risk of the closing window `w` of `state` (its `readings`): the carried
/// concentration is first decayed over the gap since the last window it covered (at the
/// last ACH used, else the nominal, else 0 — the slowest loss; reset after a gap longer
/// than [`MAX_CARRY_GAP_S`]), then advanced over the window with the room occupied for the
/// fraction of its readings that count someone, at the window's ACH. Without an ACH (none
/// commissioned and CO₂ too close to outdoor air) the window keeps [`estimate_windows`]'
/// probability (Rudnick–Milton from CO₂, which carries over by itself) and the state only
/// decays.
fn carried_probability(
    state: &mut RoomState,
    readings: &[Reading],
    w: &trustedge_aerosol::risk::WindowRisk,
    params: &WindowParams,
) -> Result<f64, AerosolEdgeError> {
    let hours = params.window_s as f64 / 3600.0;
    let slow_ach = state
        .carry_ach
        .or(state.cfg.nominal_ach_per_h)
        .unwrap_or(0.0);
    if let Some(until) = state.carry_until_s
        && w.start_s > until
    {
        let gap_s = w.start_s - until;
        if gap_s > MAX_CARRY_GAP_S {
            state.carry.reset();
        } else {
            state.carry.decay(slow_ach, gap_s as f64 / 3600.0)?;
        }
    }
    state.carry_until_s = Some(w.end_s);
    let Some(ach) = w.ach_per_h else {
        state.carry.decay(slow_ach, hours)?;
        return Ok(w.probability);
    };
    let occupied = readings.iter().filter(|r| r.occupancy > 0).count() as f64;
    let fraction = (occupied / readings.len().max(1) as f64).clamp(0.0, 1.0);
    let mean = state.carry.step(fraction, ach, hours)?;
    state.carry_ach = Some(ach);
    Ok(conditional_probability(
        mean,
        params.breathing_m3_per_h,
        hours,
        params.mask_in,
    )?)
}

/// Probability → parts per million, rounded, in 0..=1,000,000.
pub fn risk_ppm(probability: f64) -> u32 {
    if probability.is_nan() {
        return 0;
    }
    (probability.clamp(0.0, 1.0) * 1e6).round() as u32
}

fn validate_reading(room: &str, r: &Reading) -> Result<(), AerosolEdgeError> {
    let check = |field: &'static str, value: f64, lo: f64, hi: f64, range: &'static str| {
        if value.is_finite() && value >= lo && value <= hi {
            Ok(())
        } else {
            Err(AerosolEdgeError::InvalidReading {
                room: room.to_string(),
                field,
                value,
                range,
            })
        }
    };
    check("co2_ppm", r.co2_ppm, 0.0, 100_000.0, "[0, 100000] ppm")?;
    check(
        "pm25_ug_m3",
        r.pm25_ug_m3,
        0.0,
        10_000.0,
        "[0, 10000] µg/m³",
    )?;
    check(
        "temperature_c",
        r.temperature_c,
        -60.0,
        80.0,
        "[-60, 80] °C",
    )?;
    check("humidity_pct", r.humidity_pct, 0.0, 100.0, "[0, 100] %")?;
    check(
        "occupancy",
        f64::from(r.occupancy),
        0.0,
        10_000.0,
        "[0, 10000] people",
    )
}

/// Groups alerts into `aerosol.publish_alerts` calls of at most `max_per_call` (clamped to
/// 1..=64) alerts, in order.
pub fn batches(alerts: &[AerosolAlertTx], max_per_call: usize) -> Vec<AerosolCall> {
    alerts
        .chunks(max_per_call.clamp(1, MAX_ALERTS_PER_CALL))
        .map(|c| AerosolCall::PublishAlerts { alerts: c.to_vec() })
        .collect()
}

/// Device side: the committed alerts that concern a device, given the venue ids it heard
/// (beacons or check-in codes, with the device's times): those of a venue id it heard
/// within the window widened by `tolerance_s` ([`was_present`]). Nothing leaves the device.
pub fn alerts_for_device(
    alerts: &[AerosolAlertTx],
    heard: &[HeardBeacon],
    tolerance_s: u64,
) -> Vec<AerosolAlertTx> {
    alerts
        .iter()
        .filter(|a| {
            let alert = AerosolAlert {
                venue: VenueId(a.venue),
                start_s: a.start_s,
                end_s: a.end_s,
                probability: f64::from(a.risk_ppm) / 1e6,
            };
            was_present(&alert, heard, tolerance_s)
        })
        .copied()
        .collect()
}
