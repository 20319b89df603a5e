//! The crabpot host: one daemon (`crabpot serve`) that routes chat messages into per-session
//! SQLite files, runs one Docker container per session, proxies its model calls and delivers
//! its replies, plus the client commands that talk to it: `crabpot chat`, `crabpot status` and
//! the admin CLI `crabpot <resource> <verb>` ([`command`] over the [`admin`] API).
//!
//! Flow: a [`channels::Channel`] pushes an event into the [`router`], which writes a
//! `messages_in` row through the [`session`] store and wakes the [`supervisor`]; the session's
//! container calls the model through the [`proxy`] and writes `outbound.db`, which
//! [`delivery`] validates, re-checks against the central DB, and hands to a channel or to
//! another agent's session, or carries out as a system action ([`tasks`] for schedules,
//! [`agents`] for agents that create agents). The [`sweep`] watches containers and wakes
//! sessions whose scheduled tasks come due. Only [`runtime`] knows Docker.

pub mod admin;
pub mod agents;
pub mod bridge;
pub mod channels;
pub mod chat;
pub mod command;
pub mod config;
pub mod db;
pub mod delivery;
pub mod edge;
pub mod egress;
pub mod fd_budget;
pub mod log_gate;
pub mod metrics;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod schedule;
pub mod secrets;
pub mod serve;
pub mod session;
pub mod supervisor;
pub mod sweep;
pub mod tasks;
pub mod web;
