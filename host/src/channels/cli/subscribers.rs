//! Who receives which chat on `cli.sock`: [`Subscribers`], the registry of connected
//! terminals, what each subscribed to, and which chats have a reply waiting for a terminal.
//!
//! Subscription is per chat (a `platform_id` of channel `cli`), every thread of it included:
//! the terminal has no threads of its own, and a chat's replies may name any thread. A
//! connection subscribes explicitly (`subscribe`) or by sending a `message` or `answer` in a
//! chat, or to every chat at once (`all_chats`, for a script playing a whole platform).
//!
//! Delivery to a chat with no subscriber fails with `NoRecipient`, and the chat is noted as
//! waiting; the next subscription to it (or to every chat) reports it, so the channel can tell
//! delivery to try again. Both happen under one lock, so a reply is never lost between a
//! failed delivery and a subscription arriving at the same moment. The waiting chats are
//! addresses delivery chose from the host's own routing, not from client input, so the map
//! stays as small as the set of chats.

use super::Outgoing;
use crate::edge::ChatAddress;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most chats one connection may subscribe to one by one (past it: `all_chats`).
pub const MAX_CHATS_PER_CLIENT: usize = 1024;

/// What a connection asks to receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    Chat(String),
    AllChats,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    /// Not retryable on this connection: subscribe to every chat instead.
    #[error(
        "this connection is subscribed to {max} chats already; subscribe with all_chats instead"
    )]
    TooMany { max: usize },
}

/// One connected terminal, as deliveries see it.
#[derive(Clone)]
pub struct Recipient {
    /// The connection's id, to unregister it when it fails to take a line.
    pub id: u64,
    pub sender: mpsc::Sender<Outgoing>,
    /// Cancelled to close the connection (a terminal that does not read).
    pub closed: CancellationToken,
}

struct Client {
    recipient: Recipient,
    chats: HashSet<String>,
    all_chats: bool,
}

impl Client {
    fn receives(&self, platform_id: &str) -> bool {
        self.all_chats || self.chats.contains(platform_id)
    }
}

#[derive(Default)]
struct Registry {
    clients: HashMap<u64, Client>,
    /// By platform id: the last address a delivery found no terminal for.
    waiting: HashMap<String, ChatAddress>,
}

/// The registry; every method takes the one lock briefly and never awaits.
#[derive(Default)]
pub struct Subscribers {
    registry: Mutex<Registry>,
}

impl Subscribers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection, subscribed to nothing yet.
    pub fn register(&self, id: u64, recipient: Recipient) {
        self.lock().clients.insert(
            id,
            Client {
                recipient,
                chats: HashSet::new(),
                all_chats: false,
            },
        );
    }

    /// The connection is gone.
    pub fn unregister(&self, id: u64) {
        self.lock().clients.remove(&id);
    }

    /// Subscribes connection `id`. Returns the waiting chats it now receives (empty when
    /// nothing waits, or it was subscribed already), for the channel to report as arrived.
    pub fn subscribe(
        &self,
        id: u64,
        subscription: &Subscription,
    ) -> Result<Vec<ChatAddress>, SubscribeError> {
        let mut registry = self.lock();
        let Registry { clients, waiting } = &mut *registry;
        let Some(client) = clients.get_mut(&id) else {
            return Ok(Vec::new());
        };
        match subscription {
            Subscription::AllChats => {
                if client.all_chats {
                    return Ok(Vec::new());
                }
                client.all_chats = true;
                Ok(waiting.drain().map(|(_, address)| address).collect())
            }
            Subscription::Chat(platform_id) => {
                if client.receives(platform_id) {
                    return Ok(Vec::new());
                }
                if client.chats.len() >= MAX_CHATS_PER_CLIENT {
                    return Err(SubscribeError::TooMany {
                        max: MAX_CHATS_PER_CLIENT,
                    });
                }
                client.chats.insert(platform_id.clone());
                Ok(waiting.remove(platform_id).into_iter().collect())
            }
        }
    }

    /// The connections that receive `to`'s chat. When there are none, `to` is noted as
    /// waiting (in the same critical section, see the module documentation).
    pub fn recipients_or_wait(&self, to: &ChatAddress) -> Vec<Recipient> {
        let mut registry = self.lock();
        let recipients = recipients(&registry, &to.platform_id);
        if recipients.is_empty() {
            registry.waiting.insert(to.platform_id.clone(), to.clone());
        }
        recipients
    }

    /// The connections that receive `to`'s chat; nothing is noted when there are none.
    pub fn recipients(&self, to: &ChatAddress) -> Vec<Recipient> {
        recipients(&self.lock(), &to.platform_id)
    }

    /// Notes `to` as waiting after its terminals failed to take a reply, whoever else is
    /// subscribed: the next subscription to the chat then reports it.
    pub fn wait(&self, to: &ChatAddress) {
        self.lock()
            .waiting
            .insert(to.platform_id.clone(), to.clone());
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn n_clients(&self) -> usize {
        self.lock().clients.len()
    }
}

