//! "It changed", said by a source — a node's kernel, the API server's
//! watches, a bundle directory, the agents — to whoever reads again on it.

use std::sync::Arc;
use std::sync::mpsc::Sender;

/// How a source says it changed: as a message of the receiver's own
/// choosing, on the receiver's channel, so that the dashboard's reader
/// tells its sources apart without a thread per source to tag their
/// signals. Each such thread was one more wake-up on a change's way to
/// the screen, and on two cores kept busy by a cluster's control plane
/// every wake-up is a wait for a core.
#[derive(Clone)]
pub struct Signal(Arc<dyn Fn() -> bool + Send + Sync>);

impl Signal {
    /// Sends `what` on `to` for each change.
    pub fn to<T: Clone + Send + Sync + 'static>(to: Sender<T>, what: T) -> Signal {
        Signal(Arc::new(move || to.send(what.clone()).is_ok()))
    }

    /// Says the source changed; `false` once no one listens (the source
    /// stops then).
    pub fn send(&self) -> bool {
        (self.0)()
    }
}

impl From<Sender<()>> for Signal {
    fn from(to: Sender<()>) -> Signal {
        Signal::to(to, ())
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signal")
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;

    #[test]
    fn each_signal_arrives_as_its_message_until_the_receiver_is_gone() {
        let (tx, rx) = std::sync::mpsc::channel::<&str>();
        let (a, b) = (Signal::to(tx.clone(), "a"), Signal::to(tx, "b"));
        assert!(a.send() && b.send() && a.clone().send());
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["a", "b", "a"]);
        drop(rx);
        assert!(!a.send());
    }
}
