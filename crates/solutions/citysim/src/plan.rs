//! Daily schedules: visits covering each person's day, split into positioned stints, and
//! the co-presence sweep that yields pairwise overlaps with true distances.
//!
//! All times are multiples of 60 s. A person's visits of a day are consecutive and
//! non-overlapping (one place at a time); each visit is split into stints of 10–60 min at a
//! fixed 2-D position (own desk / seat, a venue table, a free position), so the distance of
//! two co-present people is constant over the overlap of two stints.

use serde::Serialize;

use crate::population::{Layout, PlaceKind, Population, Room};
use crate::rng::{chance, int, range, stream, tag};
use crate::{CityConfig, DAY_S, PersonId, RoomId};

/// One visit of a person to a room.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Visit {
    /// Who.
    pub person: PersonId,
    /// Where.
    pub room: RoomId,
    /// Unix time of arrival.
    pub start_s: u64,
    /// Unix time of departure (exclusive).
    pub end_s: u64,
}

/// Part of a visit spent at one position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stint {
    /// Who.
    pub person: PersonId,
    /// Where.
    pub room: RoomId,
    /// Start, Unix s.
    pub start_s: u64,
    /// End (exclusive), Unix s.
    pub end_s: u64,
    /// Position across the room, m.
    pub x: f32,
    /// Position along the room, m.
    pub y: f32,
}

impl Stint {
    /// Euclidean distance to another stint's position (at least 0.3 m: bodies do not
    /// overlap), m.
    pub fn distance_m(&self, other: &Stint) -> f64 {
        let dx = f64::from(self.x - other.x);
        let dy = f64::from(self.y - other.y);
        (dx * dx + dy * dy).sqrt().max(0.3)
    }
}

/// Two people within BLE range in one room over one constant-distance interval that does
/// not cross an hour boundary (`a < b`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EncounterPiece {
    /// One person (the smaller id).
    pub a: PersonId,
    /// The other.
    pub b: PersonId,
    /// The room.
    pub room: RoomId,
    /// Start, Unix s.
    pub start_s: u64,
    /// End (exclusive), Unix s.
    pub end_s: u64,
    /// True distance, m.
    pub distance_m: f32,
}

/// Everyone's day: visits by person, stints grouped by room (sorted by start).
#[derive(Clone, Debug)]
pub struct DayPlan {
    /// Day index (0-based).
    pub day: u32,
    /// All visits, by person then time.
    pub visits: Vec<Visit>,
    /// All stints, by room then start.
    pub stints: Vec<Stint>,
    /// For each room with stints: its id and its range in `stints`.
    pub rooms: Vec<(RoomId, std::ops::Range<usize>)>,
}

/// Day of week of day `day` (0 = Monday), from [`CityConfig::first_weekday`].
pub fn weekday(cfg: &CityConfig, day: u32) -> u32 {
    ((u64::from(cfg.first_weekday) + u64::from(day)) % 7) as u32
}

struct Builder {
    person: PersonId,
    day_start: u64,
    home: RoomId,
    acts: Vec<(u64, u64, RoomId)>,
}

impl Builder {
    fn act(&mut self, start_min: u64, dur_min: u64, room: RoomId) {
        self.acts.push((start_min, dur_min, room));
    }

    fn finish(mut self, out: &mut Vec<Visit>) {
        self.acts.sort_by_key(|a| a.0);
        let mut cursor = 0u64;
        let push = |room: RoomId, from: u64, to: u64, out: &mut Vec<Visit>| {
            if to > from {
                out.push(Visit {
                    person: self.person,
                    room,
                    start_s: self.day_start + from * 60,
                    end_s: self.day_start + to * 60,
                });
            }
        };
        for &(start, dur, room) in &self.acts {
            let start = start.max(cursor).min(1440);
            let end = (start + dur).min(1440);
            push(self.home, cursor, start, out);
            push(room, start, end, out);
            cursor = cursor.max(end);
        }
        push(self.home, cursor, 1440, out);
    }
}

fn pick(rng: &mut rand_chacha::ChaCha8Rng, v: &[RoomId]) -> Option<RoomId> {
    if v.is_empty() {
        None
    } else {
        Some(v[int(rng, 0, v.len() as u64 - 1) as usize])
    }
}

