//! The objects of one kind, shared between the readings of a live
//! cluster: a watch event for one EndpointSlice makes a new [`Cluster`]
//! whose 150,000 pods are the last one's (an `Arc`), not a copy of them —
//! copying them took longer than the 100 ms a change may take to reach
//! the screen (`benches/tui_render`).
//!
//! It reads as a `Vec` (`Deref`) and is changed as one (`DerefMut`, which
//! copies the objects first if another reading still shares them).
//!
//! [`Cluster`]: super::Cluster

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A kind's objects, shared copy-on-write.
#[derive(Debug)]
pub struct Shared<T>(Arc<Vec<T>>);

impl<T> Shared<T> {
    /// Whether `self` and `other` are the very same objects (one reading's
    /// kind kept by the next): equal without comparing them.
    pub fn same(&self, other: &Shared<T>) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared(Arc::new(Vec::new()))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Deref for Shared<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

impl<T> From<Vec<T>> for Shared<T> {
    fn from(v: Vec<T>) -> Self {
        Shared(Arc::new(v))
    }
}

impl<T> FromIterator<T> for Shared<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Shared(Arc::new(iter.into_iter().collect()))
    }
}

impl<'a, T> IntoIterator for &'a Shared<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'a, T: Clone> IntoIterator for &'a mut Shared<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        Arc::make_mut(&mut self.0).iter_mut()
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        self.same(other) || *self.0 == *other.0
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Shared::from)
    }
}

#[cfg(test)]
mod tests {
    use super::Shared;

    #[test]
    fn a_change_copies_only_what_is_shared() {
        let a: Shared<u32> = vec![1, 2, 3].into();
        let mut b = a.clone();
        assert!(a.same(&b) && a == b);
        b.push(4);
        assert!(!a.same(&b));
        assert_eq!((a.len(), b.len()), (3, 4));
        let c: Shared<u32> = vec![1, 2, 3].into();
        assert!(!a.same(&c) && a == c, "equal objects, not the same");
    }
}