fn recipients(registry: &Registry, platform_id: &str) -> Vec<Recipient> {
    registry
        .clients
        .values()
        .filter(|client| client.receives(platform_id))
        .map(|client| client.recipient.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(platform_id: &str, thread: Option<&str>) -> ChatAddress {
        ChatAddress {
            channel_type: "cli".into(),
            platform_id: platform_id.into(),
            thread_id: thread.map(str::to_owned),
        }
    }

    fn connect(subscribers: &Subscribers, id: u64) -> mpsc::Receiver<Outgoing> {
        let (sender, receiver) = mpsc::channel(4);
        subscribers.register(
            id,
            Recipient {
                id,
                sender,
                closed: CancellationToken::new(),
            },
        );
        receiver
    }

    #[test]
    fn a_chat_waits_until_someone_subscribes_to_it() {
        let subscribers = Subscribers::default();
        let _receiver = connect(&subscribers, 1);
        let room = address("room", Some("t1"));
        assert!(subscribers.recipients_or_wait(&room).is_empty());
        // Another chat does not take it; the chat itself reports the waiting address.
        let other = Subscription::Chat("other".into());
        assert_eq!(subscribers.subscribe(1, &other), Ok(Vec::new()));
        let chat = Subscription::Chat("room".into());
        assert_eq!(subscribers.subscribe(1, &chat), Ok(vec![room.clone()]));
        // Subscribing again reports nothing; the chat (any thread) now has a recipient.
        assert_eq!(subscribers.subscribe(1, &chat), Ok(Vec::new()));
        assert_eq!(
            subscribers.recipients_or_wait(&address("room", None)).len(),
            1
        );
        subscribers.unregister(1);
        assert!(subscribers.recipients(&room).is_empty());
    }

    #[test]
    fn all_chats_takes_every_waiting_chat() {
        let subscribers = Subscribers::default();
        let _receiver = connect(&subscribers, 7);
        for chat in ["a", "b"] {
            subscribers.recipients_or_wait(&address(chat, None));
        }
        let mut arrived = subscribers.subscribe(7, &Subscription::AllChats).unwrap();
        arrived.sort_by(|x, y| x.platform_id.cmp(&y.platform_id));
        assert_eq!(arrived, [address("a", None), address("b", None)]);
        assert_eq!(subscribers.recipients(&address("z", None)).len(), 1);
    }

    #[test]
    fn one_connection_subscribes_to_a_bounded_number_of_chats() {
        let subscribers = Subscribers::default();
        let _receiver = connect(&subscribers, 1);
        for n in 0..MAX_CHATS_PER_CLIENT {
            subscribers
                .subscribe(1, &Subscription::Chat(format!("c{n}")))
                .unwrap();
        }
        assert_eq!(
            subscribers.subscribe(1, &Subscription::Chat("one more".into())),
            Err(SubscribeError::TooMany {
                max: MAX_CHATS_PER_CLIENT
            })
        );
        assert_eq!(
            subscribers.subscribe(1, &Subscription::AllChats),
            Ok(Vec::new())
        );
    }

    #[test]
    fn a_chat_noted_waiting_is_reported_to_the_next_subscriber() {
        let subscribers = Subscribers::default();
        let _first = connect(&subscribers, 1);
        let _second = connect(&subscribers, 2);
        let room = address("room", None);
        subscribers
            .subscribe(1, &Subscription::Chat("room".into()))
            .unwrap();
        subscribers.wait(&room);
        assert_eq!(
            subscribers.subscribe(2, &Subscription::Chat("room".into())),
            Ok(vec![room])
        );
    }
}
