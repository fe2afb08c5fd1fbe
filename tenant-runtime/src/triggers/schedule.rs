//! The clock of schedule triggers: when a schedule's next tick falls (cron
//! in its IANA time zone, or a fixed interval), and what a due tick does,
//! the missed-tick policy included. Pure functions of the time, so the
//! policy is tested without waiting.

use chrono::{DateTime, TimeDelta, Utc};

use crate::definition::{MissedTicks, Schedule};

/// A tick this late is still on time: a busy or reloading worker fires it
/// normally. Later than this, the ticks since the stored next time count as
/// missed (nobody ran the tenant) and the trigger's `missed` policy applies.
pub const ON_TIME: TimeDelta = TimeDelta::seconds(5);

/// Counting missed ticks stops here (a `* * * * * *` cron down for a week).
const MAX_COUNTED: u64 = 100_000;

/// The first tick strictly after `after`, to the microsecond PostgreSQL
/// stores (so a compare-and-set on the stored value matches exactly).
/// `None` for a cron expression that never matches again.
pub fn next_after(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let next = match schedule {
        Schedule::Cron { expression, timezone } => {
            let local = after.with_timezone(&timezone.tz());
            expression.cron().find_next_occurrence(&local, false).ok()?.with_timezone(&Utc)
        }
        Schedule::Every(every) => after.checked_add_signed(TimeDelta::from_std(every.get()).ok()?)?,
    };
    to_micros(next)
}

pub fn to_micros(time: DateTime<Utc>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(time.timestamp_micros())
}

/// What identifies a schedule as written: when it changes, the stored next
/// time is computed afresh.
pub fn spec_key(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Cron { expression, timezone } => format!("cron {} in {}", expression.as_str(), String::from(*timezone)),
        Schedule::Every(every) => format!("every {}ms", every.get().as_millis()),
    }
}

/// What to do with a schedule whose stored next tick is `next_at`, at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Not due yet.
    Wait,
    /// Queue one execution, then wait for `next`. `missed` counts the
    /// ticks it stands for when they were missed (`run_once`).
    Fire { missed: Option<u64>, next: DateTime<Utc> },
    /// Ticks were missed and the policy is `skip`: only move to `next`.
    Skip { missed: u64, next: DateTime<Utc> },
    /// The schedule has no tick after now (a cron date in the past).
    Finished,
}

/// The missed-tick policy: a tick due for at most [`ON_TIME`] fires
/// normally. Later, every tick from `next_at` up to `now` was missed:
/// `skip` forgets them, `run_once` fires one execution for all of them.
/// Either way the schedule resumes at its first tick after `now`.
pub fn plan(schedule: &Schedule, policy: MissedTicks, next_at: DateTime<Utc>, now: DateTime<Utc>) -> Plan {
    if next_at > now {
        return Plan::Wait;
    }
    let Some(next) = next_after(schedule, now) else { return Plan::Finished };
    if now - next_at <= ON_TIME {
        return Plan::Fire { missed: None, next };
    }
    let missed = count_ticks(schedule, next_at, now);
    match policy {
        MissedTicks::Skip => Plan::Skip { missed, next },
        MissedTicks::RunOnce => Plan::Fire { missed: Some(missed), next },
    }
}

/// The ticks in `[from, to]` (`from` is a tick itself).
fn count_ticks(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    if let Schedule::Every(every) = schedule {
        let every = every.get().as_micros().max(1);
        let span = (to - from).num_microseconds().unwrap_or(i64::MAX).max(0) as u128;
        return (span / every + 1).min(MAX_COUNTED as u128) as u64;
    }
    let mut count = 1;
    let mut at = from;
    while count < MAX_COUNTED {
        match next_after(schedule, at) {
            Some(next) if next <= to => {
                count += 1;
                at = next;
            }
            _ => break,
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{CronExpression, Duration, TimeZone};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn cron(expression: &str, zone: &str) -> Schedule {
        Schedule::Cron { expression: CronExpression::parse(expression).unwrap(), timezone: TimeZone::parse(zone).unwrap() }
    }

    fn every(text: &str) -> Schedule {
        Schedule::Every(Duration::parse(text).unwrap())
    }

    #[test]
    fn cron_ticks_are_read_in_their_time_zone_across_dst() {
        // 09:00 in Paris: 08:00 UTC in winter (CET), 07:00 UTC once summer time starts on 31 March 2024.
        let paris = cron("0 9 * * *", "Europe/Paris");
        assert_eq!(next_after(&paris, at("2024-03-30T12:00:00Z")), Some(at("2024-03-31T07:00:00Z")));
        assert_eq!(next_after(&paris, at("2024-03-29T12:00:00Z")), Some(at("2024-03-30T08:00:00Z")));
        // New York falls back on 3 November 2024: 09:00 is 13:00 UTC before, 14:00 UTC after.
        let new_york = cron("0 9 * * *", "America/New_York");
        assert_eq!(next_after(&new_york, at("2024-11-02T00:00:00Z")), Some(at("2024-11-02T13:00:00Z")));
        assert_eq!(next_after(&new_york, at("2024-11-03T00:00:00Z")), Some(at("2024-11-03T14:00:00Z")));
        // UTC by default, and strictly after the given time.
        let utc = cron("*/15 * * * *", "UTC");
        assert_eq!(next_after(&utc, at("2024-01-01T10:15:00Z")), Some(at("2024-01-01T10:30:00Z")));
    }

    #[test]
    fn intervals_count_from_the_given_time_to_the_microsecond() {
        let next = next_after(&every("1s"), at("2024-01-01T00:00:00.123456789Z")).unwrap();
        assert_eq!(next, at("2024-01-01T00:00:01.123456Z"));
    }

    #[test]
    fn an_interval_past_the_end_of_the_calendar_has_no_next_tick() {
        // Stored before durations had a maximum; applying it now is refused.
        assert_eq!(next_after(&every("300000000000y"), at("2024-01-01T00:00:00Z")), None);
        assert_eq!(next_after(&every("300000y"), at("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn a_tick_is_on_time_within_the_grace_and_missed_after_it() {
        let hourly = every("1h");
        let now = at("2024-01-01T12:00:00Z");
        assert_eq!(plan(&hourly, MissedTicks::Skip, at("2024-01-01T12:00:01Z"), now), Plan::Wait);
        let late_a_little = plan(&hourly, MissedTicks::Skip, at("2024-01-01T11:59:58Z"), now);
        assert_eq!(late_a_little, Plan::Fire { missed: None, next: at("2024-01-01T13:00:00Z") });
    }

    #[test]
    fn skip_forgets_missed_ticks_and_run_once_runs_once_for_all() {
        let hourly = every("1h");
        let now = at("2024-01-01T12:00:00Z");
        let stored = at("2024-01-01T09:30:00Z"); // 09:30, 10:30 and 11:30 fell while nobody ran the tenant
        assert_eq!(plan(&hourly, MissedTicks::Skip, stored, now), Plan::Skip { missed: 3, next: at("2024-01-01T13:00:00Z") });
        let once = plan(&hourly, MissedTicks::RunOnce, stored, now);
        assert_eq!(once, Plan::Fire { missed: Some(3), next: at("2024-01-01T13:00:00Z") });
        let daily = cron("0 6 * * *", "Europe/Paris");
        let missed = plan(&daily, MissedTicks::RunOnce, at("2024-01-01T05:00:00Z"), at("2024-01-04T12:00:00Z"));
        assert_eq!(missed, Plan::Fire { missed: Some(4), next: at("2024-01-05T05:00:00Z") });
    }
}
