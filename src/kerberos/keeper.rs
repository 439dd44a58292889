//! Keeps the HDFS login's ticket fresh and visible: acquires it at a quarter of its remaining
//! life, counts each new ticket, says when renewal is overdue, and puts a failing login on
//! `/health` with backoff retries.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Login, LoginError};
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
    let mut watch = Watch::default();
    loop {
        let l = login.clone();
        let result = tokio::task::spawn_blocking(move || l.acquire())
            .await
            .expect("kerberos acquire panicked");
        let seen = watch.observe(SystemTime::now(), result);
        match &seen.event {
            Some(Event::NewTicket { life, end }) => {
                events::kerberos_ticket(login.principal(), *life, *end)
            }
            Some(Event::Overdue(reason)) => events::kerberos_renewal_overdue(reason),
            Some(Event::Failed(reason)) => events::kerberos_login_failed(reason, seen.wait),
            None => {}
        }
        health.set_kerberos(seen.problem);
        tokio::time::sleep(seen.wait).await;
    }
}

/// What one acquire showed.
#[derive(Debug, PartialEq)]
struct Seen {
    /// The `/health` reason, while there is one.
    problem: Option<String>,
    event: Option<Event>,
    /// Until the next acquire.
    wait: Duration,
}

#[derive(Debug, PartialEq)]
enum Event {
    NewTicket {
        life: Duration,
        end: SystemTime,
    },
    /// Logged once per ticket.
    Overdue(String),
    Failed(String),
}

/// The ticket as the acquires so far saw it.
#[derive(Debug, Default)]
struct Watch {
    end: Option<SystemTime>,
    /// The ticket's remaining life when it was first seen.
    life: Duration,
    overdue_told: bool,
    retry: Option<Duration>,
}

impl Watch {
    fn observe(&mut self, now: SystemTime, result: Result<Duration, LoginError>) -> Seen {
        match result {
            Ok(remaining) => self.held(now, remaining),
            Err(e) => self.failed(now, e),
        }
    }

    fn held(&mut self, now: SystemTime, remaining: Duration) -> Seen {
        self.retry = None;
        let end = now + remaining;
        let wait = (remaining / 4).clamp(CHECK_MIN, CHECK_MAX);
        if is_new(self.end, end) {
            (self.end, self.life, self.overdue_told) = (Some(end), remaining, false);
            let event = Some(Event::NewTicket {
                life: remaining,
                end,
            });
            return Seen {
                problem: None,
                event,
                wait,
            };
        }
        self.end = Some(end);
        // MIT renews at half the life; a check comes at most a quarter of it later.
        if remaining >= self.life.mul_f64(0.4) {
            return Seen {
                problem: None,
                event: None,
                wait,
            };
        }
        let reason = format!(
            "kerberos ticket not renewed at half its life: it ends in {} s (is the KDC \
             reachable? with no keytab, whoever fills the ticket cache renews it)",
            remaining.as_secs()
        );
        let event = (!self.overdue_told).then(|| Event::Overdue(reason.clone()));
        self.overdue_told = true;
        Seen {
            problem: Some(reason),
            event,
            wait,
        }
    }

    fn failed(&mut self, now: SystemTime, e: LoginError) -> Seen {
        let left = self.end.and_then(|end| end.duration_since(now).ok());
        let reason = match left {
            Some(l) => format!("{e} (the current ticket ends in {} s)", l.as_secs()),
            None => e.to_string(),
        };
        let wait = self
            .retry
            .map_or(Duration::from_secs(1), |r| (r * 2).min(RETRY_MAX));
        self.retry = Some(wait);
        Seen {
            problem: Some(format!("kerberos login failing: {reason}")),
            event: Some(Event::Failed(reason)),
            wait,
        }
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

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + S(1_000_000 + s)
    }

    fn kdc_down() -> LoginError {
        LoginError::Ticket {
            principal: "flumen@R".into(),
            how: "from keytab".into(),
            reason: "Cannot contact any KDC for realm 'R'".into(),
        }
    }

    #[test]
    fn a_ticket_is_new_only_when_its_end_moves_later() {
        let t = at(0);
        assert!(is_new(None, t));
        assert!(!is_new(Some(t), t + S(1)));
        assert!(!is_new(Some(t), t - S(30)));
        assert!(is_new(Some(t), t + S(60)));
    }

    #[test]
    fn renewal_counts_a_new_ticket_and_an_overdue_one_is_told_once() {
        let mut w = Watch::default();
        let first = w.observe(at(0), Ok(S(120)));
        assert!(matches!(first.event, Some(Event::NewTicket { .. })));
        assert_eq!(first.wait, S(30));
        let quiet = w.observe(at(30), Ok(S(90)));
        assert_eq!((quiet.problem, quiet.event), (None, None));
        let renewed = w.observe(at(70), Ok(S(120)));
        assert!(matches!(renewed.event, Some(Event::NewTicket { .. })));
        // No renewal by 40% of the life left: overdue, told once, on /health each time.
        let late = w.observe(at(145), Ok(S(45)));
        assert!(matches!(late.event, Some(Event::Overdue(_))));
        assert!(late.problem.as_deref().unwrap().contains("ends in 45 s"));
        let later = w.observe(at(156), Ok(S(34)));
        assert_eq!(later.event, None);
        assert!(later.problem.is_some());
        assert!(w.observe(at(160), Ok(S(120))).problem.is_none());
    }

    #[test]
    fn failures_back_off_and_say_what_is_left_of_the_ticket() {
        let mut w = Watch::default();
        w.observe(at(0), Ok(S(120)));
        let waits: Vec<u64> = (0..8)
            .map(|i| w.observe(at(100 + i), Err(kdc_down())).wait.as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        let mut w = Watch::default();
        w.observe(at(0), Ok(S(120)));
        let p = w.observe(at(100), Err(kdc_down())).problem.unwrap();
        assert!(
            p.contains("Cannot contact any KDC") && p.contains("ends in 20 s"),
            "{p}"
        );
        assert_eq!(
            w.observe(at(101), Ok(S(120))).wait,
            S(30),
            "a success resets the backoff"
        );
        assert!(w.observe(at(102), Err(kdc_down())).wait == S(1));
    }
}
