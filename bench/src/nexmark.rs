//! A Nexmark event generator: persons, auctions and bids, deterministic by seed.
//!
//! It follows the structure of the reference generator (Apache Beam's / Flink's Nexmark
//! `GeneratorConfig`, `PersonGenerator`, `AuctionGenerator`, `BidGenerator`):
//!
//! - **Mix.** Event `n` is a person, an auction or a bid by `n % 50`: 1 person, 3 auctions,
//!   46 bids in every 50 events (the standard 1:3:46 proportions).
//! - **Ids.** Persons and auctions are numbered from 1000 in the order they are created,
//!   so event `n` knows the newest person and auction id without any shared state.
//! - **Hot auctions and bidders.** A bid goes to a "hot" auction (the newest multiple of
//!   `hot_auction_ratio`) with probability `1 - 1/hot_auction_ratio` (default 2, so half
//!   the bids), otherwise to one of the ~100 auctions still in flight; its bidder is a hot
//!   person with probability `1 - 1/hot_bidder_ratio` (default 4), otherwise one of the
//!   1000 most recent persons. Sellers of auctions are skewed the same way.
//! - **Prices** are `round(10^(u*6) * 100)` for uniform `u` (log-uniform, 100 to 10^8).
//! - **Channels**: half the bids come from 4 hot channels (Google, Facebook, Baidu,
//!   Apple), the rest from `channel-0` … `channel-9999`.
//! - **Event time.** Event `n`'s nominal time is `base_time_ms + n / first_event_rate`
//!   (default 10,000 events per second of event time, so 1 M events span 100 s). Its
//!   `dateTime` is the nominal time minus a uniform delay in `[0, max_delay_ms]`
//!   (default 500 ms): events arrive out of order by up to that much. Queries allow 1 s of
//!   out-of-orderness, so no event is late.
//!
//! Every random draw for event `n` comes from a SplitMix64 stream seeded by
//! `(seed, n)`, so an event depends only on the seed and its number: the generator can be
//! used as an in-process source ([`Generator`] is an `Iterator`), split across threads,
//! or used to fill a Kafka topic (`rivulet-bench fill`), and produces the same events.
//!
//! **Format.** One topic, one JSON object per event with a `type` field (`person`,
//! `auction`, `bid`); every event has `dateTime` in epoch milliseconds. Bids carry
//! `auction`, `bidder`, `price`, `channel`, `url`, `dateTime` and the constant `all: 1`,
//! which the q7-style query uses as its key (a global aggregate still needs a key field).
//!
//! **The Flink comparison's bids** ([`UniformBids`]): bids only, one per millisecond of
//! event time, in order, with the auction uniform over 10,000 ids: a high-cardinality
//! tumbling aggregation with many results, the query Flink users start with.

/// Persons in every [`TOTAL_PROPORTION`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions in every [`TOTAL_PROPORTION`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids in every [`TOTAL_PROPORTION`] events.
pub const BID_PROPORTION: u64 = 46;
pub const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

pub const FIRST_PERSON_ID: u64 = 1000;
pub const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
/// Auctions a non-hot bid may go to: the newest this many, plus a few not yet created.
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const AUCTION_ID_LEAD: u64 = 10;
/// Persons a non-hot bidder or seller may be: the newest this many, plus a few.
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const PERSON_ID_LEAD: u64 = 10;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const CHANNELS_NUMBER: u64 = 10_000;
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// Generator settings; [`Config::default`] is the standard configuration with seed 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub seed: u64,
    /// Event time of event 0 (epoch ms). Default 2024-01-01T00:00:00Z.
    pub base_time_ms: i64,
    /// Events per second of event time.
    pub first_event_rate: u64,
    /// Largest out-of-order delay subtracted from an event's nominal time.
    pub max_delay_ms: u64,
    pub hot_auction_ratio: u64,
    pub hot_bidder_ratio: u64,
    pub hot_seller_ratio: u64,
    pub hot_channel_ratio: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 0,
            base_time_ms: 1_704_067_200_000,
            first_event_rate: 10_000,
            max_delay_ms: 500,
            hot_auction_ratio: 2,
            hot_bidder_ratio: 4,
            hot_seller_ratio: 4,
            hot_channel_ratio: 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub id: u64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: &'static str,
    pub state: &'static str,
    pub date_time: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auction {
    pub id: u64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: u64,
    pub reserve: u64,
    pub date_time: i64,
    pub expires: i64,
    pub seller: u64,
    pub category: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bid {
    pub auction: u64,
    pub bidder: u64,
    pub price: u64,
    pub channel: String,
    pub url: String,
    pub date_time: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

impl Event {
    /// The value of the `type` field: `person`, `auction` or `bid`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Person(_) => "person",
            Event::Auction(_) => "auction",
            Event::Bid(_) => "bid",
        }
    }

    /// Event time, epoch ms.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The event as one JSON object (no string here needs escaping).
    pub fn to_json(&self) -> String {
        match self {
            Event::Person(p) => format!(
                r#"{{"type":"person","id":{},"name":"{}","emailAddress":"{}","creditCard":"{}","city":"{}","state":"{}","dateTime":{}}}"#,
                p.id, p.name, p.email_address, p.credit_card, p.city, p.state, p.date_time
            ),
            Event::Auction(a) => format!(
                r#"{{"type":"auction","id":{},"itemName":"{}","description":"{}","initialBid":{},"reserve":{},"dateTime":{},"expires":{},"seller":{},"category":{}}}"#,
                a.id,
                a.item_name,
                a.description,
                a.initial_bid,
                a.reserve,
                a.date_time,
                a.expires,
                a.seller,
                a.category
            ),
            Event::Bid(b) => format!(
                r#"{{"type":"bid","auction":{},"bidder":{},"price":{},"channel":"{}","url":"{}","dateTime":{},"all":1}}"#,
                b.auction, b.bidder, b.price, b.channel, b.url, b.date_time
            ),
        }
    }
}

