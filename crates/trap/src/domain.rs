//! Domain lifecycle: running, or stopped with a reason.
//!
//! Tessel has no control domain, so when a domain stops it stays stopped;
//! when every domain has stopped the hypervisor powers the machine off (or
//! resets it if a domain asked for a reset and the board policy says so).

use alloc::string::String;
use core::fmt;

/// Why a domain stopped.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub enum StopReason {
    /// The guest called PSCI SYSTEM_OFF, or its last vCPU called CPU_OFF.
    PoweredOff,
    /// The guest called PSCI SYSTEM_RESET.
    Reset,
    /// The hypervisor stopped the guest after an unrecoverable fault.
    Faulted(String),
    /// The domain was never started because its configuration was refused.
    Refused(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PoweredOff => f.write_str("powered off"),
            Self::Reset => f.write_str("reset requested"),
            Self::Faulted(why) => write!(f, "faulted: {why}"),
            Self::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

/// Run state of one domain.
#[derive(Clone, PartialEq, Eq, Debug, Hash, Default)]
pub enum DomainState {
    /// At least one vCPU may run.
    #[default]
    Running,
    /// Stopped for good.
    Stopped(StopReason),
}

impl DomainState {
    /// Whether the domain is stopped.
    pub fn is_stopped(&self) -> bool {
        matches!(self, Self::Stopped(_))
    }

    /// Stops the domain. The first reason wins: a domain that faults while
    /// already powered off stays "powered off". Returns whether the state
    /// changed.
    pub fn stop(&mut self, reason: StopReason) -> bool {
        if self.is_stopped() {
            return false;
        }
        *self = Self::Stopped(reason);
        true
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Stopped(r) => write!(f, "stopped ({r})"),
        }
    }
}

/// Whether every domain has stopped (true for an empty list: nothing is
/// left to run).
pub fn all_stopped<'a>(states: impl IntoIterator<Item = &'a DomainState>) -> bool {
    states.into_iter().all(DomainState::is_stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn first_stop_reason_wins() {
        let mut d = DomainState::default();
        assert!(!d.is_stopped());
        assert!(d.stop(StopReason::PoweredOff));
        assert!(!d.stop(StopReason::Faulted("late".into())));
        assert_eq!(d, DomainState::Stopped(StopReason::PoweredOff));
        assert_eq!(d.to_string(), "stopped (powered off)");
    }

    #[test]
    fn all_stopped_detection() {
        let mut ds = [DomainState::Running, DomainState::Running];
        assert!(!all_stopped(&ds));
        ds[0].stop(StopReason::Faulted(
            "data abort at 0x1000 without syndrome".into(),
        ));
        assert!(!all_stopped(&ds));
        ds[1].stop(StopReason::Reset);
        assert!(all_stopped(&ds));
        assert_eq!(
            ds[0].to_string(),
            "stopped (faulted: data abort at 0x1000 without syndrome)"
        );
    }
}
