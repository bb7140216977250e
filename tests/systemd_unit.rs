//! `dist/ringway.service` passes `systemd-analyze verify` (when systemd-analyze is
//! installed): the unit is copied with `/usr/local/bin/ringway` replaced by the binary under
//! test, and the check fails on a non-zero exit or on any line about the unit (systemd only
//! warns about unknown values and still exits 0).

use std::process::Command;

#[test]
fn the_unit_file_verifies() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/ringway.service"))
            .unwrap();
    for key in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "User=ringway",
        // The pid file the gateway writes is the one systemd and the docs name.
        "PIDFile=/run/ringway/ringway.pid",
        "ExecStart=/usr/local/bin/ringway run --config /etc/ringway/ringway.toml --pid-file /run/ringway/ringway.pid",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(key)),
            "no {key} in the unit"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringway.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/ringway", env!("CARGO_BIN_EXE_ringway")),
    )
    .unwrap();
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            eprintln!("systemd-analyze is not installed: skipped");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let about_us: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ringway.service"))
        .collect();
    assert!(about_us.is_empty(), "{about_us:#?}");
}
