#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::city::feed::{TreeEdge, TreeNode};

fn chain(wall_s: f64, height: u64, txs_total: u64) -> ChainPoint {
    ChainPoint {
        wall_s,
        sim_s: 1_700_000_000 + (wall_s as u64) * 600,
        height,
        txs_total,
    }
}

fn risk(room: &str, start_s: u64, probability: f64, alert: bool) -> RoomRiskPoint {
    RoomRiskPoint {
        room: room.into(),
        start_s,
        end_s: start_s + 900,
        probability,
        alert,
    }
}

fn node(id: &str, p: f64) -> TreeNode {
    TreeNode {
        id: id.into(),
        onset_s: Some(1_700_000_000),
        origin_probability: p,
    }
}

#[test]
fn throughput_is_committed_transactions_per_wall_second_over_the_last_seconds() {
    let d = Dashboard::new(RunInfo::default());
    d.chain(chain(0.0, 1, 0));
    d.chain(chain(2.0, 5, 100));
    d.chain(chain(3.0, 6, 130));
    d.chain(chain(8.0, 7, 230)); // 5 s after 3.0: from there
    d.chain(chain(9.0, 8, 250)); // 5 s window reaches back to 3.0 (the newest ≤ 4.0)
    let s = d.snapshot();
    let tps: Vec<f64> = s.chain.iter().map(|r| r.tps).collect();
    assert_eq!(tps, vec![0.0, 50.0, 130.0 / 3.0, 20.0, 20.0]);
    assert_eq!(s.phase, Phase::Running);
    // Flattened: the page reads height and tps from the same object.
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["chain"][1]["height"], 5);
    assert_eq!(v["chain"][1]["tps"], 50.0);
    assert_eq!(v["phase"], "running");
}

#[test]
fn series_halve_their_resolution_instead_of_losing_their_start() {
    let d = Dashboard::new(RunInfo::default());
    let n = MAX_SERIES_POINTS * 5;
    for i in 0..n {
        d.chain(chain(i as f64, i as u64, i as u64 * 10));
    }
    let s = d.snapshot();
    assert!(s.chain.len() < MAX_SERIES_POINTS, "{}", s.chain.len());
    assert!(s.chain.len() > MAX_SERIES_POINTS / 4, "{}", s.chain.len());
    assert_eq!(s.chain[0].point.height, 0, "the first sample is kept");
    assert_eq!(
        s.chain.last().unwrap().point.height,
        n as u64 - 1,
        "the newest sample is shown"
    );
    assert!(
        s.chain
            .windows(2)
            .all(|w| w[0].point.wall_s < w[1].point.wall_s)
    );
    // Throughput stays the true average rate over the wider spacing.
    assert!(s.chain.iter().skip(1).all(|r| (r.tps - 10.0).abs() < 1e-9));
}

#[test]
fn heatmap_keeps_the_worst_window_of_each_hour_and_ranks_alerted_rooms_first() {
    let d = Dashboard::new(RunInfo::default());
    let t0 = 1_700_002_800; // 47 minutes past an hour boundary
    let hour0 = t0 - t0 % 3_600;
    d.room_risk(risk("office 1", t0, 0.001, false));
    d.room_risk(risk("office 1", t0 + 600, 0.004, false)); // same hour: max kept
    d.room_risk(risk("office 1", t0 + 3 * 3_600, 0.002, false));
    d.room_risk(risk("gym", t0 + 3_600, 0.0001, true));
    d.room_risk(risk("bar", t0, 0.02, false));
    d.room_risk(risk("bad", t0, f64::NAN, false));
    let h = d.snapshot().rooms;
    assert_eq!(h.start_s, hour0);
    assert_eq!(h.column_s, 3_600);
    assert_eq!(h.columns, 4);
    assert_eq!(h.rooms, vec!["gym", "bar", "office 1", "bad"]);
    assert_eq!(h.cells[0], vec![(1, 0.0001, 1)]);
    assert_eq!(h.cells[2], vec![(0, 0.004, 0), (3, 0.002, 0)]);
    assert_eq!(h.cells[3], vec![(0, 0.0, 0)], "NaN is drawn as no risk");
    assert_eq!(h.max_probability, 0.02);
    assert_eq!((h.rooms_total, h.windows_total, h.alerts_total), (4, 5, 1));
}

#[test]
fn every_window_of_a_long_run_folds_into_its_hour_and_alerts_mark_their_cell() {
    // What the demo feeds: every 15-minute window of each room as the edges close them
    // (several polls, so rooms interleave), then the ledger's alerts at the end.
    let d = Dashboard::new(RunInfo::default());
    let t0 = 1_700_000_000 - 1_700_000_000 % 3_600;
    let hours = 24 * 7u64;
    for chunk in 0..hours {
        for room in ["room-1", "room-2"] {
            for q in 0..4 {
                let start = t0 + chunk * 3_600 + q * 900;
                let p = if room == "room-1" {
                    (q + 1) as f64 * 1e-4
                } else {
                    1e-5
                };
                d.room_risk(risk(room, start, p, false));
            }
        }
    }
    d.room_risk(risk("room-2", t0 + 30 * 3_600 + 900, 2e-3, true));
    let h = d.snapshot().rooms;
    assert_eq!(h.columns, hours);
    assert_eq!(h.rooms, vec!["room-2", "room-1"], "the alerted room first");
    assert_eq!(h.cells[1].len(), hours as usize);
    assert!(
        h.cells[1].iter().all(|c| c.1 == 4e-4 && c.2 == 0),
        "max per hour"
    );
    assert_eq!(h.cells[0][30], (30, 2e-3, 1));
    assert!(h.cells[0].iter().filter(|c| c.2 == 1).count() == 1);
    assert_eq!(h.windows_total, hours * 8);
    assert_eq!(h.alerts_total, 1);
}