/// SplitMix64: tiny, fast, and fixed here so events never change with a crate version.
struct Rng(u64);

impl Rng {
    fn for_event(seed: u64, n: u64) -> Rng {
        let mut r = Rng(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn word(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| (b'a' + self.below(26) as u8) as char)
            .collect()
    }
}

/// The newest person id (0-based) at event `n`.
fn last_base0_person_id(n: u64) -> u64 {
    let epoch = n / TOTAL_PROPORTION;
    let mut offset = n % TOTAL_PROPORTION;
    if offset >= PERSON_PROPORTION {
        // After this epoch's persons: its last one.
        offset = PERSON_PROPORTION - 1;
    }
    epoch * PERSON_PROPORTION + offset
}

/// The newest auction id (0-based) at event `n`.
fn last_base0_auction_id(n: u64) -> u64 {
    let mut epoch = n / TOTAL_PROPORTION;
    let mut offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        // Before this epoch's first auction: the previous epoch's last one.
        epoch = epoch.saturating_sub(1);
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

fn next_base0_person_id(n: u64, rng: &mut Rng) -> u64 {
    let num_people = last_base0_person_id(n) + 1;
    let active = num_people.min(NUM_ACTIVE_PEOPLE);
    num_people - active + rng.below(active + PERSON_ID_LEAD)
}

fn next_base0_auction_id(n: u64, rng: &mut Rng) -> u64 {
    let max_auction = last_base0_auction_id(n);
    let min_auction = max_auction.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min_auction + rng.below(max_auction - min_auction + 1 + AUCTION_ID_LEAD)
}

fn next_price(rng: &mut Rng) -> u64 {
    (10f64.powf(rng.unit() * 6.0) * 100.0).round() as u64
}

/// A bid's channel and url: a hot channel with probability `1 - 1/hot_ratio`.
fn next_channel(rng: &mut Rng, hot_ratio: u64) -> (String, String) {
    if rng.below(hot_ratio.max(1)) > 0 {
        let i = rng.below(HOT_CHANNELS.len() as u64) as usize;
        (
            HOT_CHANNELS[i].to_string(),
            format!(
                "https://www.nexmark.com/{}/item.htm?query=1",
                HOT_CHANNELS[i]
            ),
        )
    } else {
        let ch = rng.below(CHANNELS_NUMBER);
        (
            format!("channel-{ch}"),
            format!("https://www.nexmark.com/{}/item.htm?query=1", rng.word(5)),
        )
    }
}

/// The Flink comparison's events: bids only, in order, one per millisecond of event time
/// from `base_time_ms`, each for an auction drawn uniformly from `auctions` ids (numbered
/// from [`FIRST_AUCTION_ID`]); bidder, price, channel and url are drawn as for Nexmark's
/// bids. Bid `n` depends only on the seed and `n`, like [`Generator::event`].
#[derive(Clone, Debug, PartialEq)]
pub struct UniformBids {
    pub seed: u64,
    pub auctions: u64,
    pub base_time_ms: i64,
}

impl Default for UniformBids {
    fn default() -> Self {
        UniformBids {
            seed: 0,
            auctions: 10_000,
            base_time_ms: Config::default().base_time_ms,
        }
    }
}

impl UniformBids {
    /// Bid number `n`, at `base_time_ms + n`.
    pub fn bid(&self, n: u64) -> Bid {
        let mut rng = Rng::for_event(self.seed, n);
        let auction = FIRST_AUCTION_ID + rng.below(self.auctions.max(1));
        let bidder = FIRST_PERSON_ID + rng.below(NUM_ACTIVE_PEOPLE);
        let price = next_price(&mut rng);
        let (channel, url) = next_channel(&mut rng, Config::default().hot_channel_ratio);
        Bid {
            auction,
            bidder,
            price,
            channel,
            url,
            date_time: self.base_time_ms + n as i64,
        }
    }
}

/// Generates events `0, 1, 2, …` of one configuration; see the module docs.
#[derive(Clone, Debug)]
pub struct Generator {
    config: Config,
    next: u64,
}

impl Generator {
    pub fn new(config: Config) -> Generator {
        Generator { config, next: 0 }
    }

    /// Starts at event `n` (to split a run across threads or resume it).
    pub fn starting_at(config: Config, n: u64) -> Generator {
        Generator { config, next: n }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Event number `n`: a pure function of the configuration and `n`.
    pub fn event(&self, n: u64) -> Event {
        let c = &self.config;
        let mut rng = Rng::for_event(c.seed, n);
        let nominal_ms =
            c.base_time_ms + (n as u128 * 1000 / c.first_event_rate.max(1) as u128) as i64;
        let date_time = nominal_ms - rng.below(c.max_delay_ms + 1) as i64;
        let rem = n % TOTAL_PROPORTION;
        if rem < PERSON_PROPORTION {
            let id = last_base0_person_id(n) + FIRST_PERSON_ID;
            let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
            let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
            let credit_card = format!(
                "{:04} {:04} {:04} {:04}",
                rng.below(10_000),
                rng.below(10_000),
                rng.below(10_000),
                rng.below(10_000)
            );
            Event::Person(Person {
                id,
                name: format!("{first} {last}"),
                email_address: format!("{}@{}.com", rng.word(7), rng.word(5)),
                credit_card,
                city: US_CITIES[rng.below(US_CITIES.len() as u64) as usize],
                state: US_STATES[rng.below(US_STATES.len() as u64) as usize],
                date_time,
            })
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            let id = last_base0_auction_id(n) + FIRST_AUCTION_ID;
            let seller = if rng.below(c.hot_seller_ratio.max(1)) > 0 {
                (last_base0_person_id(n) / c.hot_seller_ratio) * c.hot_seller_ratio
            } else {
                next_base0_person_id(n, &mut rng)
            } + FIRST_PERSON_ID;
            let initial_bid = next_price(&mut rng);
            let reserve = initial_bid + next_price(&mut rng);
            Event::Auction(Auction {
                id,
                item_name: rng.word(10),
                description: rng.word(20),
                initial_bid,
                reserve,
                date_time,
                expires: date_time + 1000 + rng.below(20_000) as i64,
                seller,
                category: FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES),
            })
        } else {
            let auction = if rng.below(c.hot_auction_ratio.max(1)) > 0 {
                (last_base0_auction_id(n) / c.hot_auction_ratio) * c.hot_auction_ratio
            } else {
                next_base0_auction_id(n, &mut rng)
            } + FIRST_AUCTION_ID;
            let bidder = if rng.below(c.hot_bidder_ratio.max(1)) > 0 {
                (last_base0_person_id(n) / c.hot_bidder_ratio) * c.hot_bidder_ratio + 1
            } else {
                next_base0_person_id(n, &mut rng)
            } + FIRST_PERSON_ID;
            let price = next_price(&mut rng);
            let (channel, url) = next_channel(&mut rng, c.hot_channel_ratio);
            Event::Bid(Bid {
                auction,
                bidder,
                price,
                channel,
                url,
                date_time,
            })
        }
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let e = self.event(self.next);
        self.next += 1;
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn uniform_bids_are_in_order_and_spread_over_every_auction() {
        let bids = UniformBids::default();
        let mut per_auction: HashMap<u64, u64> = HashMap::new();
        for n in 0..100_000 {
            let b = bids.bid(n);
            assert_eq!(b.date_time, bids.base_time_ms + n as i64);
            assert_eq!(b, bids.bid(n));
            *per_auction.entry(b.auction).or_default() += 1;
        }
        assert_eq!(per_auction.len(), 10_000);
        assert!(per_auction.keys().all(|a| (1000..11_000).contains(a)));
        // 10 per auction on average: uniform, so none is far off.
        assert!(per_auction.values().all(|&c| (1..=35).contains(&c)));
        let other = UniformBids {
            seed: 1,
            ..UniformBids::default()
        };
        assert_ne!(bids.bid(5), other.bid(5));
    }

    #[test]
    fn mix_is_1_3_46() {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for e in Generator::new(Config::default()).take(50_000) {
            *counts.entry(e.kind()).or_default() += 1;
        }
        assert_eq!(counts["person"], 1_000);
        assert_eq!(counts["auction"], 3_000);
        assert_eq!(counts["bid"], 46_000);
    }

    #[test]
    fn deterministic_by_seed() {
        let a: Vec<String> = Generator::new(Config::default())
            .take(2_000)
            .map(|e| e.to_json())
            .collect();
        let b: Vec<String> = Generator::new(Config::default())
            .take(2_000)
            .map(|e| e.to_json())
            .collect();
        assert_eq!(a, b);
        let other = Config {
            seed: 7,
            ..Config::default()
        };
        let c: Vec<String> = Generator::new(other)
            .take(2_000)
            .map(|e| e.to_json())
            .collect();
        assert_ne!(a, c);
        // Starting in the middle gives the same events.
        let tail: Vec<String> = Generator::starting_at(Config::default(), 1_500)
            .take(500)
            .map(|e| e.to_json())
            .collect();
        assert_eq!(&a[1_500..], &tail[..]);
    }

    #[test]
    fn events_are_json_with_their_fields() {
        let fields: HashMap<&str, &[&str]> = HashMap::from([
            (
                "person",
                &[
                    "id",
                    "name",
                    "emailAddress",
                    "creditCard",
                    "city",
                    "state",
                    "dateTime",
                ][..],
            ),
            (
                "auction",
                &[
                    "id",
                    "itemName",
                    "description",
                    "initialBid",
                    "reserve",
                    "dateTime",
                    "expires",
                    "seller",
                    "category",
                ][..],
            ),
            (
                "bid",
                &[
                    "auction", "bidder", "price", "channel", "url", "dateTime", "all",
                ][..],
            ),
        ]);
        let config = Config::default();
        for e in Generator::new(config.clone()).take(5_000) {
            let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
            assert_eq!(v["type"], e.kind());
            for f in fields[e.kind()] {
                assert!(v.get(*f).is_some(), "{} lacks {f}: {v}", e.kind());
            }
            let t = v["dateTime"].as_i64().unwrap();
            assert!(t >= config.base_time_ms - config.max_delay_ms as i64);
            assert!(t <= config.base_time_ms + 1_000);
            if e.kind() == "bid" {
                assert_eq!(v["all"], 1);
                assert!(v["price"].as_u64().unwrap() >= 100);
            }
        }
    }

    #[test]
    fn bids_refer_to_existing_ids_and_are_skewed() {
        let mut per_auction: HashMap<u64, u64> = HashMap::new();
        let mut bids = 0;
        let mut out_of_order = 0;
        let mut last_time = i64::MIN;
        for (n, e) in Generator::new(Config::default()).take(100_000).enumerate() {
            let n = n as u64;
            if e.date_time() < last_time {
                out_of_order += 1;
            }
            last_time = last_time.max(e.date_time());
            if let Event::Bid(b) = e {
                bids += 1;
                let newest_auction = last_base0_auction_id(n) + FIRST_AUCTION_ID;
                assert!(b.auction <= newest_auction + AUCTION_ID_LEAD);
                let newest_person = last_base0_person_id(n) + FIRST_PERSON_ID;
                assert!(b.bidder <= newest_person + PERSON_ID_LEAD);
                *per_auction.entry(b.auction).or_default() += 1;
            }
        }
        // Half the bids go to the hot auction (the newest multiple of hot_auction_ratio = 2),
        // the rest spread over ~110: about 3/4 of bids land on even (base-0) auction ids.
        let even: u64 = per_auction
            .iter()
            .filter(|(a, _)| (*a - FIRST_AUCTION_ID).is_multiple_of(2))
            .map(|(_, c)| c)
            .sum();
        let share = even as f64 / bids as f64;
        assert!((0.7..0.8).contains(&share), "hot share {share}");
        let max = *per_auction.values().max().unwrap();
        let mean = bids / per_auction.len() as u64;
        assert!(max > 2 * mean, "max {max}, mean {mean}");
        assert!(
            out_of_order > 1_000,
            "only {out_of_order} out-of-order events"
        );
    }
}
