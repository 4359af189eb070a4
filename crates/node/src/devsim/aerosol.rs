//! Venue beacons and the phone's presence log (issue 5 §3): what a simulated phone needs to
//! receive aerosol alerts and, once confirmed, to report the alerted rooms it was in.
//!
//! A venue (a room with an air-quality device) has a [`VenueSecret`] held by its edge
//! operator's beacon device; the [`VenueBeacon`] advertises the day's [`VenueId`]
//! (`VenueId::derive(secret, day)`). A phone that hears it records the id in its
//! [`PresenceLog`]: one [`Visit`] per stretch of hearing one venue id (first and last
//! heard), for the last [`PRESENCE_RETENTION_S`] (14 days), at most
//! [`MAX_VISITS`] visits. Presence comes only from these rolling ids, never from a name or
//! a location, and never leaves the phone except as a confirmed case's
//! [`case_visits`](PresenceLog::case_visits) clipped to alerted windows.
//!
//! On an alert pushed over MQTT (`crate::aerosol_worker::parse_alert`), the phone decides
//! locally ([`PresenceLog::alerts_for_me`]) whether it was there: a visit of the alert's venue
//! id overlapping the alert's window widened by a tolerance on each side. This is
//! [`trustedge_aerosol::alert::was_present`] on the visit's whole interval rather than on
//! single sightings (a phone in the room from 9:00 to 17:00 was there at noon even if it
//! heard nothing between 11:58 and 12:16).

use std::collections::VecDeque;

use trustedge_aerosol::alert::{AerosolAlert, HeardBeacon, VenueId, VenueSecret, was_present};
use trustedge_contracts::aerosol::{AlertRecord, CaseVisit};
use trustedge_device::SignedReading;
use trustedge_types::Hash;

use super::{DevSimError, SimPhone};
use crate::aerosol_worker::{CASE_PRESENCE_KIND, encode_case_presence};

/// How long a phone keeps its visits, s (14 days, as GAEN keeps its keys).
pub const PRESENCE_RETENTION_S: u64 = 14 * 86_400;
/// Most visits a phone keeps (the oldest go first).
pub const MAX_VISITS: usize = 4096;
/// Two hearings of one venue id at most this far apart belong to one visit, s.
pub const VISIT_GAP_S: u64 = 15 * 60;

/// A venue's beacon: advertises the day's venue id.
#[derive(Clone, Debug)]
pub struct VenueBeacon {
    secret: VenueSecret,
}

impl VenueBeacon {
    /// The beacon of the venue with `secret` (its edge operator holds it).
    pub fn new(secret: VenueSecret) -> Self {
        VenueBeacon { secret }
    }

    /// The id it advertises at `t_s` (Unix seconds): the venue id of that UTC day.
    pub fn id_at(&self, t_s: u64) -> VenueId {
        VenueId::at(&self.secret, t_s)
    }

    /// What a phone in range hears at `t_s`.
    pub fn advertise(&self, t_s: u64) -> HeardBeacon {
        HeardBeacon {
            venue: self.id_at(t_s),
            t_s,
        }
    }
}

/// One stretch of hearing one venue id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    /// The venue id heard (that day's).
    pub venue: VenueId,
    /// First heard, Unix seconds.
    pub first_s: u64,
    /// Last heard, Unix seconds.
    pub last_s: u64,
}

impl Visit {
    /// Whether the visit overlaps `alert`'s window widened by `tolerance_s` on each side:
    /// [`was_present`] applied to the visit's interval.
    pub fn overlaps(&self, alert: &AerosolAlert, tolerance_s: u64) -> bool {
        if self.venue != alert.venue {
            return false;
        }
        let from = alert.start_s.saturating_sub(tolerance_s);
        let until = alert.end_s.saturating_add(tolerance_s);
        // Heard within the window at either end, or heard before and after it.
        let ends = [
            HeardBeacon {
                venue: self.venue,
                t_s: self.first_s,
            },
            HeardBeacon {
                venue: self.venue,
                t_s: self.last_s,
            },
        ];
        was_present(alert, &ends, tolerance_s) || (self.first_s < from && self.last_s >= until)
    }
}

/// A phone's venue visits of the last 14 days, bounded.
#[derive(Clone, Debug, Default)]
pub struct PresenceLog {
    visits: VecDeque<Visit>,
}

