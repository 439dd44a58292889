//! Keeps the HDFS login's ticket fresh and visible: acquires it at a quarter of its remaining
//! life, counts each new ticket, and puts a failing login on `/health` with backoff retries.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Login;
use crate::events;
use crate::health::Health;

const CHECK_MIN: Duration = Duration::from_secs(5);
const CHECK_MAX: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A ticket whose end moved later by more than this is a new ticket (end times are whole
/// seconds, and the remaining life is read a moment after it is computed).
const SAME_TICKET_SLACK: Duration = Duration::from_secs(2);

/// Runs until the task is dropped.
pub async fn keep(login: Login, health: Arc<Health>) {
    let mut ticket_end: Option<SystemTime> = None;
    let mut retry = Duration::from_secs(1);
    loop {
        let l = login.clone();
        let result = tokio::task::spawn_blocking(move || l.acquire())
            .await
            .expect("kerberos acquire panicked");
        let now = SystemTime::now();
        let wait = match result {
            Ok(remaining) => {
                let end = now + remaining;
                if is_new(ticket_end, end) {
                    events::kerberos_ticket(login.principal(), remaining, end);
                }
                ticket_end = Some(end);
                retry = Duration::from_secs(1);
                health.set_kerberos(None);
                (remaining / 4).clamp(CHECK_MIN, CHECK_MAX)
            }
            Err(e) => {
                let left = ticket_end.and_then(|end| end.duration_since(now).ok());
                let reason = match left {
                    Some(l) => format!("{e} (the current ticket ends in {} s)", l.as_secs()),
                    None => e.to_string(),
                };
                events::kerberos_login_failed(&reason, retry);
                health.set_kerberos(Some(format!("kerberos login failing: {reason}")));
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn is_new(old_end: Option<SystemTime>, end: SystemTime) -> bool {
    match old_end {
        None => true,
        Some(old) => end.duration_since(old).is_ok_and(|d| d > SAME_TICKET_SLACK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_new_only_when_its_end_moves_later() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(is_new(None, t));
        assert!(!is_new(Some(t), t + Duration::from_secs(1)));
        assert!(!is_new(Some(t), t - Duration::from_secs(30)));
        assert!(is_new(Some(t), t + Duration::from_secs(60)));
    }
}
