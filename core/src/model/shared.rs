//! The objects of one kind, shared between the readings of a live
//! cluster: a watch event for one EndpointSlice makes a new [`Cluster`]
//! whose 150,000 pods are the last one's (an `Arc`), not a copy of them —
//! copying them took longer than the 100 ms a change may take to reach
//! the screen (`benches/tui_render`).
//!
//! [`Shared`] reads as a `Vec` (`Deref`) and is changed as one
//! (`DerefMut`, which copies the entries first if another reading still
//! shares them): a node's kernel tables, small entries. [`Objects`] holds
//! each API object behind an `Arc` of its own, as the watches' stores do:
//! a reading after one EndpointSlice changed copies 10,000 pointers, not
//! 10,000 slices (a deep copy took 137–700 ms of a reading at scale,
//! `benches/tui_watch`).
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

/// A kind's API objects, each shared: what a reading shares with the one
/// before is the objects no watch event touched, one by one, as well as
/// the whole list when none did. Read as a slice of `T` (`iter`, `get`,
/// indexing); a change copies the list of pointers if another reading
/// shares it, and an object only when it is itself changed.
#[derive(Debug)]
pub struct Objects<T>(Arc<Vec<Arc<T>>>);

impl<T> Objects<T> {
    /// The objects as the watches' stores hold them (no copy).
    pub fn from_shared(v: Vec<Arc<T>>) -> Self {
        Objects(Arc::new(v))
    }

    /// Whether `self` and `other` are the very same list (one reading's
    /// kind kept by the next): equal without comparing them.
    pub fn same(&self, other: &Objects<T>) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether every position holds the same object in both, or two
    /// that `alike` says are: what an index reads of them is the same (a
    /// watch event replaces an object in its place; 150,000 pointers
    /// compared, objects only where they differ).
    pub fn same_by(&self, other: &Objects<T>, alike: impl Fn(&T, &T) -> bool) -> bool {
        self.same(other)
            || self.len() == other.len()
                && (self.0.iter())
                    .zip(other.0.iter())
                    .all(|(x, y)| Arc::ptr_eq(x, y) || alike(x, y))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator + Clone {
        self.0.iter().map(|o| &**o)
    }

    /// Each object with its sharing (to tell the very same object from an
    /// equal one without comparing them).
    pub fn shared(&self) -> &[Arc<T>] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.0.get(i).map(|o| &**o)
    }

    pub fn first(&self) -> Option<&T> {
        self.get(0)
    }

    fn list_mut(&mut self) -> &mut Vec<Arc<T>> {
        Arc::make_mut(&mut self.0)
    }

    pub fn push(&mut self, o: T) {
        self.list_mut().push(Arc::new(o));
    }

    pub fn remove(&mut self, i: usize) -> Arc<T> {
        self.list_mut().remove(i)
    }

    pub fn clear(&mut self) {
        self.list_mut().clear();
    }

    /// Moves `other`'s objects to the end (pointers, when `other` is not
    /// shared).
    pub fn append(&mut self, other: Objects<T>) {
        if self.is_empty() {
            *self = other;
            return;
        }
        match Arc::try_unwrap(other.0) {
            Ok(mut v) => self.list_mut().append(&mut v),
            Err(shared) => self.list_mut().extend(shared.iter().cloned()),
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.list_mut().retain(|o| keep(o));
    }
}

impl<T: Clone> Objects<T> {
    /// Object `i` to change (copied first if another reading shares it).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.list_mut().get_mut(i).map(Arc::make_mut)
    }

    /// Every object to change (each copied first if shared).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.list_mut().iter_mut().map(Arc::make_mut)
    }

    pub fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }
}

impl<T> Extend<T> for Objects<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.list_mut().extend(iter.into_iter().map(Arc::new));
    }
}

impl<T> std::ops::Index<usize> for Objects<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.0[i]
    }
}

/// Object `i` to change (copied first if another reading shares it).
impl<T: Clone> std::ops::IndexMut<usize> for Objects<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        Arc::make_mut(&mut self.list_mut()[i])
    }
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Objects(Arc::new(Vec::new()))
    }
}

impl<T> Clone for Objects<T> {
    fn clone(&self) -> Self {
        Objects(self.0.clone())
    }
}

impl<T> From<Vec<T>> for Objects<T> {
    fn from(v: Vec<T>) -> Self {
        v.into_iter().collect()
    }
}

impl<T> FromIterator<T> for Objects<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Objects(Arc::new(iter.into_iter().map(Arc::new).collect()))
    }
}

impl<'a, T> IntoIterator for &'a Objects<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Arc<T>>, fn(&Arc<T>) -> &T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|o| &**o)
    }
}

/// Equal objects in the same order; a shared object is equal without
/// being compared.
impl<T: PartialEq> PartialEq for Objects<T> {
    fn eq(&self, other: &Objects<T>) -> bool {
        self.same(other)
            || self.0.len() == other.0.len()
                && self
                    .0
                    .iter()
                    .zip(other.0.iter())
                    .all(|(a, b)| Arc::ptr_eq(a, b) || **a == **b)
    }
}

impl<T: Serialize> Serialize for Objects<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Objects<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Objects::from)
    }
}

#[cfg(test)]
mod tests {
    use super::{Objects, Shared};
    use std::sync::Arc;

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

    #[test]
    fn a_changed_object_is_copied_alone() {
        let a: Objects<String> = vec!["x".to_string(), "y".to_string()].into();
        let mut b = a.clone();
        assert!(a.same(&b) && a == b);
        *b.get_mut(1).unwrap() = "z".into();
        assert!(!a.same(&b));
        assert!(
            Arc::ptr_eq(&a.shared()[0], &b.shared()[0]),
            "untouched: shared"
        );
        assert_eq!((&a[1][..], &b[1][..]), ("y", "z"));
        let c: Objects<String> = vec!["x".to_string(), "y".to_string()].into();
        assert!(!a.same(&c) && a == c, "equal objects, not the same");
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"["x","z"]"#);
    }
}