/// The ledger's alert record as the pure alert type (risk as a probability).
fn as_alert(a: &AlertRecord) -> AerosolAlert {
    AerosolAlert {
        venue: VenueId(a.venue),
        start_s: a.start_s,
        end_s: a.end_s,
        probability: f64::from(a.risk_ppm) / 1e6,
    }
}

impl PresenceLog {
    /// An empty log.
    pub fn new() -> Self {
        PresenceLog::default()
    }

    /// Records hearing `heard`: extends the latest visit of its venue id when `heard.t_s`
    /// lies between its first hearing and [`VISIT_GAP_S`] after its last, else starts a
    /// visit. Visits that ended more than 14 days before `heard.t_s`, and the oldest beyond
    /// [`MAX_VISITS`], are dropped.
    pub fn hear(&mut self, heard: HeardBeacon) {
        let t = heard.t_s;
        let open = self
            .visits
            .iter_mut()
            .rev()
            .find(|v| v.venue == heard.venue);
        match open {
            Some(v) if t >= v.first_s && t <= v.last_s.saturating_add(VISIT_GAP_S) => {
                v.last_s = v.last_s.max(t);
            }
            _ => {
                self.visits.push_back(Visit {
                    venue: heard.venue,
                    first_s: t,
                    last_s: t,
                });
                while self.visits.len() > MAX_VISITS {
                    self.visits.pop_front();
                }
            }
        }
        self.prune(t);
    }

    /// Drops visits that ended more than 14 days before `now_s`.
    pub fn prune(&mut self, now_s: u64) {
        let oldest = now_s.saturating_sub(PRESENCE_RETENTION_S);
        self.visits.retain(|v| v.last_s >= oldest);
    }

    /// The visits kept, oldest first.
    pub fn visits(&self) -> impl Iterator<Item = &Visit> {
        self.visits.iter()
    }

    /// Number of visits kept.
    pub fn len(&self) -> usize {
        self.visits.len()
    }

    /// Whether no visit is kept.
    pub fn is_empty(&self) -> bool {
        self.visits.is_empty()
    }

    /// The alerts (as pushed, [`AlertRecord`]) of rooms this phone was in during the
    /// window, widened by `tolerance_s` on each side. Decided on the phone alone.
    pub fn alerts_for_me<'a>(
        &self,
        alerts: impl IntoIterator<Item = &'a AlertRecord>,
        tolerance_s: u64,
    ) -> Vec<AlertRecord> {
        alerts
            .into_iter()
            .filter(|a| {
                let alert = as_alert(a);
                self.visits.iter().any(|v| v.overlaps(&alert, tolerance_s))
            })
            .cloned()
            .collect()
    }

    /// A confirmed case's visits to report: for each visit and each of `alerts` of its venue
    /// id that it overlaps, the visit clipped to the alert's window (minimal disclosure:
    /// nothing outside alerted windows), deduplicated, at most 64 (the contract's bound; the
    /// latest kept).
    pub fn case_visits<'a>(
        &self,
        alerts: impl IntoIterator<Item = &'a AlertRecord>,
    ) -> Vec<CaseVisit> {
        let mut out: Vec<CaseVisit> = Vec::new();
        let alerts: Vec<&AlertRecord> = alerts.into_iter().collect();
        for v in &self.visits {
            // The visit covers [first, last + 1): the last second heard is inside it.
            let (start, end) = (v.first_s, v.last_s.saturating_add(1));
            for a in alerts.iter().filter(|a| a.venue == v.venue.0) {
                let (s, e) = (start.max(a.start_s), end.min(a.end_s));
                if s < e {
                    let cv = CaseVisit {
                        venue: a.venue,
                        start_s: s,
                        end_s: e,
                    };
                    if !out.contains(&cv) {
                        out.push(cv);
                    }
                }
            }
        }
        out.sort_by_key(|v| (v.start_s, v.end_s, v.venue));
        let max = trustedge_contracts::aerosol::MAX_VISITS_PER_CALL;
        if out.len() > max {
            out.drain(..out.len() - max);
        }
        out
    }
}

impl SimPhone {
    /// The phone hears `beacon` at `t_s` (in range of the venue's beacon).
    pub fn hear_beacon(&mut self, beacon: &VenueBeacon, t_s: u64) {
        self.presence.hear(beacon.advertise(t_s));
    }

