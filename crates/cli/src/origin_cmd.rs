//! `trustedge origin`: outbreak-origin inference (`trustedge-origin`).
//!
//! - `trustedge origin --node URL [--json]`: the ranked origin candidates a cloud node with
//!   `[origin]` infers from the ledger (`GET /v1/origin`), with what supports each
//!   (contacts and rooms), the most likely tree and the earliest-onset baseline.
//! - `trustedge origin eval`: measures the inference against the "earliest symptom onset"
//!   baseline over seeded synthetic outbreaks.

use clap::{Args, Subcommand};
use trustedge_node::origin_service::{OriginCluster, OriginView, TreeEdgeView};
use trustedge_origin::{EvalSpec, evaluate};

use crate::remote;

/// Outbreak-origin inference.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OriginArgs {
    #[command(subcommand)]
    command: Option<OriginCommand>,
    /// API URL of a node with `[origin]` (a cloud node): print its ranked candidates.
    #[arg(long)]
    node: Option<String>,
    /// Ask the node to read the newest ledger events and recompute first.
    #[arg(long)]
    refresh: bool,
    /// Only clusters with at least this many cases (default: 2 in the human form, 1 with
    /// --json).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    min_cluster_size: Option<u64>,
    /// Print the node's JSON answer.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum OriginCommand {
    /// Generate seeded outbreaks with a known transmission tree, rank each one's origin
    /// candidates and report top-1 / top-3 accuracy beside the earliest-onset baseline.
    Eval {
        /// Seed of the outbreaks and of the tree sampling.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Outbreaks to evaluate (1 ..= 100,000).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        outbreaks: u32,
        /// Trees sampled per cluster (1 ..= 1,000,000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        samples: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Evaluate on a generated city (`trustedge-citysim`) instead of synthetic
        /// outbreaks: the evidence the real stack can observe, scored against the city's
        /// true clusters (`trustedge_citysim::score::score_origins`).
        #[arg(long)]
        city: bool,
        /// People of the city (with `--city`; 1 ..= 1,000,000).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        population: u32,
        /// Simulated days (with `--city`; 1 ..= 60).
        #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=60))]
        days: u32,
        /// Which close contacts between confirmed cases the inference is given (with
        /// `--city`).
        #[arg(long, value_enum, default_value_t = ContactSource::Truth)]
        contacts: ContactSource,
        /// What a cluster of linked cases is.
        #[arg(long, value_enum, default_value_t = Clusters::TreeImports)]
        clusters: Clusters,
    },
}

/// `trustedge_origin::ClusterRule` on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clusters {
    /// Connected components of the evidence.
    Components,
    /// Components split at the imports of their most likely tree.
    TreeImports,
}

impl From<Clusters> for trustedge_origin::ClusterRule {
    fn from(c: Clusters) -> Self {
        match c {
            Clusters::Components => trustedge_origin::ClusterRule::Components,
            Clusters::TreeImports => trustedge_origin::ClusterRule::TreeImports,
        }
    }
}

/// The close contacts `origin eval --city` observes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactSource {
    /// The pair-days that meet the close-contact rule on true distances.
    Truth,
    /// The pair-days the edge decides close from the phones' BLE (and UWB) sightings, as
    /// the real path does (`trustedge tracing city-eval`), scored as its notices are: one
    /// encounter per direction, the GAEN score of the day.
    Edge,
}

