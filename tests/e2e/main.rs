//! End-to-end tests: real processes (the `cacheplane` binary, redis-server, redis-cli)
//! talking over TCP on 127.0.0.1.

mod azure_cli;
mod dashboard;
mod deploy;
mod drills;
mod hardening;
mod harness;
mod isolation;
mod memory;
mod node_clients;
mod node_compat;
mod node_introspection;
mod node_protocol;
mod node_server;
mod persistence;
mod scripting;
mod serve;
mod storage;
mod streams;
mod tls;