    /// The pushed alerts of rooms this phone was in during the window (±`tolerance_s`).
    pub fn aerosol_alerts_for_me<'a>(
        &self,
        alerts: impl IntoIterator<Item = &'a AlertRecord>,
        tolerance_s: u64,
    ) -> Vec<AlertRecord> {
        self.presence.alerts_for_me(alerts, tolerance_s)
    }

    /// Once confirmed (its diagnosis upload `upload`, the keys digest): the `case_presence`
    /// reading that asks the edge to relay its visits overlapping `alerts`, signed at
    /// `signed_at_ms`; `None` when no visit overlaps an alert.
    pub fn case_presence_reading<'a>(
        &mut self,
        upload: Hash,
        alerts: impl IntoIterator<Item = &'a AlertRecord>,
        signed_at_ms: u64,
    ) -> Result<Option<SignedReading>, DevSimError> {
        let visits = self.presence.case_visits(alerts);
        if visits.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.identity.sign_reading(
            signed_at_ms,
            CASE_PRESENCE_KIND,
            encode_case_presence(upload, visits),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_contracts::aerosol::AlertKind;

    fn record(venue: VenueId, start_s: u64, end_s: u64) -> AlertRecord {
        let tx = trustedge_contracts::aerosol::AerosolAlertTx {
            venue: venue.0,
            start_s,
            end_s,
            risk_ppm: 20_000,
            kind: AlertKind::VentilationFailure,
        };
        AlertRecord {
            id: tx.id(),
            venue: venue.0,
            start_s,
            end_s,
            risk_ppm: 20_000,
            kind: AlertKind::VentilationFailure,
            day: tx.day(),
            height: 1,
        }
    }

    const DAY: u64 = 20_000 * 86_400;

    #[test]
    fn visits_merge_split_and_match_alerts_inside_them() {
        let b = VenueBeacon::new(VenueSecret([1; 32]));
        let other = VenueBeacon::new(VenueSecret([2; 32]));
        let mut log = PresenceLog::new();
        // In the room 9:00–17:00, heard every 10 minutes.
        for m in (9 * 60..=17 * 60).step_by(10) {
            log.hear(b.advertise(DAY + m * 60));
        }
        assert_eq!(log.len(), 1);
        // Back at 19:00: a second visit.
        log.hear(b.advertise(DAY + 19 * 3600));
        assert_eq!(log.len(), 2);
        let noon = record(b.id_at(DAY), DAY + 12 * 3600, DAY + 12 * 3600 + 900);
        let night = record(b.id_at(DAY), DAY + 22 * 3600, DAY + 22 * 3600 + 900);
        let elsewhere = record(other.id_at(DAY), DAY + 12 * 3600, DAY + 12 * 3600 + 900);
        // Next day's id of the same venue at the same hour: another id.
        let next_day = record(
            b.id_at(DAY + 86_400),
            DAY + 86_400 + 12 * 3600,
            DAY + 86_400 + 12 * 3600 + 900,
        );
        let mine = log.alerts_for_me([&noon, &night, &elsewhere, &next_day], 0);
        assert_eq!(mine, vec![noon.clone()]);
        // The 19:00 sighting is within 3 h of the 22:00 alert only with that tolerance.
        assert_eq!(log.alerts_for_me([&night], 3 * 3600), vec![night.clone()]);
        // The case report is the visit clipped to the alert.
        let cv = log.case_visits([&noon, &elsewhere]);
        assert_eq!(
            cv,
            vec![CaseVisit {
                venue: b.id_at(DAY).0,
                start_s: noon.start_s,
                end_s: noon.end_s
            }]
        );
        assert!(log.case_visits([&night]).is_empty());
    }

    #[test]
    fn the_log_forgets_after_14_days() {
        let b = VenueBeacon::new(VenueSecret([1; 32]));
        let mut log = PresenceLog::new();
        log.hear(b.advertise(DAY));
        log.hear(b.advertise(DAY + 14 * 86_400));
        assert_eq!(log.len(), 2);
        log.hear(b.advertise(DAY + 14 * 86_400 + 1));
        assert_eq!(log.len(), 1);
        log.prune(DAY + 29 * 86_400);
        assert!(log.is_empty());
    }

    #[test]
    fn the_log_is_bounded() {
        let mut log = PresenceLog::new();
        for i in 0..(MAX_VISITS as u64 + 10) {
            let b = VenueBeacon::new(VenueSecret(Hash::sha256(&i.to_be_bytes()).0));
            log.hear(b.advertise(DAY + i));
        }
        assert_eq!(log.len(), MAX_VISITS);
        assert_eq!(log.visits().next().map(|v| v.first_s), Some(DAY + 10));
    }
}
