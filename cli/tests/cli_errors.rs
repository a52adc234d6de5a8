//! The `zib` binary on bad input, with a repository in a local directory: each error is
//! one line of what failed and one of what to do, with its documented exit code. No
//! snapshot source is needed here (tests/cli_real.rs has those).

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::Sandbox;

/// No Rust debug dump: `zib: error: …` and `zib: hint: …` lines only.
fn assert_clean_error(stderr: &str, says: &str) {
    assert!(stderr.contains(says), "expected {says:?} in:\n{stderr}");
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("zib: error:"))
        .collect();
    assert_eq!(error_lines.len(), 1, "one error line:\n{stderr}");
    assert!(
        !stderr.contains("Error {") && !stderr.contains("Os {"),
        "a debug dump:\n{stderr}"
    );
}

#[test]
fn help_documents_the_exit_codes_and_version_works() {
    let sandbox = Sandbox::new();
    let (stdout, _) = sandbox.run(&["--help"], 0);
    for code in [
        "10  no repository",
        "11  another zib run",
        "12  wrong passphrase",
        "75  restore in progress",
    ] {
        assert!(stdout.contains(code), "{code} in --help:\n{stdout}");
    }
    let (stdout, _) = sandbox.run(&["--version"], 0);
    assert!(stdout.starts_with("zib "), "{stdout}");
    // A usage error is 2.
    sandbox.run(&["backup", "--no-such-flag"], 2);
    sandbox.run(&[], 2);
}

#[test]
fn completions_and_man_page_print() {
    let sandbox = Sandbox::new();
    let (stdout, _) = sandbox.run(&["completions", "bash"], 0);
    assert!(stdout.contains("_zib"), "{stdout}");
    let (stdout, _) = sandbox.run(&["man"], 0);
    assert!(stdout.contains(".TH zib"), "{stdout}");
}

#[test]
fn without_a_config_file_there_is_no_repository() {
    let sandbox = Sandbox::new();
    let (_, stderr) = sandbox.run(&["list"], 10);
    assert_clean_error(&stderr, "no repository is configured");
    assert!(
        stderr.contains("zib: hint: run `zib init URL` first"),
        "{stderr}"
    );
    let document = sandbox.json(&["status"], 10);
    assert_eq!(document["error"]["exit_code"], 10);
}

#[test]
fn a_config_naming_an_empty_directory_is_not_a_repository() {
    let sandbox = Sandbox::new();
    let empty = sandbox.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(
        sandbox.config(),
        format!("[repository]\nurl = {:?}\n", empty.to_str().unwrap()),
    )
    .unwrap();
    let (_, stderr) = sandbox.run(&["list"], 10);
    assert!(stderr.contains("zib: error:"), "{stderr}");
}

#[test]
fn a_config_file_with_a_typo_is_a_usage_error_naming_the_line() {
    let sandbox = Sandbox::new();
    std::fs::write(
        sandbox.config(),
        "[repository]\nurl = \"/x\"\nregoin = \"eu\"\n",
    )
    .unwrap();
    let (_, stderr) = sandbox.run(&["list"], 2);
    assert_clean_error(&stderr, "(line 3)");
    assert!(stderr.contains("regoin"), "{stderr}");
}

#[test]
fn init_list_status_cost_verify_on_an_empty_repository() {
    let sandbox = Sandbox::new();
    let repository = sandbox.init_local();
    let config = std::fs::read_to_string(sandbox.config()).unwrap();
    assert!(config.contains(repository.to_str().unwrap()), "{config}");
    // A second init of the same URL finds the repository there.
    let (_, stderr) = sandbox.run(&["init", repository.to_str().unwrap()], 1);
    assert!(stderr.contains("zib: error:"), "{stderr}");

    let (stdout, _) = sandbox.run(&["list"], 0);
    assert!(stdout.contains("holds no backup yet"), "{stdout}");
    let status = sandbox.json(&["status"], 0);
    assert!(status["repository_id"].is_string(), "{status}");
    assert_eq!(status["datasets"], serde_json::json!([]));
    let cost = sandbox.json(&["cost"], 0);
    assert_eq!(cost["stored_bytes"], 0);
    assert_eq!(cost["projection"].as_array().unwrap().len(), 12);
    let verify = sandbox.json(&["verify"], 0);
    assert_eq!(verify["clean"], true, "{verify}");
    // Every command reads the passphrase from the file; none needs the URL again.
    let (stdout, _) = sandbox.run(&["restore", "--status"], 0);
    assert!(stdout.contains("No restore job"), "{stdout}");
    sandbox.run(&["restore"], 0);
    let cleanup = sandbox.json(&["cleanup", "--dry-run"], 0);
    assert_eq!(cleanup["dry_run"], true);
}

