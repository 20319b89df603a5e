//! Who is watching which conversation: [`Hubs`] keeps one tokio broadcast per conversation
//! with watchers, and [`Subscription`] reads one conversation's events in order, each durable
//! event exactly once.
//!
//! A subscription is made before the log is read, so nothing falls between the two. Durable
//! events carry ids that grow by one; a subscription that sees a gap (two deliveries
//! broadcast out of order, or it lagged behind the broadcast) reads what it missed from the
//! log, and skips what it has already passed, so a reader never loses or repeats one.

use super::events::ConversationEvent;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Events buffered per conversation for slow watchers; past it they read the log instead.
const BROADCAST_CAPACITY: usize = 256;

/// The live broadcasts, per conversation id.
#[derive(Default)]
pub struct Hubs {
    senders: Mutex<HashMap<String, broadcast::Sender<ConversationEvent>>>,
}

impl Hubs {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<ConversationEvent>>> {
        self.senders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver of every event published for `conversation_id` from now on.
    pub fn subscribe(&self, conversation_id: &str) -> broadcast::Receiver<ConversationEvent> {
        let mut senders = self.lock();
        senders
            .entry(conversation_id.to_owned())
            .or_insert_with(|| broadcast::channel(BROADCAST_CAPACITY).0)
            .subscribe()
    }

    /// Sends to whoever watches; a conversation nobody watches any more is forgotten.
    pub fn publish(&self, conversation_id: &str, event: ConversationEvent) {
        let mut senders = self.lock();
        if let Some(sender) = senders.get(conversation_id)
            && sender.send(event).is_err()
        {
            senders.remove(conversation_id);
        }
    }

    /// How many conversations have watchers (for tests).
    #[cfg(test)]
    pub fn n_watched(&self) -> usize {
        self.lock().len()
    }
}

/// What a subscription needs from the log: the durable events after an id.
pub trait LogReader: Send + Sync {
    fn read_after(
        &self,
        conversation_id: &str,
        after: i64,
    ) -> futures_util::future::BoxFuture<'_, Vec<ConversationEvent>>;
}

/// One watcher of one conversation.
pub struct Subscription {
    conversation_id: String,
    receiver: broadcast::Receiver<ConversationEvent>,
    /// The id of the last durable event handed out (or skipped as seen).
    after: i64,
    /// Durable events read from the log, not handed out yet.
    pending: VecDeque<ConversationEvent>,
}

impl Subscription {
    /// Watches `conversation_id`, starting after event `after`: call [`Subscription::catch_up`]
    /// (or let [`Subscription::next`] do it) to get what the log holds past it.
    pub fn new(hubs: &Hubs, conversation_id: &str, after: i64) -> Subscription {
        Subscription {
            conversation_id: conversation_id.to_owned(),
            receiver: hubs.subscribe(conversation_id),
            after,
            pending: VecDeque::new(),
        }
    }

    /// The same subscription, handing out only durable events after `after`.
    pub fn starting_after(mut self, after: i64) -> Subscription {
        self.after = after;
        self
    }

    /// The id of the last durable event handed out.
    pub fn last_event_id(&self) -> i64 {
        self.after
    }

    /// Reads the log past what was handed out into the queue.
    pub async fn catch_up(&mut self, log: &dyn LogReader) {
        let mut last = self
            .pending
            .back()
            .and_then(|event| event.event_id)
            .unwrap_or(self.after);
        loop {
            let read = log.read_after(&self.conversation_id, last).await;
            let Some(newest) = read.last().and_then(|event| event.event_id) else {
                return;
            };
            last = newest;
            let full = read.len() >= crate::db::central::web_chats::MAX_EVENTS_PER_READ;
            self.pending.extend(read);
            if !full {
                return;
            }
        }
    }