#[test]
fn heatmap_is_bounded_in_rooms_and_hours() {
    let d = Dashboard::new(RunInfo::default());
    let t0 = 1_700_000_000 - 1_700_000_000 % 3_600;
    for r in 0..(HEATMAP_ROOMS + 10) {
        d.room_risk(risk(&format!("room {r:02}"), t0, r as f64 * 1e-4, false));
    }
    // Far beyond the kept hours, and before the first window: not drawn, still counted.
    d.room_risk(risk("room 00", t0 + MAX_HOURS as u64 * 3_600, 0.5, true));
    d.room_risk(risk("room 00", t0 - 3_600, 0.5, true));
    let h = d.snapshot().rooms;
    assert_eq!(h.rooms.len(), HEATMAP_ROOMS);
    assert_eq!(h.rooms[0], format!("room {:02}", HEATMAP_ROOMS + 9));
    assert_eq!(h.columns, 1);
    assert_eq!(h.alerts_total, 2);
    assert!(h.cells.iter().flatten().all(|c| c.2 == 0));
}

#[test]
fn tree_is_bounded_keeping_marked_origins_and_edges_between_kept_cases() {
    let d = Dashboard::new(RunInfo::default());
    let mut nodes: Vec<TreeNode> = (0..MAX_TREE_NODES + 50)
        .map(|i| node(&format!("case {i}"), 0.0))
        .collect();
    nodes[MAX_TREE_NODES + 20].origin_probability = 0.9;
    let edges = vec![
        TreeEdge {
            from: format!("case {}", MAX_TREE_NODES + 20),
            to: "case 1".into(),
            weight: 1.0,
            kind: "contact".into(),
        },
        TreeEdge {
            from: "case 1".into(),
            to: format!("case {}", MAX_TREE_NODES + 30),
            weight: 1.0,
            kind: "room".into(),
        },
    ];
    d.tree(TreeView {
        sim_s: 1,
        nodes,
        edges,
        origins: vec![format!("case {}", MAX_TREE_NODES + 20)],
        true_origins: vec![format!("case {}", MAX_TREE_NODES + 40)],
    });
    let s = d.snapshot();
    assert_eq!(s.trees, 1);
    let t = s.tree.unwrap();
    assert_eq!(t.nodes.len(), MAX_TREE_NODES);
    let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
    assert!(ids.contains(&format!("case {}", MAX_TREE_NODES + 20).as_str()));
    assert!(ids.contains(&format!("case {}", MAX_TREE_NODES + 40).as_str()));
    assert!(!ids.contains(&format!("case {}", MAX_TREE_NODES + 30).as_str()));
    assert_eq!(t.edges.len(), 1, "the edge to a dropped case is dropped");
}

#[test]
fn events_keep_the_newest_lines() {
    let d = Dashboard::new(RunInfo::default());
    for i in 0..MAX_EVENTS + 5 {
        d.event(format!("line {i}"));
    }
    let e = d.snapshot().events;
    assert_eq!(e.len(), MAX_EVENTS);
    assert_eq!(e[0], "line 5");
    assert_eq!(e.last().unwrap(), &format!("line {}", MAX_EVENTS + 4));
}

#[test]
fn report_embeds_the_state_in_the_page_code_without_closing_the_script() {
    let d = Dashboard::new(RunInfo {
        seed: 7,
        population: 300,
        days: 2,
        pace: Some(3_600.0),
    });
    d.chain(chain(1.0, 3, 9));
    d.event("a </script><b>tricky</b> line".into());
    d.set_phase(Phase::Stopped);
    d.set_metrics(&serde_json::json!({"top1": 0.5}));
    let html = report_html(&d.snapshot()).unwrap();
    assert!(!html.contains(EMBED_MARKER));
    assert_eq!(html.matches("</script>").count(), 1, "only the page's own");
    let start = html.find("const EMBEDDED = ").unwrap() + "const EMBEDDED = ".len();
    let end = start + html[start..].find(";\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
    assert_eq!(v["info"]["seed"], 7);
    assert_eq!(v["phase"], "stopped");
    assert_eq!(v["metrics"]["top1"], 0.5);
    assert_eq!(v["events"][0], "a </script><b>tricky</b> line");
    // The live page has the marker and no external resources.
    assert!(PAGE.contains(EMBED_MARKER));
    for external in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(!PAGE.contains(external), "{external}");
    }
}

#[test]
fn write_report_writes_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = Dashboard::new(RunInfo::default());
    d.chain(chain(1.0, 3, 9));
    write_report(&d, dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["chain"][0]["height"], 3);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("\"height\":3"));
}

#[tokio::test]
async fn server_serves_the_page_and_the_state() {
    let d = Arc::new(Dashboard::new(RunInfo::default()));
    d.contacts(ContactPoint {
        sim_s: 5,
        confirmed_cases: 2,
        ..ContactPoint::default()
    });
    let server = Server::bind(0).await.unwrap();
    let addr = server.addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(d.clone(), async {
        let _ = rx.await;
    }));
    let base = format!("http://{addr}");
    let page = reqwest::get(&base).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("data-panel=\"tree\""));
    let state: serde_json::Value = reqwest::get(format!("{base}/api/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["contacts"][0]["confirmed_cases"], 2);
    assert_eq!(state["phase"], "starting");
    // A port in use is a clear error, not a panic.
    let err = Server::bind(addr.port()).await.err().unwrap();
    assert!(format!("{err:#}").contains("--port"), "{err:#}");
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
