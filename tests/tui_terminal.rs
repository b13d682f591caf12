//! The dashboard in a real terminal: tmux runs `knetdoctor tui` on a lab,
//! `lab break route-missing` from outside makes the finding appear on the
//! screen (read with capture-pane) within 2 s — by the kernel's netlink
//! notification, the periodic re-read being 30 s away — `:node` shows the
//! entry marked missing, the repair view (`r`, `a`, `y`) fixes it and the
//! finding disappears; `c` captures a ping across cni0, flannel.1 and
//! eth0 and writes it to pcapng (read back with tcpdump); the history
//! undoes the repair; the linked view and the trace (`t`, fuzzy pick, `p`
//! probe) show the route broken again; `q` leaves the terminal as it was.

mod common;
use common::tmux::{Tmux, expect_screen};
use common::*;

use std::process::Command;
use std::time::Duration;

const LAB: &str = "tui";

#[test]
fn a_broken_route_shows_up_within_two_seconds_and_q_restores_the_terminal() {
    let lab = Lab::up(LAB, &[]);
    // The periodic re-read is 30 s away: only the kernel's notifications
    // can bring the change to the screen in time.
    // `w` in the capture view writes into the working directory.
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "cd {} && {BIN} tui --lab {LAB} --refresh-ms 30000; echo dashboard-exited-$?; sleep 60",
        dir.path().display()
    );
    let t = Tmux::start(&format!("kdtui-{}", std::process::id()), &command);
    assert!(
        t.wait_for("0 findings", Duration::from_secs(10)).is_some(),
        "the healthy lab never showed:\n{}",
        t.pane()
    );
    expect_screen(&t, "k8s-node-12", 2);
    // Each node says what was read of it, and how (120 columns).
    expect_screen(&t, "peers 2/2", 2);
    expect_screen(&t, "2/2       lab       iptables 5 svc", 2);

    lab.kd(&["lab", "break", "route-missing", "--node", "k8s-node-12"]);
    let took = t.shows_within("route-missing", Duration::from_secs(2));
    eprintln!("route-missing on screen after {took:?}");

    t.keys(&[":node k8s-node-12", "Enter"]);
    assert!(
        t.wait_for("not ok", Duration::from_secs(2)).is_some(),
        "{}",
        t.pane()
    );
    if let Err(pane) = t.wait_for_line(
        |l| l.contains("missing") && l.contains("route ") && l.contains("onlink"),
        Duration::from_secs(2),
    ) {
        panic!("the missing route is not marked:\n{pane}");
    }

    // The repair view: the plan, a yes, the repair, the finding gone.
    t.keys(&["r"]);
    assert!(
        t.wait_for("ip route replace", Duration::from_secs(2))
            .is_some(),
        "{}",
        t.pane()
    );
    t.keys(&["a"]);
    assert!(
        t.wait_for("(y/n)", Duration::from_secs(2)).is_some(),
        "{}",
        t.pane()
    );
    t.keys(&["y"]);
    assert!(
        t.wait_for("the findings it targeted are gone", Duration::from_secs(5))
            .is_some(),
        "{}",
        t.pane()
    );
    t.keys(&[":node k8s-node-12", "Enter"]);
    assert!(
        t.wait_for("0 not ok", Duration::from_secs(3)).is_some(),
        "the repaired node never showed clean:\n{}",
        t.pane()
    );
    // Independently: the route is back in the kernel.
    let (_, routes) = in_ns_text(&lab.node("k8s-node-12"), &["ip", "route"]);
    assert!(
        routes.contains("10.2.0.0/24 via 10.2.0.0 dev flannel.1 onlink"),
        "{routes}"
    );
    t.keys(&[":overview", "Enter"]);
    assert!(
        t.wait_for("-route-missing (k8s-node-12)", Duration::from_secs(3))
            .is_some(),
        "{}",
        t.pane()
    );

    capture_follows_a_ping_and_writes_pcapng(&lab, &t, dir.path());
    undo_from_the_history_breaks_the_route_again(&t);
    the_linked_view_and_the_trace_show_the_broken_route(&t);

    t.keys(&["q"]);
    assert!(
        t.wait_for("dashboard-exited-0", Duration::from_secs(3))
            .is_some(),
        "{}",
        t.pane()
    );
    // Back on the normal screen: the dashboard's frame is gone.
    assert!(!t.pane().contains("knetdoctor  node"), "{}", t.pane());
}

