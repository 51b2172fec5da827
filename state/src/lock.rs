//! Lock holders' records, shared by every backend's lease.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::document::new_lineage;

/// Who holds (or wants) a state lease. It is stored in the lease record so that a
/// command that finds the state leased can say who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// A random id for this lease (what `state unlock --force` takes).
    pub id: String,
    /// The user running the holder (`$USER`), `unknown` when not set.
    #[serde(default = "unknown")]
    pub user: String,
    /// The process id of the holder.
    pub pid: u32,
    /// The host name of the holder's machine.
    pub host: String,
    /// The command that took the lock, e.g. `flyteinfra apply`.
    pub command: String,
    /// When the lock was requested, as an RFC 3339 UTC timestamp.
    pub since: String,
}

impl LockInfo {
    /// A lock record for this process running `command` (e.g. `flyteinfra apply`): a
    /// fresh id, this pid, this host name, and the current time.
    pub fn new(command: impl Into<String>) -> Self {
        LockInfo {
            id: new_lineage(),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(unknown),
            pid: std::process::id(),
            host: hostname(),
            command: command.into(),
            since: rfc3339_utc(SystemTime::now()),
        }
    }

    /// The record used when the holder's record cannot be read (it is being written, or a
    /// holder wrote garbage): pid 0, everything else `unknown`.
    pub fn unknown() -> Self {
        LockInfo {
            id: String::new(),
            user: unknown(),
            pid: 0,
            host: "unknown".to_string(),
            command: "unknown".to_string(),
            since: "unknown".to_string(),
        }
    }

    /// Whether this is the [`LockInfo::unknown`] placeholder.
    pub fn is_unknown(&self) -> bool {
        self.pid == 0
    }

    /// `pid 4242 on host h, user ana (`flyteinfra apply`) since 2026-11-26T13:00:00Z`,
    /// or `another process (its lease record is unreadable)`.
    pub fn holder_description(&self) -> String {
        if self.is_unknown() {
            "another process (its lease record is unreadable)".to_string()
        } else {
            format!(
                "pid {} on host {}, user {} (`{}`) since {}",
                self.pid, self.host, self.user, self.command, self.since
            )
        }
    }
}

fn unknown() -> String {
    "unknown".to_string()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `t` as `YYYY-MM-DDThh:mm:ssZ` (UTC, whole seconds). Times before 1970 print as 1970.
pub(crate) fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> String {
        rfc3339_utc(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn new_lock_info_describes_this_process() {
        let info = LockInfo::new("flyteinfra apply");
        assert_eq!(info.pid, std::process::id());
        assert!(!info.host.is_empty());
        assert_eq!(info.since.len(), "2026-11-26T13:00:00Z".len());
        assert_ne!(info.id, LockInfo::new("x").id);
        assert!(
            info.holder_description()
                .contains(&format!("pid {} on host", info.pid))
        );
        assert!(
            LockInfo::unknown()
                .holder_description()
                .contains("unreadable")
        );
    }
}