/// `origin eval --city`: generate the city, observe, rank, score; print the figures.
fn eval_city(
    seed: u64,
    population: u32,
    days: u32,
    samples: u32,
    contacts: ContactSource,
    clusters: Clusters,
    json: bool,
) -> anyhow::Result<()> {
    use trustedge_citysim::evidence::{ObserveParams, evaluate_evidence, observe};
    let started = std::time::Instant::now();
    let cfg = trustedge_citysim::CityConfig {
        population,
        days,
        materialize_sightings: false,
        ..trustedge_citysim::CityConfig::default()
    };
    let city = trustedge_citysim::City::generate(&cfg, seed)?;
    let epi = city.truth().epi_summary();
    let rank = trustedge_origin::RankParams {
        explain_top: 0,
        samples,
        clusters: clusters.into(),
        ..trustedge_origin::RankParams::default()
    };
    let mut ev = observe(&city, &ObserveParams::default());
    let mut edge_decisions = None;
    if contacts == ContactSource::Edge {
        let (encounters, decided) = edge_encounters(&city, &ev.cases)?;
        edge_decisions = Some(decided);
        ev.encounters = encounters;
    }
    let r = evaluate_evidence(&city, &ev, &rank, seed)?;
    let wall_s = started.elapsed().as_secs_f64();
    let s = r.score;
    if json {
        let out = serde_json::json!({
            "seed": seed,
            "population": population,
            "days": days,
            "infections": epi.infections,
            "confirmed": epi.confirmed,
            "r_index": epi.r_index,
            "scored_clusters": s.clusters,
            "linked_clusters": s.linked,
            "reachable_clusters": s.reachable,
            "top1": s.top1,
            "top3": s.top3,
            "baseline_top1": s.baseline_top1,
            "baseline_top3": s.baseline_top3,
            "linked": {
                "top1": s.linked_top1,
                "top3": s.linked_top3,
                "baseline_top1": s.linked_baseline_top1,
                "baseline_top3": s.linked_baseline_top3,
            },
            "evidence": {
                "cases": r.cases,
                "encounters": r.encounters,
                "room_windows": r.room_windows,
                "inferred_clusters": r.inferred_clusters,
            },
            "contacts": format!("{contacts:?}").to_lowercase(),
            "edge_decisions": edge_decisions,
            "samples": samples,
            "wall_s": wall_s,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "city of {population} × {days} d (seed {seed}): {} infections, {} confirmed; {} encounters and {} room windows between confirmed cases",
            epi.infections, r.cases, r.encounters, r.room_windows
        );
        println!(
            "{} true clusters with >= 2 confirmed cases, {} linked whole by the evidence, {} with their origin in the matched inferred cluster",
            s.clusters, s.linked, s.reachable
        );
        println!("inference: top-1 {:.3}  top-3 {:.3}", s.top1, s.top3);
        println!(
            "earliest-onset baseline: top-1 {:.3}  top-3 {:.3}",
            s.baseline_top1, s.baseline_top3
        );
        println!("{wall_s:.2} s");
    }
    Ok(())
}

/// How the edge's close-contact decisions between confirmed cases compare with the rule on
/// true distances (ordered pair-days).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct EdgeDecisions {
    /// Ordered co-present pair-days of two confirmed cases.
    pair_days: u64,
    /// Decided close.
    decided: u64,
    /// Decided close and truly close.
    true_positives: u64,
    /// Truly close.
    positives: u64,
}

/// The close contacts between `cases` as the edge decides them: one encounter per ordered
/// pair-day decided close (the case heard → the exposed observer), at noon of the day as
/// the cloud's linker records them, its score the day's GAEN score in weighted minutes.
fn edge_encounters(
    city: &trustedge_citysim::City,
    cases: &[trustedge_origin::Case],
) -> anyhow::Result<(Vec<trustedge_contacts::Encounter>, EdgeDecisions)> {
    use trustedge_citysim::{DAY_S, PersonId};
    let people: std::collections::BTreeSet<PersonId> =
        cases.iter().map(|c| PersonId(c.id.0)).collect();
    let scorer = trustedge_edge::exposure::default_scorer()?;
    let rule = scorer.rule;
    let pairs = crate::contact_eval::play_among(city, &scorer, &people)?;
    let mut d = EdgeDecisions::default();
    let mut out = Vec::new();
    for p in &pairs {
        d.pair_days += 1;
        d.positives += u64::from(p.truth);
        if !p.decide(rule.max_distance_m, rule.min_minutes_per_day) {
            continue;
        }
        d.decided += 1;
        d.true_positives += u64::from(p.truth);
        let close_s = p.close_s(rule.max_distance_m);
        out.push(trustedge_contacts::Encounter {
            a: trustedge_contacts::CaseId(p.heard.0),
            b: trustedge_contacts::CaseId(p.observer.0),
            start_s: city.config().start_s + u64::from(p.day) * DAY_S + DAY_S / 2,
            duration_s: u32::try_from(close_s).unwrap_or(u32::MAX),
            score: (p.score_s / 60.0) as f32,
        });
    }
    Ok((out, d))
}

