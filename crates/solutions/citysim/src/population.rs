//! The synthetic population: households, workplaces, schools, venues, bus lines, rooms.

use serde::Serialize;
use trustedge_distance::channel::{DEVICE_MODELS, DeviceModel, Environment};

use crate::rng::{chance, int, range, stream, tag};
use crate::{CityConfig, PersonId, RoomId};

/// What a room belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaceKind {
    /// A household's home.
    Home,
    /// An office room of a workplace.
    Work,
    /// A classroom.
    School,
    /// A shop.
    Shop,
    /// A restaurant.
    Restaurant,
    /// A gym.
    Gym,
    /// A place of worship.
    Worship,
    /// A bus (one vehicle per line).
    Transit,
}

impl PlaceKind {
    /// The BLE propagation environment of the kind.
    pub fn environment(self) -> Environment {
        match self {
            PlaceKind::Home => Environment::Home,
            PlaceKind::Work | PlaceKind::School => Environment::Office,
            PlaceKind::Shop | PlaceKind::Restaurant | PlaceKind::Gym | PlaceKind::Worship => {
                Environment::Retail
            }
            PlaceKind::Transit => Environment::Transit,
        }
    }
}

/// How positions are drawn in a room.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Layout {
    /// Anywhere in the floor area (shops, gyms, homes).
    Free,
    /// Seats around tables on a grid: `seats_per_table` seats within `seat_radius_m` of a
    /// table centre, tables `spacing_m` apart (offices, classrooms, restaurants, pews, bus).
    Tables {
        /// Distance between table centres, m.
        spacing_m: f64,
        /// Seats per table.
        seats_per_table: u32,
        /// Distance of a seat from its table centre, m.
        seat_radius_m: f64,
    },
}

/// A place: a household, workplace room, classroom, venue or bus line (one room each).
pub type Place = Room;

/// One room.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Room {
    /// Its id.
    pub id: RoomId,
    /// What it is.
    pub kind: PlaceKind,
    /// Floor width, m.
    pub width_m: f64,
    /// Floor depth, m.
    pub depth_m: f64,
    /// Volume, m³.
    pub volume_m3: f64,
    /// True air changes per hour.
    pub ach_per_h: f64,
    /// Whether it is badly ventilated.
    pub badly_ventilated: bool,
    /// Whether it has an air-quality sensor.
    pub sensor: bool,
    /// Position model.
    pub layout: Layout,
}

/// One person.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Person {
    /// Its id.
    pub id: PersonId,
    /// Home room.
    pub home: RoomId,
    /// Office room (working adults) or classroom (children).
    pub daytime: Option<RoomId>,
    /// Seat index in the daytime room.
    pub seat: u32,
    /// A child (goes to school).
    pub child: bool,
    /// Bus line used to commute, if any.
    pub bus: Option<RoomId>,
    /// Index into [`DEVICE_MODELS`].
    pub phone: u8,
    /// Runs the tracing app.
    pub app: bool,
}

impl Person {
    /// The phone model.
    pub fn device_model(&self) -> DeviceModel {
        DEVICE_MODELS[usize::from(self.phone) % DEVICE_MODELS.len()]
    }
}

/// The whole population.
#[derive(Clone, Debug, Serialize)]
pub struct Population {
    /// People, by id.
    pub people: Vec<Person>,
    /// Rooms, by id.
    pub rooms: Vec<Room>,
    /// Shops.
    pub shops: Vec<RoomId>,
    /// Restaurants.
    pub restaurants: Vec<RoomId>,
    /// Gyms.
    pub gyms: Vec<RoomId>,
    /// Places of worship.
    pub worship: Vec<RoomId>,
    /// Bus lines.
    pub buses: Vec<RoomId>,
}

/// Household sizes 1..=6 (cumulative probabilities, EU-like).
const HOUSEHOLD_CDF: [f64; 6] = [0.28, 0.61, 0.77, 0.91, 0.97, 1.0];

