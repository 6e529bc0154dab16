//! bugbot's pure logic, shared by the gateway and consumer Workers and the executor.
//!
//! Nothing in this crate performs I/O: it holds the job and event types, command parsing, reference
//! extraction, signature checks, access decisions, rendering and API request/response shapes. It
//! builds for `wasm32-unknown-unknown` and for the host, and is where the unit tests live.

pub mod admission;
pub mod authz;
pub mod budget;
pub mod discord;
pub mod discord_api;
pub mod discord_gateway;
pub mod egress;
pub mod executor;
pub mod fix;
pub mod github;
pub mod github_api;
pub mod github_app;
pub mod http;
pub mod ids;
pub mod job;
pub mod kv;
pub mod linear;
pub mod log;
pub mod mask;
pub mod packet;
pub mod path_policy;
pub mod posthog;
pub mod references;
pub mod replies;
pub mod repo_settings;
pub mod review;
pub mod runner;
pub mod signature;
pub mod steer;
pub mod thread;
