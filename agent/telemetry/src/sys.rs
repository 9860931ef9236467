//! Facts about the system the binaries read once, through one wrapper.

/// `sysconf(name)`, when the system answers with a positive value.
pub fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_what_linux_always_has() {
        assert!(sysconf(libc::_SC_CLK_TCK).is_some());
        assert!(sysconf(libc::_SC_PAGESIZE).is_some_and(|p| p.is_power_of_two()));
        // An unknown name is no answer, not a panic.
        assert_eq!(sysconf(-1), None);
    }
}