fn capture_follows_a_ping_and_writes_pcapng(lab: &Lab, t: &Tmux, dir: &std::path::Path) {
    t.keys(&[":capture k8s-node-12", "Enter"]);
    expect_screen(t, "— live", 5);
    // busybox (10.2.2.50, on k8s-node-12) to nginx on the master.
    assert!(ping(&lab.pod(BUSYBOX), "10.2.0.42"));
    expect_screen(t, "10.2.2.50", 3);
    t.keys(&["v"]);
    expect_screen(t, "eth0[vxlan 1]", 3);
    if let Err(pane) = t.wait_for_line(
        |l| l.contains("cni0") && l.contains("flannel.1") && l.contains("eth0[vxlan 1]"),
        Duration::from_secs(2),
    ) {
        panic!("no packet followed across the three:\n{pane}");
    }
    t.keys(&[" "]);
    expect_screen(t, "PAUSED", 2);
    t.keys(&["w"]);
    expect_screen(t, "frames written to", 5);
    let file = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pcapng"))
        .expect("a pcapng file in the working directory");
    // Independently: tcpdump reads it, the ICMP inside VXLAN on eth0 too.
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&file)
        .output()
        .expect("tcpdump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("10.2.2.50 > 10.2.0.42: ICMP echo request"),
        "{text}"
    );
    // flannel's VXLAN port 8472 is what tcpdump calls OTV; instance = VNI 1.
    assert!(
        text.lines().any(|l| l.contains("192.168.56.12.")
            && l.contains(".8472: OTV")
            && l.contains("instance 1")),
        "{text}"
    );
    // Esc stops the capture and goes back where `:capture` came from.
    t.keys(&["Escape"]);
    expect_screen(t, "knetdoctor  overview", 2);
}

fn undo_from_the_history_breaks_the_route_again(t: &Tmux) {
    t.keys(&[":history k8s-node-12", "Enter"]);
    expect_screen(t, "finished: 1 of 1 action(s) made", 5);
    t.keys(&["u"]);
    expect_screen(t, "(y/n)", 2);
    t.keys(&["y"]);
    expect_screen(t, "undone: 1 change(s) put back", 5);
    t.keys(&[":overview", "Enter"]);
    expect_screen(t, "+route-missing (k8s-node-12)", 3);
}

fn the_linked_view_and_the_trace_show_the_broken_route(t: &Tmux) {
    t.keys(&[":svc linux0224-nginx", "Enter"]);
    expect_screen(t, "route 10.2.0.0/24 BROKEN", 3);
    assert!(
        t.pane()
            .contains("route-missing: no route to k8s-master-10")
    );
    t.keys(&[":pods", "Enter", "/busybox", "Enter", "t"]);
    expect_screen(t, "match \"\"", 2);
    t.keys(&["0224ngx"]);
    expect_screen(t, "svc  test-svc-ns/linux0224-nginx", 2);
    t.keys(&["Enter"]);
    expect_screen(t, "p sends a real probe", 5);
    expect_screen(t, "KUBE-SVC-", 2);
    t.keys(&["p"]);
    expect_screen(t, "probe: ", 15);
}

#[test]
fn a_changed_bundle_directory_is_read_again_at_once() {
    let lab = Lab::up("tuibundle", &[]);
    let dir = tempfile::tempdir().unwrap();
    let (healthy, broken) = (dir.path().join("healthy"), dir.path().join("broken"));
    kd_ok(&[
        "collect",
        "--output",
        healthy.to_str().unwrap(),
        "--lab",
        "tuibundle",
    ]);
    lab.kd(&["lab", "break", "route-missing", "--node", "k8s-node-12"]);
    kd_ok(&[
        "collect",
        "--output",
        broken.to_str().unwrap(),
        "--lab",
        "tuibundle",
    ]);
    // The bundle on screen is a copy of the healthy one; the periodic
    // re-read is a minute away.
    let shown = dir.path().join("shown");
    copy_dir(&healthy, &shown);
    let t = Tmux::start(
        &format!("kdtuib-{}", std::process::id()),
        &format!(
            "{BIN} tui --bundle {} --refresh-ms 60000; sleep 60",
            shown.display()
        ),
    );
    expect_screen(&t, "0 findings", 10);
    copy_dir(&broken, &shown);
    let took = t.shows_within("route-missing", Duration::from_secs(2));
    eprintln!("changed bundle on screen after {took:?}");
    t.keys(&["q"]);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    assert!(
        Command::new("cp")
            .args(["-rT"])
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success()
    );
}
