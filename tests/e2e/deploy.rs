//! The deployment files (docker-compose.yml, deploy/Dockerfile, deploy/k8s) cannot run here
//! (no container engine): they are parsed and checked against each other and against the
//! binary's own flags.

use crate::harness::{CACHEPLANE, run_python};

#[test]
fn deployment_files_parse_and_agree_with_the_binary() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = run_python("deploy_files.py", &[root, CACHEPLANE]);
    assert_eq!(out.trim(), "deploy ok");
}
