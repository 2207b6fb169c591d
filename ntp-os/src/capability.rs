//! CAP_SYS_TIME: whether this process may set the kernel clock.

use std::io;

/// True if this thread has CAP_SYS_TIME in its effective set.
pub fn has_cap_sys_time() -> io::Result<bool> {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_TIME,
    )
    .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_answers_for_this_process() {
        // Root in CI has it, an ordinary user does not: either way the check answers.
        assert!(has_cap_sys_time().is_ok());
    }
}
