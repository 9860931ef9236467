use std::collections::HashSet;

use super::Str;

/// Hands out one shared [`Str`] per distinct string, so that the thousand
/// processes named `nginx` share one allocation and comparisons across a
/// scrape are cheap.
#[derive(Default, Debug)]
pub struct Interner {
    strings: HashSet<Str>,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn intern(&mut self, s: &str) -> Str {
        if let Some(existing) = self.strings.get(s) {
            return existing.clone();
        }
        let new: Str = s.into();
        self.strings.insert(new.clone());
        new
    }

    /// Forget strings nobody else holds any more (call now and then, e.g. once
    /// a minute, so that churned command lines do not accumulate).
    pub fn purge_unused(&mut self) {
        self.strings.retain(|s| std::sync::Arc::strong_count(s) > 1);
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn interning_shares_one_allocation() {
        let mut i = Interner::new();
        let a = i.intern("nginx");
        let b = i.intern("nginx");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn purge_drops_only_unreferenced_strings() {
        let mut i = Interner::new();
        let kept = i.intern("kept");
        drop(i.intern("gone"));
        i.purge_unused();
        assert_eq!(i.len(), 1);
        assert!(Arc::ptr_eq(&kept, &i.intern("kept")));
    }
}