    /// The next event: what the log held first, then the live ones; `None` once the
    /// conversation's broadcast is gone (the channel stopped).
    pub async fn next(&mut self, log: &dyn LogReader) -> Option<ConversationEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                match event.event_id {
                    Some(id) if id <= self.after => continue,
                    Some(id) => {
                        self.after = id;
                        return Some(event);
                    }
                    None => return Some(event),
                }
            }
            match self.receiver.recv().await {
                Ok(event) => match event.event_id {
                    None => return Some(event),
                    Some(id) if id <= self.after => {}
                    Some(id) if id == self.after + 1 => {
                        self.after = id;
                        return Some(event);
                    }
                    // A gap: what is missing is in the log (it was stored before it was sent).
                    Some(_) => self.catch_up(log).await,
                },
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(log).await,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::web::events::EventBody;
    use std::sync::Arc;

    /// A log held in memory.
    #[derive(Default)]
    struct MemoryLog {
        events: Mutex<Vec<ConversationEvent>>,
    }

    impl MemoryLog {
        fn store(&self, id: i64) -> ConversationEvent {
            let event = ConversationEvent {
                event_id: Some(id),
                body: EventBody::TurnComplete {
                    message_id: format!("m{id}"),
                },
            };
            self.events.lock().unwrap().push(event.clone());
            event
        }
    }

    impl LogReader for MemoryLog {
        fn read_after(
            &self,
            _conversation_id: &str,
            after: i64,
        ) -> futures_util::future::BoxFuture<'_, Vec<ConversationEvent>> {
            let events: Vec<ConversationEvent> = self
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.event_id.is_some_and(|id| id > after))
                .cloned()
                .collect();
            Box::pin(async move { events })
        }
    }

    fn typing() -> ConversationEvent {
        ConversationEvent {
            event_id: None,
            body: EventBody::Typing { on: true },
        }
    }

    async fn ids(subscription: &mut Subscription, log: &MemoryLog, n: usize) -> Vec<Option<i64>> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(subscription.next(log).await.unwrap().event_id);
        }
        ids
    }

    #[tokio::test]
    async fn a_reconnect_gets_the_rest_of_the_log_then_live_events_once() {
        let hubs = Hubs::default();
        let log = MemoryLog::default();
        log.store(1);
        log.store(2);
        let mut subscription = Subscription::new(&hubs, "c", 1);
        let third = log.store(3);
        subscription.catch_up(&log).await;
        // Event 3 is published live as well as read from the log: it comes once.
        hubs.publish("c", third);
        hubs.publish("c", typing());
        let event = log.store(4);
        hubs.publish("c", event);
        assert_eq!(
            ids(&mut subscription, &log, 4).await,
            vec![Some(2), Some(3), None, Some(4)]
        );
        assert_eq!(subscription.last_event_id(), 4);
    }

    #[tokio::test]
    async fn events_sent_out_of_order_come_in_order() {
        let hubs = Hubs::default();
        let log = MemoryLog::default();
        let mut subscription = Subscription::new(&hubs, "c", 0);
        let first = log.store(1);
        let second = log.store(2);
        hubs.publish("c", second);
        hubs.publish("c", first);
        let third = log.store(3);
        hubs.publish("c", third);
        assert_eq!(
            ids(&mut subscription, &log, 3).await,
            vec![Some(1), Some(2), Some(3)]
        );
    }

    #[tokio::test]
    async fn a_lagging_watcher_reads_what_it_missed_from_the_log() {
        let hubs = Hubs::default();
        let log = Arc::new(MemoryLog::default());
        let mut subscription = Subscription::new(&hubs, "c", 0);
        let n = i64::try_from(BROADCAST_CAPACITY * 2).unwrap();
        for id in 1..=n {
            let event = log.store(id);
            hubs.publish("c", event);
        }
        let got = ids(&mut subscription, &log, BROADCAST_CAPACITY * 2).await;
        let expected: Vec<Option<i64>> = (1..=n).map(Some).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_conversation_nobody_watches_is_forgotten() {
        let hubs = Hubs::default();
        let subscription = Subscription::new(&hubs, "c", 0);
        assert_eq!(hubs.n_watched(), 1);
        drop(subscription);
        hubs.publish("c", typing());
        assert_eq!(hubs.n_watched(), 0);
    }
}
