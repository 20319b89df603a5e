//! Channels: the platform adapters and [`Channels`], the registry delivery and the bridge use
//! to find the adapter of a chat's channel type.
//!
//! The types that cross between platforms and the core ([`crate::edge`]: the [`Channel`]
//! trait, `InboundEvent`, `ChatAddress`, `OutgoingMessage`, `Capabilities`) are not defined
//! here, so adapters, the router and delivery import them from one neutral module. The first
//! adapter is [`cli`], the local terminal;
//! [`external`] serves out-of-process adapters over `data/adapters.sock`; [`web`] is the
//! browser chat; [`telegram`], [`slack`], [`discord`], [`matrix`] and [`email`] are the
//! platforms the host connects to itself ([`platforms`]); [`webhook`] serves inbound and
//! outbound webhooks.

pub mod cli;
pub mod discord;
pub mod email;
pub mod external;
pub mod http;
pub mod matrix;
pub mod platforms;
pub mod slack;
pub mod staging;
pub mod telegram;
pub mod web;
pub mod webhook;

use crate::edge::{Channel, Health};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

/// The adapters by channel type. Adapters can join while the host runs (an out-of-process
/// adapter that registers), so the map sits behind a lock that is only held to clone an
/// `Arc` out of it.
#[derive(Default)]
pub struct Channels {
    by_type: RwLock<BTreeMap<String, Arc<dyn Channel>>>,
}

/// One adapter as `crabpot status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelStatus {
    pub channel_type: String,
    pub health: Health,
}

impl Channels {
    /// Adds (or replaces) the adapter of its channel type.
    pub fn register(&self, channel: Arc<dyn Channel>) {
        self.by_type
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel.channel_type().to_owned(), channel);
    }

    pub fn get(&self, channel_type: &str) -> Option<Arc<dyn Channel>> {
        self.by_type
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel_type)
            .cloned()
    }

    /// Every adapter, by channel type.
    pub fn all(&self) -> Vec<Arc<dyn Channel>> {
        self.by_type
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Every adapter's health, by channel type.
    pub fn status(&self) -> Vec<ChannelStatus> {
        self.all()
            .iter()
            .map(|channel| ChannelStatus {
                channel_type: channel.channel_type().to_owned(),
                health: channel.health(),
            })
            .collect()
    }
}