/// The visits of one person on one day (`isolated`: stays home all day).
pub fn person_day(
    pop: &Population,
    cfg: &CityConfig,
    seed: u64,
    person: PersonId,
    day: u32,
    isolated: bool,
    out: &mut Vec<Visit>,
) {
    let p = pop.person(person);
    let day_start = cfg.start_s + u64::from(day) * DAY_S;
    let mut b = Builder {
        person,
        day_start,
        home: p.home,
        acts: Vec::new(),
    };
    if isolated {
        b.finish(out);
        return;
    }
    let mut rng = stream(seed, tag::PLAN, u64::from(person.0), u64::from(day));
    let wd = weekday(cfg, day);
    let weekend = wd >= 5;
    if !weekend {
        match (p.child, p.daytime) {
            (true, Some(class)) => {
                let s = 480 + int(&mut rng, 0, 10);
                b.act(s, 900 + int(&mut rng, 0, 10) - s, class);
                if chance(&mut rng, 0.1)
                    && let Some(shop) = pick(&mut rng, &pop.shops)
                {
                    b.act(960 + int(&mut rng, 0, 60), int(&mut rng, 15, 40), shop);
                }
            }
            (false, Some(office)) => {
                let mut t = 420 + int(&mut rng, 0, 120);
                if let Some(bus) = p.bus {
                    let ride = int(&mut rng, 15, 40);
                    b.act(t, ride, bus);
                    t += ride;
                }
                let end = (t + 480 + int(&mut rng, 0, 90))
                    .saturating_sub(30)
                    .min(1200);
                if chance(&mut rng, 0.15) {
                    let lunch = 720 + int(&mut rng, 0, 30);
                    if let Some(r) = pick(&mut rng, &pop.restaurants) {
                        b.act(t, lunch.saturating_sub(t), office);
                        b.act(lunch, 45, r);
                        b.act(lunch + 45, end.saturating_sub(lunch + 45), office);
                    } else {
                        b.act(t, end - t, office);
                    }
                } else {
                    b.act(t, end.saturating_sub(t), office);
                }
                let mut t = end;
                if let Some(bus) = p.bus {
                    let ride = int(&mut rng, 15, 40);
                    b.act(t, ride, bus);
                    t += ride;
                }
                if chance(&mut rng, 0.3)
                    && let Some(shop) = pick(&mut rng, &pop.shops)
                {
                    let d = int(&mut rng, 15, 45);
                    b.act(t, d, shop);
                    t += d;
                }
                if chance(&mut rng, 0.1)
                    && let Some(gym) = pick(&mut rng, &pop.gyms)
                {
                    b.act(t, 60, gym);
                }
                if chance(&mut rng, 0.08)
                    && let Some(r) = pick(&mut rng, &pop.restaurants)
                {
                    b.act(1140 + int(&mut rng, 0, 60), 90, r);
                }
            }
            _ => errands(&mut b, &mut rng, pop, 0.5, 0.15, 0.1),
        }
    } else {
        errands(&mut b, &mut rng, pop, 0.5, 0.0, 0.15);
        if wd == 6
            && chance(&mut rng, 0.2)
            && let Some(w) = pick(&mut rng, &pop.worship)
        {
            b.act(600, 90, w);
        }
        if chance(&mut rng, 0.25)
            && let Some(r) = pick(&mut rng, &pop.restaurants)
        {
            b.act(1110 + int(&mut rng, 0, 90), int(&mut rng, 60, 120), r);
        }
    }
    b.finish(out);
}

fn errands(
    b: &mut Builder,
    rng: &mut rand_chacha::ChaCha8Rng,
    pop: &Population,
    shop: f64,
    lunch: f64,
    gym: f64,
) {
    if chance(rng, shop)
        && let Some(s) = pick(rng, &pop.shops)
    {
        b.act(540 + int(rng, 0, 480), int(rng, 15, 60), s);
    }
    if chance(rng, lunch)
        && let Some(r) = pick(rng, &pop.restaurants)
    {
        b.act(720 + int(rng, 0, 60), 60, r);
    }
    if chance(rng, gym)
        && let Some(g) = pick(rng, &pop.gyms)
    {
        b.act(600 + int(rng, 0, 540), 60, g);
    }
}

