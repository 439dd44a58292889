//! One shutdown notice for every part of the daemon, after tokio mini-redis's `shutdown.rs`: a
//! `Trigger` owns a `broadcast` sender, each part holds a `Shutdown` listener, and completion
//! is the last listener dropping (an `mpsc` channel whose senders the listeners hold), so the
//! trigger can wait until every part has finished.
//!
//! Imports nothing of flumen, so every layer may take a listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

/// Sends the notice and waits for the listeners to finish. Dropping it sends the notice too.
pub struct Trigger {
    /// Set just before the broadcast sender is dropped. [`Shutdown::check`] reads it: the Kafka
    /// thread checks once per poll, and an atomic load costs about 1 ns where `try_recv` on
    /// the broadcast took about 40 ns of locking (measured on this machine).
    fired: Arc<AtomicBool>,
    /// Dropped to send the notice: every receiver then sees `Closed`. Nothing is ever sent.
    notify: Option<broadcast::Sender<()>>,
    /// `None` only inside [`Trigger::finished`].
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
}

impl Default for Trigger {
    fn default() -> Self {
        let (notify, _) = broadcast::channel(1);
        let (done_tx, done_rx) = mpsc::channel(1);
        Trigger {
            fired: Arc::default(),
            notify: Some(notify),
            done_tx: Some(done_tx),
            done_rx,
        }
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.fire();
    }
}

impl Trigger {
    /// A listener. Until it is dropped, [`Trigger::finished`] counts its holder as running.
    /// A listener made after [`Trigger::fire`] has already heard the notice.
    pub fn listener(&self) -> Shutdown {
        let notify = match &self.notify {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        };
        let done = self.done_tx.clone().expect("taken only by finished");
        Shutdown {
            is_shutdown: false,
            heard: false,
            fired: self.fired.clone(),
            notify,
            after: None,
            done: Running(done),
        }
    }

    /// Sends the notice to every listener. Idempotent.
    pub fn fire(&mut self) {
        self.fired.store(true, Ordering::Release);
        self.notify = None;
    }

    /// Sends the notice if it was not yet sent, then waits until every listener and
    /// [`Running`] token is dropped, at most `limit`. False if some were still running then.
    pub async fn finished(mut self, limit: Duration) -> bool {
        self.fire();
        self.done_tx = None;
        // `recv` answers `None` once the last sender, held by a listener, is gone.
        tokio::time::timeout(limit, self.done_rx.recv())
            .await
            .is_ok()
    }
}

/// Counts its holder as running until dropped, for a part that must outlive its listener
/// (a server still closing after it heard the notice).
pub struct Running(#[allow(dead_code)] mpsc::Sender<()>);

/// A part's view of the shutdown notice.
pub struct Shutdown {
    /// The notice arrived and the gate, if any, is open.
    is_shutdown: bool,
    /// The notice came (the gate may still be shut).
    heard: bool,
    fired: Arc<AtomicBool>,
    notify: broadcast::Receiver<()>,
    /// A gate held shut until the stage in front of this one has finished: its sender is
    /// dropped then. For a pipeline stage that must drain after the one feeding it.
    after: Option<oneshot::Receiver<()>>,
    done: Running,
}

impl Shutdown {
    /// Whether the notice was seen by [`Shutdown::check`] or [`Shutdown::recv`].
    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Whether the notice has arrived, without waiting: for OS threads and loop heads.
    pub fn check(&mut self) -> bool {
        if !self.heard {
            // Set before the broadcast sender goes, so this sees every notice `recv` would.
            self.heard = self.fired.load(Ordering::Acquire);
        }
        if self.heard {
            let open = self.after.as_mut().is_none_or(|gate| {
                !matches!(gate.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            });
            if open {
                self.after = None;
                self.is_shutdown = true;
            }
        }
        self.is_shutdown
    }

    /// Waits for the notice. Cancel-safe: it may lose a `select!` and be called again.
    pub async fn recv(&mut self) {
        if !self.heard {
            // Nothing is ever sent: `Closed` (the trigger dropped its sender) is the notice.
            let _ = self.notify.recv().await;
            self.heard = true;
        }
        if let Some(gate) = self.after.as_mut() {
            // Either the stage ahead finished (sent) or it dropped the sender: open both ways.
            let _ = gate.await;
            self.after = None;
        }
        self.is_shutdown = true;
    }

    /// This listener, heard only once the notice came and `gate`'s sender is gone (or sent).
    pub fn after(mut self, gate: oneshot::Receiver<()>) -> Shutdown {
        self.after = Some(gate);
        self
    }

    /// A token that keeps this part counted as running after the listener is consumed.
    pub fn running(&self) -> Running {
        Running(self.done.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn every_listener_hears_one_fire() {
        let mut t = Trigger::default();
        let (mut a, mut b) = (t.listener(), t.listener());
        assert!(!a.check());
        assert!(!a.is_shutdown());
        t.fire();
        assert!(a.check());
        assert!(a.is_shutdown());
        runtime().block_on(b.recv());
        assert!(b.is_shutdown());
        assert!(
            t.listener().check(),
            "a listener made after the fire has heard it"
        );
    }

    #[test]
    fn dropping_the_trigger_is_a_notice() {
        let t = Trigger::default();
        let mut l = t.listener();
        drop(t);
        assert!(l.check());
        let t = Trigger::default();
        let mut l = t.listener();
        drop(t);
        runtime().block_on(l.recv());
        assert!(l.is_shutdown());
    }

    #[test]
    fn a_gated_listener_waits_for_the_stage_ahead() {
        let mut t = Trigger::default();
        let (gate_tx, gate_rx) = oneshot::channel::<()>();
        let mut l = t.listener().after(gate_rx);
        t.fire();
        assert!(!l.check(), "the stage ahead is still running");
        drop(gate_tx);
        assert!(l.check());
    }

    #[test]
    fn finished_waits_for_every_listener_and_token() {
        let rt = runtime();
        assert!(rt.block_on(Trigger::default().finished(Duration::from_secs(1))));
        let t = Trigger::default();
        let l = t.listener();
        let token = l.running();
        drop(l);
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(token);
        });
        assert!(rt.block_on(t.finished(Duration::from_secs(5))));
        holder.join().unwrap();
        let t = Trigger::default();
        let _held = t.listener();
        assert!(
            !rt.block_on(t.finished(Duration::from_millis(50))),
            "a listener still alive at the limit"
        );
    }
}