#[test]
fn a_state_directory_that_cannot_be_one_is_named_with_what_to_do() {
    let sandbox = Sandbox::new();
    sandbox.init_local();
    // Missing: nothing is in it yet, which is no error (it is made when first written).
    assert!(!sandbox.state().exists());
    sandbox.run(&["restore", "--status"], 0);
    // Under a regular file: it cannot be made, and the error says which setting to fix.
    let file = sandbox.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let state = file.join("state");
    let output = sandbox
        .zib()
        .env("ZIB_STATE_DIR", &state)
        .args(["restore", "--status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_clean_error(&stderr, "not-a-directory/state");
    assert!(
        stderr.contains("zib: hint:") && stderr.contains("ZIB_STATE_DIR"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_passphrase_exits_12() {
    let sandbox = Sandbox::new();
    sandbox.init_local();
    let wrong = sandbox.path().join("wrong");
    sandbox.write_passphrase(&wrong, "not the passphrase");
    let output = sandbox
        .zib()
        .env("ZIB_PASSPHRASE_FILE", &wrong)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(12));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_clean_error(&stderr, "passphrase");
    // The passphrase itself is never printed.
    assert!(!stderr.contains("not the passphrase"), "{stderr}");
    // From the environment, the same.
    let output = sandbox
        .zib()
        .env_remove("ZIB_PASSPHRASE_FILE")
        .env("ZIB_PASSPHRASE", "still wrong")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(12));
}

#[test]
fn a_passphrase_file_that_is_missing_fails_and_a_world_readable_one_warns() {
    let sandbox = Sandbox::new();
    sandbox.init_local();
    let missing = sandbox.path().join("nope");
    let output = sandbox
        .zib()
        .env("ZIB_PASSPHRASE_FILE", &missing)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_clean_error(
        &String::from_utf8_lossy(&output.stderr),
        "could not read the passphrase file",
    );
    std::fs::set_permissions(
        sandbox.passphrase_file(),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (_, stderr) = sandbox.run(&["list"], 0);
    assert!(stderr.contains("can be read by other users"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn no_passphrase_and_no_terminal_is_a_usage_error() {
    let sandbox = Sandbox::new();
    sandbox.init_local();
    // init wrote the passphrase file it was given into the config; take it out.
    let config = std::fs::read_to_string(sandbox.config()).unwrap();
    let config: String = config
        .lines()
        .filter(|line| !line.starts_with("passphrase_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(sandbox.config(), config).unwrap();
    let output = sandbox
        .zib()
        .env_remove("ZIB_PASSPHRASE_FILE")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_clean_error(&String::from_utf8_lossy(&output.stderr), "no passphrase");
}

#[test]
fn malformed_urls_sizes_and_durations_are_usage_errors() {
    let sandbox = Sandbox::new();
    let (_, stderr) = sandbox.run(&["init", "ftp://example.com/x"], 2);
    assert!(stderr.contains("zib: error:"), "{stderr}");
    let (_, stderr) = sandbox.run(&["init", "s3://"], 2);
    assert!(stderr.contains("zib: error:"), "{stderr}");
    let (_, stderr) = sandbox.run(
        &[
            "restore",
            "tank/photos",
            "--into",
            "tank/r",
            "--monthly-budget",
            "lots",
        ],
        2,
    );
    assert!(stderr.contains("is not a size"), "{stderr}");
    let (_, stderr) = sandbox.run(&["status", "--max-age", "soon"], 2);
    assert!(stderr.contains("is not a duration"), "{stderr}");
    let (_, stderr) = sandbox.run(&["init", "/tmp/x", "--storage-class", "COLD"], 2);
    assert!(stderr.contains("not an S3 storage class"), "{stderr}");
    // The passphrase is never an argument.
    sandbox.run(&["list", "--passphrase", "x"], 2);
}

#[test]
fn an_unknown_dataset_in_the_catalog_is_named() {
    let sandbox = Sandbox::new();
    sandbox.init_local();
    let (_, stderr) = sandbox.run(&["list", "tank/nothing"], 1);
    assert_clean_error(&stderr, "tank/nothing");
    let (_, stderr) = sandbox.run(&["restore", "tank/nothing", "--into", "tank/r", "--yes"], 1);
    assert_clean_error(&stderr, "tank/nothing");
}

#[test]
fn an_unreachable_endpoint_fails_with_a_hint() {
    let sandbox = Sandbox::new();
    // A port nothing listens on.
    let port = zib_test_utils::moto::free_port();
    let (_, stderr) = sandbox.run(
        &[
            "init",
            "s3://zib-test-bucket",
            "--endpoint-url",
            &format!("http://127.0.0.1:{port}"),
        ],
        1,
    );
    assert_clean_error(&stderr, "zib-test-bucket");
    assert!(stderr.contains("zib: hint:"), "{stderr}");
}

#[test]
fn consolidate_refuses_bad_input_with_its_exit_code() {
    let sandbox = Sandbox::new();
    sandbox.init_local();
    // No dataset named, and the config lists none: usage.
    let (_, stderr) = sandbox.run(&["consolidate"], 2);
    assert_clean_error(&stderr, "no dataset named");
    // There is no preview of deletions: --dry-run refuses rather than pretends.
    let (_, stderr) = sandbox.run(
        &["consolidate", "--delete-only", "--dry-run", "tank/photos"],
        2,
    );
    assert_clean_error(&stderr, "no preview of deletions");
    // --delete-only backs up nothing, so there is no full to force.
    sandbox.run(
        &["consolidate", "--delete-only", "--force", "tank/photos"],
        2,
    );
    // A dataset the repository holds no backup of.
    let failed = sandbox.json(&["consolidate", "--delete-only", "tank/photos"], 1);
    assert_eq!(failed["datasets"][0]["status"], "failed", "{failed}");
    let (_, stderr) = sandbox.run(&["consolidate", "--delete-only", "tank/photos"], 1);
    assert_clean_error(&stderr, "holds no backup of tank/photos");
}

#[test]
fn key_export_writes_the_keyring_and_a_recovery_kit_and_it_opens_the_repository() {
    let sandbox = Sandbox::new();
    let repository = sandbox.init_local();
    let kit = sandbox.path().join("usb");
    let export = sandbox.json(&["key", "export", kit.to_str().unwrap()], 0);
    let keyring = std::path::PathBuf::from(export["keyring_file"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(&keyring).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for file in ["README.txt", "FORMAT.md", "zib_reference.py"] {
        assert!(kit.join(file).is_file(), "{file}");
    }
    // The live keyring lost: the offline copy opens the repository and puts it back.
    let live = repository.join("zib/keyring");
    let live = if live.exists() {
        live
    } else {
        // The key layout is FORMAT.md's; find the object named keyring.
        walk(&repository)
            .into_iter()
            .find(|path| path.file_name().is_some_and(|name| name == "keyring"))
            .expect("a keyring object")
    };
    std::fs::remove_file(&live).unwrap();
    let (_, stderr) = sandbox.run(&["list"], 1);
    assert!(stderr.contains("key recover"), "{stderr}");
    let keyring_arg = keyring.to_str().unwrap();
    sandbox.run(&["--keyring", keyring_arg, "list"], 0);
    let recovered = sandbox.json(&["--keyring", keyring_arg, "key", "recover"], 0);
    assert_eq!(recovered["keyring"], "written", "{recovered}");
    sandbox.run(&["list"], 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn passwd_rewraps_the_keyring_and_the_old_passphrase_no_longer_opens_it() {
    let sandbox = Sandbox::new();
    sandbox.init_local();
    let new = sandbox.path().join("new-passphrase");
    sandbox.write_passphrase(&new, "an even longer family passphrase");
    let output = sandbox
        .zib()
        .env("ZIB_NEW_PASSPHRASE_FILE", &new)
        .arg("passwd")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    sandbox.run(&["list"], 12);
    let output = sandbox
        .zib()
        .env("ZIB_PASSPHRASE_FILE", &new)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}