fn seat_position(room: &Room, seat: u64, rng: &mut rand_chacha::ChaCha8Rng) -> (f64, f64) {
    match room.layout {
        Layout::Free => (range(rng, 0.0, room.width_m), range(rng, 0.0, room.depth_m)),
        Layout::Tables {
            spacing_m,
            seats_per_table,
            seat_radius_m,
        } => {
            let cols = ((room.width_m / spacing_m).floor() as u64).max(1);
            let rows = ((room.depth_m / spacing_m).floor() as u64).max(1);
            let per = u64::from(seats_per_table.max(1));
            let seat = seat % (cols * rows * per);
            let table = seat / per;
            let (col, row) = (table % cols, table / cols);
            let angle = std::f64::consts::TAU * (seat % per) as f64 / per as f64;
            (
                (col as f64 + 0.5) * spacing_m + seat_radius_m * angle.cos(),
                (row as f64 + 0.5) * spacing_m + seat_radius_m * angle.sin(),
            )
        }
    }
}

fn seats(room: &Room) -> u64 {
    match room.layout {
        Layout::Free => 1,
        Layout::Tables {
            spacing_m,
            seats_per_table,
            ..
        } => {
            let cols = ((room.width_m / spacing_m).floor() as u64).max(1);
            let rows = ((room.depth_m / spacing_m).floor() as u64).max(1);
            cols * rows * u64::from(seats_per_table.max(1))
        }
    }
}

/// Splits a visit into positioned stints.
pub fn stints_of(pop: &Population, cfg: &CityConfig, seed: u64, v: &Visit, out: &mut Vec<Stint>) {
    let room = pop.room(v.room);
    let person = pop.person(v.person);
    let since_start = v.start_s.saturating_sub(cfg.start_s);
    let mut rng = stream(seed, tag::PLAN ^ 0x5700, u64::from(v.person.0), since_start);
    let own = person.daytime == Some(v.room);
    let visit_seat = int(&mut rng, 0, seats(room) - 1);
    let (lo, hi) = match room.kind {
        PlaceKind::Transit => (u64::MAX / 4, u64::MAX / 4),
        PlaceKind::Shop => (10, 30),
        _ => (15, 60),
    };
    let mut t = v.start_s;
    while t < v.end_s {
        let len = int(&mut rng, lo, hi).saturating_mul(60);
        let end = t.saturating_add(len).min(v.end_s);
        let seat = if own
            && chance(
                &mut rng,
                if room.kind == PlaceKind::School {
                    0.95
                } else {
                    0.85
                },
            ) {
            u64::from(person.seat)
        } else if own {
            int(&mut rng, 0, seats(room) - 1)
        } else {
            visit_seat
        };
        let (mut x, mut y) = seat_position(room, seat, &mut rng);
        if !matches!(room.layout, Layout::Free) {
            // small movement around the seat
            x += range(&mut rng, -0.15, 0.15);
            y += range(&mut rng, -0.15, 0.15);
        }
        out.push(Stint {
            person: v.person,
            room: v.room,
            start_s: t,
            end_s: end,
            x: x as f32,
            y: y as f32,
        });
        t = end;
    }
}

impl DayPlan {
    /// Everyone's plan of `day`; `isolated(person)` says who stays home.
    pub fn build(
        pop: &Population,
        cfg: &CityConfig,
        seed: u64,
        day: u32,
        isolated: impl Fn(PersonId) -> bool,
    ) -> DayPlan {
        let mut visits = Vec::with_capacity(pop.people.len() * 4);
        for p in &pop.people {
            person_day(pop, cfg, seed, p.id, day, isolated(p.id), &mut visits);
        }
        let mut stints = Vec::with_capacity(visits.len() * 4);
        for v in &visits {
            stints_of(pop, cfg, seed, v, &mut stints);
        }
        stints.sort_by_key(|s| (s.room, s.start_s, s.person));
        let mut rooms = Vec::new();
        let mut i = 0;
        while i < stints.len() {
            let room = stints[i].room;
            let mut j = i;
            while j < stints.len() && stints[j].room == room {
                j += 1;
            }
            rooms.push((room, i..j));
            i = j;
        }
        DayPlan {
            day,
            visits,
            stints,
            rooms,
        }
    }

    /// Calls `f(a, b, start_s, end_s)` for every pair of overlapping stints of one room
    /// (`stints` sorted by start), each unordered pair of stints once.
    pub fn overlaps(stints: &[Stint], mut f: impl FnMut(&Stint, &Stint, u64, u64)) {
        let mut active: Vec<usize> = Vec::new();
        for (k, s) in stints.iter().enumerate() {
            active.retain(|&a| stints[a].end_s > s.start_s);
            for &a in &active {
                let o = &stints[a];
                if o.person != s.person {
                    f(o, s, s.start_s, o.end_s.min(s.end_s));
                }
            }
            active.push(k);
        }
    }
}
