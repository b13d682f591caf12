//! Bad input and hostile paths fail loudly and leave nothing behind:
//! a namespace that is missing or not a namespace, an output path that is
//! a device, a symlink or a file an earlier capture wrote, a tarball that
//! is not a bundle. Runs as root (captures) in a scratch namespace named
//! under the lab prefix, which it removes.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs knetdoctor with a deadline (a hang is a failure, not a stuck test).
fn kd_within(args: &[&str], env: &[(&str, &Path)], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("knetdoctor {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A namespace with only `lo`, under the lab prefix, removed on drop.
struct Scratch(String);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        require_root();
        let name = format!("kdlab-badinput{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        in_ns(&name, &["ip", "link", "set", "lo", "up"]);
        Scratch(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn capture_in_a_namespace_that_is_missing_or_not_one_fails_with_exit_3() {
    require_root();
    for extra in [&["--duration", "1"][..], &["-c", "1"]] {
        for ns in ["kdlab-nosuchnamespace", "/etc/passwd"] {
            let mut args = vec!["capture", "--netns", ns, "-i", "lo"];
            args.extend_from_slice(extra);
            let (code, text) = kd_within(&args, &[], Duration::from_secs(10));
            assert_eq!(code, Some(3), "{args:?}: {text}");
            let want = if ns.starts_with('/') {
                "is not a network namespace"
            } else {
                "does not exist"
            };
            assert!(text.contains(want), "{args:?}: {text}");
        }
    }
}

#[test]
fn capture_w_keeps_an_earlier_file_until_it_has_a_new_one_and_never_follows_a_link() {
    let ns = Scratch::new("w");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("earlier.pcapng");
    std::fs::write(&file, b"an earlier capture").unwrap();
    let f = file.to_str().unwrap();
    // A typo in the interface or the filter costs nothing.
    for bad in [
        &["-i", "nosuchif0"][..],
        &["-i", "lo", "-f", "tcp port and and"],
    ] {
        let mut args = vec!["capture", "--netns", &ns.0, "--duration", "0.2", "-w", f];
        args.extend_from_slice(bad);
        let (code, text) = kd_within(&args, &[], Duration::from_secs(10));
        assert_ne!(code, Some(0), "{args:?}: {text}");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"an earlier capture",
            "{args:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "a temporary file left"
    );

    // A device is not a file: refused, and /dev/full is still a device.
    let (code, text) = kd_within(
        &[
            "capture",
            "--netns",
            &ns.0,
            "-i",
            "lo",
            "--duration",
            "0.2",
            "-w",
            "/dev/full",
        ],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("/dev/full is not a regular file"), "{text}");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device()
    );

    // A symlink at the path is replaced by the capture, not written through.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let link = dir.path().join("link.pcapng");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let (code, text) = kd_within(
        &[
            "capture",
            "--netns",
            &ns.0,
            "-i",
            "lo",
            "--duration",
            "0.3",
            "-w",
            link.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.is_file(), "{meta:?}");
    // An independent reader takes what was written.
    let read = Command::new("tcpdump")
        .args(["-nr", link.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
}

#[test]
fn collect_never_writes_through_a_dangling_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nowhere.tar.gz");
    let link = dir.path().join("bundle.tar.gz");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (code, text) = kd_within(
        &["collect", "-o", link.to_str().unwrap()],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("already exists"), "{text}");
    assert!(!target.exists());
}

#[test]
fn a_tarball_that_is_not_a_bundle_leaves_no_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bad = work.path().join("bad.tar.gz");
    // A gzip stream whose tar is torn part-way.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &[b'x'; 700]).unwrap();
    std::fs::write(&bad, gz.finish().unwrap()).unwrap();
    std::fs::write(work.path().join("garbage.tgz"), b"not even gzip").unwrap();
    for f in ["bad.tar.gz", "garbage.tgz"] {
        let p = work.path().join(f);
        let (code, text) = kd_within(
            &["check", "--bundle", p.to_str().unwrap()],
            &[("TMPDIR", tmp.path())],
            Duration::from_secs(10),
        );
        assert_eq!(code, Some(2), "{f}: {text}");
        assert!(text.contains("not a bundle tarball"), "{f}: {text}");
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_bundle_of_nothing_knetdoctor_reads_is_not_called_healthy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secret.json"),
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"default"},"data":{"k":"dg=="}}"#,
    )
    .unwrap();
    let (code, text) = kd_within(
        &["check", "--bundle", dir.path().to_str().unwrap()],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("nothing to check"), "{text}");
    assert!(!text.contains("healthy"), "{text}");
}

#[test]
fn names_and_ids_that_are_paths_are_refused_before_anything_is_read() {
    for args in [
        &["check", "--lab", "../lab/other"][..],
        &["lab", "heal", "--name", "../lab/other"],
        &["lab", "status", "--name", "seed/.."],
        &["repair", "--node", "k8s-node-12", "--undo", "../../tmp/x"],
        &["repair", "--node", "k8s-node-12", "--undo", "/etc/passwd"],
    ] {
        let (code, text) = kd_within(args, &[], Duration::from_secs(10));
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(
            text.contains("invalid lab name") || text.contains("is not a repair ID"),
            "{args:?}: {text}"
        );
    }
}

/// kube-proxy 1.20 has no nftables mode: asking the control-plane lab for
/// it is a usage error before anything is built, and nothing is left.
#[test]
fn nftables_mode_at_1_20_is_refused_before_anything_is_built() {
    let (code, text) = kd_within(
        &[
            "lab",
            "up",
            "--name",
            "nftold",
            "--control-plane",
            "--k8s",
            "1.20",
            "--kube-proxy-mode",
            "nftables",
        ],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("no nftables mode") && text.contains("--k8s 1.32"),
        "{text}"
    );
    assert!(namespaces_with("kdlab-nftold-").is_empty());
    assert!(!Path::new("/run/knetdoctor/lab/nftold").exists());
    // Without --control-plane, --without-endpoints has no controller to
    // turn off.
    let (code, text) = kd_within(
        &["lab", "up", "--name", "nftold", "--without-endpoints"],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(namespaces_with("kdlab-nftold-").is_empty());
}