impl Population {
    /// Builds the population of `cfg` from `seed`.
    pub fn build(cfg: &CityConfig, seed: u64) -> Population {
        let mut rng = stream(seed, tag::POPULATION, 0, 0);
        let mut rooms: Vec<Room> = Vec::new();
        let add_room = |rooms: &mut Vec<Room>,
                        rng: &mut rand_chacha::ChaCha8Rng,
                        kind: PlaceKind,
                        w: f64,
                        d: f64,
                        h: f64,
                        ach: (f64, f64),
                        layout: Layout| {
            let bad = chance(rng, cfg.bad_ventilation_fraction);
            let mut a = range(rng, ach.0, ach.1);
            if bad {
                a *= 0.15;
            }
            let sensor = kind != PlaceKind::Home && chance(rng, cfg.sensor_fraction);
            let id = RoomId(u32::try_from(rooms.len()).unwrap_or(u32::MAX));
            rooms.push(Room {
                id,
                kind,
                width_m: w,
                depth_m: d,
                volume_m3: w * d * h,
                ach_per_h: a,
                badly_ventilated: bad,
                sensor,
                layout,
            });
            id
        };
        let desk = Layout::Tables {
            spacing_m: 3.5,
            seats_per_table: 4,
            seat_radius_m: 0.8,
        };
        // households
        let n = cfg.population as usize;
        let mut people: Vec<Person> = Vec::with_capacity(n);
        while people.len() < n {
            let u = crate::rng::u01(&mut rng);
            let size = HOUSEHOLD_CDF.iter().position(|c| u < *c).unwrap_or(5) + 1;
            let w = range(&mut rng, 6.0, 10.0);
            let home = add_room(
                &mut rooms,
                &mut rng,
                PlaceKind::Home,
                w,
                7.0,
                2.6,
                (0.3, 1.0),
                Layout::Free,
            );
            for k in 0..size {
                if people.len() >= n {
                    break;
                }
                let child = size >= 3 && k >= 2 && chance(&mut rng, 0.8);
                let id = PersonId(u32::try_from(people.len()).unwrap_or(u32::MAX));
                people.push(Person {
                    id,
                    home,
                    daytime: None,
                    seat: 0,
                    child,
                    bus: None,
                    phone: u8::try_from(int(&mut rng, 0, DEVICE_MODELS.len() as u64 - 1))
                        .unwrap_or(0),
                    app: chance(&mut rng, cfg.app_adoption),
                });
            }
        }
        // offices (10 desks) and classrooms (24 seats), filled in a shuffled order
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, &mut rng);
        let (mut office, mut office_fill) = (None, 0u32);
        let (mut class, mut class_fill) = (None, 0u32);
        for &i in &order {
            if people[i].child {
                if class.is_none() || class_fill >= 24 {
                    let layout = Layout::Tables {
                        spacing_m: 1.7,
                        seats_per_table: 1,
                        seat_radius_m: 0.0,
                    };
                    class = Some(add_room(
                        &mut rooms,
                        &mut rng,
                        PlaceKind::School,
                        9.0,
                        7.0,
                        3.0,
                        (1.0, 4.0),
                        layout,
                    ));
                    class_fill = 0;
                }
                people[i].daytime = class;
                people[i].seat = class_fill;
                class_fill += 1;
            } else if chance(&mut rng, 0.7) {
                if office.is_none() || office_fill >= 10 {
                    office = Some(add_room(
                        &mut rooms,
                        &mut rng,
                        PlaceKind::Work,
                        12.0,
                        8.0,
                        3.0,
                        (2.0, 6.0),
                        desk,
                    ));
                    office_fill = 0;
                }
                people[i].daytime = office;
                people[i].seat = office_fill;
                office_fill += 1;
            }
        }
        let count = |per: u32| (cfg.population / per).max(1);
        let mut venues =
            |kind: PlaceKind, k: u32, w: f64, d: f64, h: f64, ach: (f64, f64), layout: Layout| {
                (0..k)
                    .map(|_| add_room(&mut rooms, &mut rng, kind, w, d, h, ach, layout))
                    .collect::<Vec<_>>()
            };
        let shops = venues(
            PlaceKind::Shop,
            count(200),
            20.0,
            15.0,
            4.0,
            (2.0, 5.0),
            Layout::Free,
        );
        let table = Layout::Tables {
            spacing_m: 2.6,
            seats_per_table: 4,
            seat_radius_m: 0.6,
        };
        let restaurants = venues(
            PlaceKind::Restaurant,
            count(250),
            15.0,
            10.0,
            3.5,
            (3.0, 8.0),
            table,
        );
        let gyms = venues(
            PlaceKind::Gym,
            count(800),
            20.0,
            15.0,
            5.0,
            (4.0, 8.0),
            Layout::Free,
        );
        let pews = Layout::Tables {
            spacing_m: 2.2,
            seats_per_table: 6,
            seat_radius_m: 1.5,
        };
        let worship = venues(
            PlaceKind::Worship,
            count(1500),
            25.0,
            18.0,
            8.0,
            (1.0, 3.0),
            pews,
        );
        let seats = Layout::Tables {
            spacing_m: 1.6,
            seats_per_table: 2,
            seat_radius_m: 0.35,
        };
        let buses = venues(
            PlaceKind::Transit,
            count(300),
            2.5,
            12.0,
            2.4,
            (6.0, 12.0),
            seats,
        );
        for p in &mut people {
            if p.daytime.is_some() && chance(&mut rng, 0.3) {
                p.bus = Some(buses[int(&mut rng, 0, buses.len() as u64 - 1) as usize]);
            }
        }
        Population {
            people,
            rooms,
            shops,
            restaurants,
            gyms,
            worship,
            buses,
        }
    }

    /// The room of an id.
    pub fn room(&self, id: RoomId) -> &Room {
        &self.rooms[id.0 as usize]
    }

    /// The person of an id.
    pub fn person(&self, id: PersonId) -> &Person {
        &self.people[id.0 as usize]
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut rand_chacha::ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = int(rng, 0, i as u64) as usize;
        v.swap(i, j);
    }
}
