//! The deployment files (docker-compose.yml, deploy/Dockerfile, deploy/k8s) cannot run here
//! (no container engine): they are parsed and checked against each other and against the
//! binary's own flags.

use std::process::Command;

use crate::harness::CACHEPLANE;

#[test]
fn deployment_files_parse_and_agree_with_the_binary() {
    let python = std::env::var("CACHEPLANE_TEST_PYTHON")
        .expect("CACHEPLANE_TEST_PYTHON: run scripts/test.sh");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let script = format!("{root}/tests/e2e/python/deploy_files.py");
    let out = Command::new(python)
        .args([&script, root, CACHEPLANE])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the deployment files disagree:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "deploy ok");
}