/// Runs `trustedge origin ...`.
pub async fn run(args: &OriginArgs) -> anyhow::Result<()> {
    let Some(command) = &args.command else {
        let Some(node) = &args.node else {
            anyhow::bail!("give --node URL (a cloud node with [origin]) or a subcommand (eval)");
        };
        return from_node(node, args).await;
    };
    match command {
        OriginCommand::Eval {
            seed,
            city: true,
            population,
            days,
            samples,
            contacts,
            clusters,
            json,
            ..
        } => eval_city(
            *seed,
            *population,
            *days,
            *samples,
            *contacts,
            *clusters,
            *json,
        ),
        OriginCommand::Eval {
            seed,
            outbreaks,
            samples,
            clusters,
            json,
            ..
        } => {
            let mut spec = EvalSpec::default();
            spec.rank.samples = *samples;
            spec.rank.clusters = (*clusters).into();
            let started = std::time::Instant::now();
            let r = evaluate(&spec, *seed, *outbreaks)?;
            let wall_s = started.elapsed().as_secs_f64();
            if *json {
                let out = serde_json::json!({
                    "seed": seed,
                    "outbreaks": r.outbreaks,
                    "redrawn": r.redrawn,
                    "top1": r.top1,
                    "top3": r.top3,
                    "baseline_top1": r.baseline_top1,
                    "baseline_top3": r.baseline_top3,
                    "mean_cases": r.mean_cases,
                    "mean_cluster_cases": r.mean_cluster_cases,
                    "mean_infections": r.mean_infections,
                    "samples": samples,
                    "wall_s": wall_s,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{} outbreaks (seed {seed}; {} redrawn with a cluster under {} cases), mean {:.1} confirmed cases, {:.1} in the evaluated cluster",
                    r.outbreaks,
                    r.redrawn,
                    spec.min_cluster_cases,
                    r.mean_cases,
                    r.mean_cluster_cases
                );
                println!("inference: top-1 {:.3}  top-3 {:.3}", r.top1, r.top3);
                println!(
                    "earliest-onset baseline: top-1 {:.3}  top-3 {:.3}",
                    r.baseline_top1, r.baseline_top3
                );
                println!("{wall_s:.2} s");
            }
            Ok(())
        }
    }
}

/// `trustedge origin --node URL`.
async fn from_node(node: &str, args: &OriginArgs) -> anyhow::Result<()> {
    let min = args
        .min_cluster_size
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX))
        .unwrap_or(if args.json { 1 } else { 2 });
    let client = remote::client(node)?;
    let v = remote::call(client.origin(args.refresh, Some(min))).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", human(&v, min));
    Ok(())
}

/// The human form of an answer.
fn human(v: &OriginView, min: usize) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "height {}: {} confirmed case(s), {} close contact(s) and {} alerted room window(s) between them; {} cluster(s) of {}+ case(s)",
        v.height,
        v.cases,
        v.contacts,
        v.rooms,
        v.clusters.len(),
        min
    );
    for (i, cl) in v.clusters.iter().enumerate() {
        cluster(&mut o, i, cl, v.baseline.get(i));
        // Clusters split out of the same evidence component.
        let linked: Vec<String> = v
            .clusters
            .iter()
            .enumerate()
            .filter(|(j, other)| *j != i && other.component == cl.component)
            .map(|(j, _)| (j + 1).to_string())
            .collect();
        if !linked.is_empty() {
            let _ = writeln!(
                o,
                "  weakly linked to cluster(s) {} (evidence joins them, but the likely routes start outside the confirmed cases)",
                linked.join(", ")
            );
        }
    }
    o
}

