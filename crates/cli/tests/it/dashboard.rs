//! `trustedge demo`'s dashboard in headless Chromium: the real binary runs a tiny city, the
//! page is loaded by Debian's `chromium` while data flows, every panel must have drawn data;
//! then the demo is stopped with SIGTERM and its report must hold the same data.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, Guard, eventually, free_ports};

/// The panels of the page, by `data-panel`.
const PANELS: [&str; 4] = ["chain", "contacts", "rooms", "tree"];
/// How long the city gets to put data in every panel: the tree and the room risks come when
/// the city ends (debug build on 2 shared cores: about 9 s per simulated hour in November 2026).
const DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// Debian's package installs it here (`.ci/run` installs it when missing).
const CHROMIUM: &str = "/usr/bin/chromium";

/// `GET path` on 127.0.0.1:port with HTTP/1.0 (the server closes after the answer); the body
/// of a 200, or `None` while nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

/// How many points each panel's data has in a state (`/api/state` or `report.json`).
fn data_points(state: &serde_json::Value) -> [usize; 4] {
    let len = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    let cells = state["rooms"]["cells"]
        .as_array()
        .map_or(0, |rows| rows.iter().map(len).sum());
    [
        len(&state["chain"]),
        len(&state["contacts"]),
        cells,
        len(&state["tree"]["nodes"]) + len(&state["tree"]["true_origins"]),
    ]
}

/// The attributes of the `<section … data-panel="name" …>` start tag in a dumped DOM.
fn panel_attrs(dom: &str, name: &str) -> (String, usize) {
    let needle = format!("data-panel=\"{name}\"");
    let at = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no panel {name} in the DOM:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    let tag = &dom[start..end];
    let attr = |a: &str| -> String {
        let key = format!("{a}=\"");
        let i = tag
            .find(&key)
            .unwrap_or_else(|| panic!("panel {name} has no {a}: {tag}"))
            + key.len();
        tag[i..i + tag[i..].find('"').unwrap()].to_string()
    };
    let points = attr("data-points")
        .parse()
        .unwrap_or_else(|e| panic!("panel {name}: data-points {e}: {tag}"));
    (attr("data-rendered"), points)
}

fn chromium_dom(port: u16, profile: &Path) -> String {
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=8000", "--dump-dom"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {CHROMIUM} ({e}); .ci/run installs Debian's chromium")
        });
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn demo_dashboard_renders_every_panel_in_chromium_and_the_report_holds_the_data() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: .ci/run installs Debian's chromium package"
    );
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("demo");
    let port = free_ports(1);
    let log_path = dir.path().join("demo.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // --seconds bounds the run if the test dies; the test stops it earlier with SIGTERM.
    let child = Command::new(BIN)
        .args(["demo", "--population", "300", "--days", "2", "--seed", "1"])
        // Enough index cases that app users are confirmed within two days (the tree needs
        // confirmed cases; citysim seed 1 confirms 3 app users by the end).
        .args(["--index-cases", "40", "--app-adoption", "0.9"])
        .args(["--pace", "40000", "--seconds", "720"])
        .args(["--port", &port.to_string(), "--home"])
        .arg(&home)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = Guard(Some(child));
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let started = Instant::now();

    // The page answers at once; data flows once the network is up and the city streams.
    let page = eventually(Duration::from_secs(60), "the dashboard page", || {
        http_get(port, "/")
    });
    assert!(page.contains("data-panel=\"tree\""));
    // Every panel needs data; the transmission tree comes once origin inference has run.
    let deadline = Instant::now() + DATA_TIMEOUT;
    let mut last = [0; 4];
    let state = loop {
        if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
            panic!("the demo exited early ({status}):\n{}", log_tail());
        }
        let state = http_get(port, "/api/state")
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok());
        if let Some(state) = state {
            last = data_points(&state);
            if last.iter().all(|&n| n > 0) {
                break state;
            }
            // Once the city has ended nothing more comes: say which panel stayed empty.
            let phase = state["phase"].as_str().unwrap_or("");
            assert!(
                phase == "starting" || phase == "running",
                "the city ended ({phase}) with points {last:?} for {PANELS:?} (confirmed cases: \
                 {}, error: {})\n{}",
                state["contacts"]
                    .as_array()
                    .and_then(|c| c.last())
                    .map_or(serde_json::Value::Null, |c| c["confirmed_cases"].clone()),
                state["error"],
                log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no data in every panel after {DATA_TIMEOUT:?}: points {last:?} for {PANELS:?}\n{}",
            log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(state["info"]["population"] == 300, "{state}");

    let profile = tempfile::tempdir().unwrap();
    let dom = chromium_dom(port, profile.path());
    for name in PANELS {
        let (rendered, points) = panel_attrs(&dom, name);
        assert_eq!(rendered, "true", "panel {name} did not render:\n{dom}");
        assert!(points > 0, "panel {name} drew no points");
    }

    // Stop it as Ctrl-C would; it writes the report into its home and exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = eventually(Duration::from_secs(30), "the demo to stop", || {
        guard.0.as_mut().unwrap().try_wait().unwrap()
    });
    assert!(exit.success(), "demo exit {exit}:\n{}", log_tail());
    guard.0 = None;

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("report.json")).unwrap()).unwrap();
    let points = data_points(&report);
    for (i, name) in PANELS.iter().enumerate() {
        assert!(
            points[i] >= last[i].min(1),
            "report {name}: {points:?} < {last:?}"
        );
    }
    let phase = report["phase"].as_str().unwrap_or("");
    assert!(phase == "stopped" || phase == "finished", "{phase}");
    let html = std::fs::read_to_string(home.join("report.html")).unwrap();
    assert!(!html.contains("/*EMBEDDED_STATE*/"), "state not embedded");
    assert!(html.contains("\"population\":300"));
    // The report draws the same panels offline.
    let dom = {
        let out = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=3000", "--dump-dom"])
            .arg(format!("file://{}", home.join("report.html").display()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    for name in PANELS {
        assert_eq!(panel_attrs(&dom, name).0, "true", "report panel {name}");
    }
    eprintln!("dashboard test took {:?}", started.elapsed());
}