fn cluster(o: &mut String, i: usize, cl: &OriginCluster, baseline: Option<&String>) {
    use std::fmt::Write as _;
    let _ = writeln!(
        o,
        "\ncluster {} — {} case(s), {} trees sampled",
        i + 1,
        cl.cases.len(),
        cl.samples
    );
    for (rank, c) in cl.candidates.iter().enumerate() {
        let onset = c.onset_s.map_or("onset unknown".to_string(), |s| {
            format!("onset day {}", s / 86_400)
        });
        let _ = writeln!(
            o,
            "  {}. {}  p = {:.3}  ({onset}, confirmed day {})",
            rank + 1,
            short(&c.case),
            c.probability,
            c.confirmation_s / 86_400
        );
        let Some(x) = &c.explanation else { continue };
        for e in &x.contacts {
            let _ = writeln!(
                o,
                "       contact {} → {}  day {}  score {}",
                short(&e.from),
                short(&e.to),
                e.start_s / 86_400,
                e.score
            );
        }
        for r in &x.rooms {
            let _ = writeln!(
                o,
                "       room    {} → {}  venue {}  day {} {}–{}  p = {:.3}",
                short(&r.from),
                short(&r.to),
                short(&r.venue),
                r.start_s / 86_400,
                clock(r.start_s),
                clock(r.end_s),
                r.probability
            );
        }
        if !x.unexplained.is_empty() {
            let _ = writeln!(
                o,
                "       not explained from it: {}",
                x.unexplained
                    .iter()
                    .map(|c| short(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let _ = writeln!(
        o,
        "  most likely tree: {}",
        cl.tree.iter().map(edge).collect::<Vec<_>>().join("; ")
    );
    if let Some(b) = baseline {
        let _ = writeln!(o, "  earliest-onset baseline: {}", short(b));
    }
}

fn edge(e: &TreeEdgeView) -> String {
    match &e.from {
        None => format!("(import) → {}", short(&e.to)),
        Some(f) => format!("{} → {} [{}]", short(f), short(&e.to), e.kind),
    }
}

/// `hh:mm` UTC of a Unix time.
fn clock(t_s: u64) -> String {
    let s = t_s % 86_400;
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// The first 16 hex digits of an id.
fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use trustedge_node::origin_service::{
        ContactEvidenceView, ExplanationView, OriginCandidateView, RoomEvidenceView,
    };

    use super::*;

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn the_human_form_names_candidates_evidence_tree_and_baseline() {
        let edge = |from: Option<char>, to: char, kind: &str| TreeEdgeView {
            from: from.map(id),
            to: id(to),
            weight: 0.1,
            posterior: 0.9,
            kind: kind.into(),
            contacts: 0,
            rooms: 0,
        };
        let v = OriginView {
            height: 12,
            cases: 3,
            contacts: 1,
            rooms: 1,
            seed: 1,
            clusters: vec![OriginCluster {
                cases: vec![id('a'), id('b'), id('c')],
                component: 0,
                samples: 100,
                candidates: vec![OriginCandidateView {
                    case: id('a'),
                    probability: 0.875,
                    onset_s: Some(20_000 * 86_400 + 43_200),
                    confirmation_s: 20_007 * 86_400 + 5,
                    explanation: Some(ExplanationView {
                        contacts: vec![ContactEvidenceView {
                            from: id('a'),
                            to: id('b'),
                            start_s: 20_001 * 86_400 + 43_200,
                            score: 300.0,
                        }],
                        rooms: vec![RoomEvidenceView {
                            from: id('a'),
                            to: id('c'),
                            venue: "ab".repeat(16),
                            start_s: 20_001 * 86_400 + 36_000,
                            end_s: 20_001 * 86_400 + 36_900,
                            probability: 0.08,
                        }],
                        subtree: vec![],
                        unexplained: vec![],
                        contact_count: 1,
                        room_count: 1,
                        chains: vec![],
                    }),
                }],
                tree: vec![
                    edge(None, 'a', "import"),
                    edge(Some('a'), 'b', "contact"),
                    edge(Some('a'), 'c', "room"),
                ],
                baseline: vec![id('a')],
            }],
            baseline: vec![id('a')],
            ignored_evidence: 0,
        };
        let text = human(&v, 2);
        assert!(!text.contains("weakly linked"), "{text}");
        // Two clusters split out of one evidence component name each other; a third, of
        // its own component, names none.
        let mut split = v.clone();
        let mut second = split.clusters[0].clone();
        second.cases = vec![id('d'), id('e')];
        let mut third = second.clone();
        third.component = 1;
        split.clusters.extend([second, third]);
        let t = human(&split, 2);
        assert!(t.contains("weakly linked to cluster(s) 2 ("), "{t}");
        assert!(t.contains("weakly linked to cluster(s) 1 ("), "{t}");
        assert_eq!(t.matches("weakly linked").count(), 2, "{t}");
        let a = "a".repeat(16);
        let b = "b".repeat(16);
        let c = "c".repeat(16);
        for want in [
            "height 12: 3 confirmed case(s), 1 close contact(s) and 1 alerted room window(s)",
            &format!("1. {a}  p = 0.875  (onset day 20000, confirmed day 20007)"),
            &format!("contact {a} → {b}  day 20001  score 300"),
            &format!(
                "room    {a} → {c}  venue {}  day 20001 10:00–10:15  p = 0.080",
                "ab".repeat(8)
            ),
            &format!("most likely tree: (import) → {a}; {a} → {b} [contact]; {a} → {c} [room]"),
            &format!("earliest-onset baseline: {a}"),
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }
}
