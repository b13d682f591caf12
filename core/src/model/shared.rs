//! The objects of one kind, shared between the readings of a live
//! cluster: a watch event for one EndpointSlice makes a new [`Cluster`]
//! whose 150,000 pods are the last one's (an `Arc`), not a copy of them —
//! copying them took longer than the 100 ms a change may take to reach
//! the screen (`benches/tui_render`).
//!
//! [`Shared`] reads as a `Vec` (`Deref`) and is changed as one
//! (`DerefMut`, which copies the entries first if another reading still
//! shares them): a node's kernel tables, small entries. [`Objects`] holds
//! each API object behind an `Arc` of its own, as the watches' stores do,
//! in a persistent list: a reading after one EndpointSlice changed copies
//! the few chunks of pointers on its path, not 10,000 slices (a deep copy
//! took 137–700 ms of a reading at scale, `benches/tui_watch`) nor 10,000
//! pointers.
//!
//! [`Cluster`]: super::Cluster

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Weak};

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
/// the whole list when none did. Read as a list of `T` (`iter`, `get`,
/// indexing); a change copies only what another reading shares of it.
///
/// The list is a persistent vector (`imbl`: a tree of 64-pointer
/// chunks). One pod replaced among 150,000 copies the 3 chunks on its
/// path, not 150,000 pointers: a flat list took 5–7 ms of each pod
/// reading to copy (each pointer's count written, on a cache line of its
/// pod) and as long again to drop (`benches/tui_watch`). Two readings'
/// lists are told apart by the positions the later one notes it set
/// since it was copied from the earlier, else chunk by chunk
/// ([`Objects::replaced`]).
#[derive(Debug)]
pub struct Objects<T>(Arc<List<T>>);

/// The list behind [`Objects`], and what it is a changed copy of.
#[derive(Debug)]
struct List<T> {
    objects: imbl::Vector<Arc<T>>,
    /// `None`: made whole, or an object came, went or was changed in a
    /// way not noted since it was copied.
    copied: Option<Copied<T>>,
}

/// The list a list was copied from to be changed, and the positions set
/// since, none moved: a reading asks its list which objects the watch
/// events replaced since the last reading's, and this says at once —
/// walking two lists of 150,000 pods chunk by chunk took 0.5–0.9 ms each
/// time, three times in each pod reading (`benches/tui_render`).
#[derive(Debug)]
struct Copied<T> {
    /// Weak: a list keeps neither the one before alive nor, through it,
    /// every list before that. Its allocation stays while this points to
    /// it, so no other list is ever at that address; and a list something
    /// was copied from is copied too before it is changed (a weak pointer
    /// to it makes it shared), so it stays what it was.
    from: Weak<List<T>>,
    /// Unsorted; a position set twice is there twice.
    set: Vec<usize>,
}

/// Beyond this many positions noted, walking the lists is as quick.
const NOTED_AT_MOST: usize = 4096;

impl<T> List<T> {
    fn whole(objects: imbl::Vector<Arc<T>>) -> Self {
        List {
            objects,
            copied: None,
        }
    }

    /// The positions set since this list was copied from `before`, when it
    /// was, and none moved.
    fn set_since(&self, before: &Arc<List<T>>) -> Option<&[usize]> {
        let c = self.copied.as_ref()?;
        std::ptr::eq(c.from.as_ptr(), Arc::as_ptr(before)).then_some(&c.set[..])
    }
}

impl<T> Objects<T> {
    /// The objects as the watches' stores hold them (no copy of an object).
    pub fn from_shared(v: Vec<Arc<T>>) -> Self {
        Objects(Arc::new(List::whole(v.into_iter().collect())))
    }

    /// Whether `self` and `other` are the very same list (one reading's
    /// kind kept by the next): equal without comparing them.
    pub fn same(&self, other: &Objects<T>) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The positions whose object is not the very same in `self` and in
    /// `before` (`(now, before)`, by position), when both hold as many: a
    /// watch event replaces an object in its place. Read from the positions
    /// `self` noted setting when it is a changed copy of `before`;
    /// otherwise the chunks both lists share are skipped without reading
    /// their objects. `None`: the lengths differ (an object came or went).
    pub fn replaced<'a>(&'a self, before: &'a Objects<T>) -> Option<Vec<(&'a T, &'a T)>> {
        if self.len() != before.len() {
            return None;
        }
        let mut out = Vec::new();
        if self.same(before) {
            return Some(out);
        }
        let (now, was) = (&self.0.objects, &before.0.objects);
        if let Some(set) = self.0.set_since(&before.0) {
            let mut at = set.to_vec();
            at.sort_unstable();
            at.dedup();
            let differ = at.into_iter().filter(|i| !Arc::ptr_eq(&now[*i], &was[*i]));
            return Some(differ.map(|i| (&*now[i], &*was[i])).collect());
        }
        let pairs = |out: &mut Vec<_>, now: &'a [Arc<T>], was: &'a [Arc<T>]| {
            let differ = now.iter().zip(was).filter(|(n, b)| !Arc::ptr_eq(n, b));
            out.extend(differ.map(|(n, b)| (&**n, &**b)));
        };
        // Chunk by chunk while the two trees' chunks line up (they do
        // unless objects were both added and removed); else object by
        // object.
        let aligned = now.leaves().zip(was.leaves()).all(|(now, was)| {
            if now.len() != was.len() {
                return false;
            }
            if !std::ptr::eq(now.as_ptr(), was.as_ptr()) {
                pairs(&mut out, now, was);
            }
            true
        });
        if !aligned {
            out = (now.iter().zip(was.iter()))
                .filter(|(n, b)| !Arc::ptr_eq(n, b))
                .map(|(n, b)| (&**n, &**b))
                .collect();
        }
        Some(out)
    }

    /// Whether every position holds the same object in both, or two
    /// that `alike` says are: what an index reads of them is the same (a
    /// watch event replaces an object in its place; objects compared only
    /// where they differ).
    pub fn same_by(&self, other: &Objects<T>, alike: impl Fn(&T, &T) -> bool) -> bool {
        self.replaced(other)
            .is_some_and(|r| r.iter().all(|(x, y)| alike(x, y)))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator + Clone {
        self.0.objects.iter().map(|o| &**o)
    }

    /// Each object with its sharing (to tell the very same object from an
    /// equal one without comparing them).
    pub fn shared(&self) -> impl DoubleEndedIterator<Item = &Arc<T>> + ExactSizeIterator + Clone {
        self.0.objects.iter()
    }

    pub fn len(&self) -> usize {
        self.0.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.objects.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.0.objects.get(i).map(|o| &**o)
    }

    pub fn first(&self) -> Option<&T> {
        self.get(0)
    }

    /// The list to change, copied first (a root: its chunks are copied as
    /// they are written) if another reading shares it or a list copied
    /// from it points to it.
    fn list_mut(&mut self) -> &mut List<T> {
        if Arc::get_mut(&mut self.0).is_none() {
            let copy = List {
                objects: self.0.objects.clone(),
                copied: Some(Copied {
                    from: Arc::downgrade(&self.0),
                    set: Vec::new(),
                }),
            };
            self.0 = Arc::new(copy);
        }
        Arc::get_mut(&mut self.0).expect("a list just made is its reading's alone")
    }

    /// The list to change at position `i` alone, noted (when it holds
    /// one: a position past the end changes nothing).
    fn list_at(&mut self, i: usize) -> &mut imbl::Vector<Arc<T>> {
        let list = self.list_mut();
        if let Some(c) = list.copied.as_mut().filter(|_| i < list.objects.len()) {
            c.set.push(i);
            if c.set.len() > NOTED_AT_MOST {
                list.copied = None;
            }
        }
        &mut list.objects
    }

    /// The list to change in its shape (objects in or out, or anywhere):
    /// what changed is no longer noted.
    fn list_reshaped(&mut self) -> &mut imbl::Vector<Arc<T>> {
        let list = self.list_mut();
        list.copied = None;
        &mut list.objects
    }

    pub fn push(&mut self, o: T) {
        self.list_reshaped().push_back(Arc::new(o));
    }

    /// Object `i`, the list's as it was until now, replaced with `o`
    /// (the live reader's way to bring a kind up to date in place).
    pub fn set(&mut self, i: usize, o: Arc<T>) -> Arc<T> {
        self.list_at(i).set(i, o)
    }

    /// Puts `o` at `i`, the objects from `i` on moved one place along.
    pub fn insert(&mut self, i: usize, o: Arc<T>) {
        self.list_reshaped().insert(i, o);
    }

    pub fn remove(&mut self, i: usize) -> Arc<T> {
        self.list_reshaped().remove(i)
    }

    /// Where `f` says the object sought is (`Ok`), or would be put
    /// (`Err`), in a list sorted as `f` compares.
    pub fn binary_search_by(
        &self,
        mut f: impl FnMut(&T) -> std::cmp::Ordering,
    ) -> Result<usize, usize> {
        self.0.objects.binary_search_by(|o| f(o))
    }

    pub fn clear(&mut self) {
        self.list_reshaped().clear();
    }

    /// Moves `other`'s objects to the end (its chunks shared, not copied).
    pub fn append(&mut self, other: Objects<T>) {
        if self.is_empty() {
            *self = other;
            return;
        }
        let other = Arc::try_unwrap(other.0)
            .map(|l| l.objects)
            .unwrap_or_else(|shared| shared.objects.clone());
        self.list_reshaped().append(other);
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.list_reshaped().retain(|o| keep(o));
    }
}

impl<T: Clone> Objects<T> {
    /// Object `i` to change (copied first if another reading shares it).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.list_at(i).get_mut(i).map(Arc::make_mut)
    }

    /// Every object to change (each copied first if shared).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.list_reshaped().iter_mut().map(Arc::make_mut)
    }

    pub fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }
}

impl<T> Extend<T> for Objects<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.list_reshaped().extend(iter.into_iter().map(Arc::new));
    }
}

impl<T> std::ops::Index<usize> for Objects<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.0.objects[i]
    }
}

/// Object `i` to change (copied first if another reading shares it).
impl<T: Clone> std::ops::IndexMut<usize> for Objects<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        Arc::make_mut(&mut self.list_at(i)[i])
    }
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Objects(Arc::new(List::whole(imbl::Vector::new())))
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
        Objects(Arc::new(List::whole(
            iter.into_iter().map(Arc::new).collect(),
        )))
    }
}

impl<'a, T> IntoIterator for &'a Objects<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Map<
        imbl::vector::Iter<'a, Arc<T>, imbl::shared_ptr::DefaultSharedPtr>,
        fn(&Arc<T>) -> &T,
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.objects.iter().map(|o| &**o)
    }
}

/// Equal objects in the same order; a shared object is equal without
/// being compared.
impl<T: PartialEq> PartialEq for Objects<T> {
    fn eq(&self, other: &Objects<T>) -> bool {
        self.same_by(other, |a, b| a == b)
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
            Arc::ptr_eq(a.shared().next().unwrap(), b.shared().next().unwrap()),
            "untouched: shared"
        );
        assert_eq!((&a[1][..], &b[1][..]), ("y", "z"));
        let c: Objects<String> = vec!["x".to_string(), "y".to_string()].into();
        assert!(!a.same(&c) && a == c, "equal objects, not the same");
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"["x","z"]"#);
    }

    /// A watch event replaces an object in its place: the positions that
    /// changed are found, and only they, chunk-skipping or not.
    #[test]
    fn replaced_finds_the_positions_that_changed() {
        let a: Objects<u32> = (0..1000).collect();
        let b = a.clone();
        assert_eq!(b.replaced(&a).map(|r| r.len()), Some(0), "the very same");
        let mut c = a.clone();
        c.set(700, Arc::new(7000));
        c.set(3, Arc::new(30));
        let mut r: Vec<(u32, u32)> = c
            .replaced(&a)
            .unwrap()
            .iter()
            .map(|(n, b)| (**n, **b))
            .collect();
        r.sort();
        assert_eq!(r, [(30, 3), (7000, 700)]);
        // An object in, another out: as many, the ones between moved.
        let mut d = a.clone();
        d.insert(10, Arc::new(5000));
        d.remove(901);
        let moved = d.replaced(&a).unwrap();
        assert_eq!(moved.len(), 891, "positions 10..=900 hold another object");
        assert!(moved.iter().all(|(n, b)| **n == 5000 || **n + 1 == **b));
        let mut e = a.clone();
        e.remove(0);
        assert!(e.replaced(&a).is_none(), "one gone: lengths differ");
        // Equal objects that are not the very same are told apart only
        // by `same_by`'s comparison.
        let f: Objects<u32> = (0..1000).collect();
        assert_eq!(f.replaced(&a).unwrap().len(), 1000);
        assert!(f == a && f.same_by(&a, |x, y| x == y) && !c.same_by(&a, |x, y| x == y));
    }

    /// Pairs `(now, before)` as numbers.
    fn pairs(r: Option<Vec<(&u32, &u32)>>) -> Vec<(u32, u32)> {
        r.expect("as many objects")
            .iter()
            .map(|(n, b)| (**n, **b))
            .collect()
    }

    /// A changed copy notes the positions it set, and `replaced` answers
    /// from them against the list it was copied from — only that list.
    #[test]
    fn a_changed_copy_answers_from_what_it_noted() {
        let a: Objects<u32> = (0..1000).collect();
        let mut b = a.clone();
        b.set(700, Arc::new(7000));
        b.set(3, Arc::new(30));
        b.set(700, Arc::new(7001));
        // Set to the very object it held: noted, not replaced.
        b.set(5, a.shared().nth(5).unwrap().clone());
        assert_eq!(b.0.set_since(&a.0).map(<[usize]>::len), Some(4));
        assert_eq!(pairs(b.replaced(&a)), [(30, 3), (7001, 700)]);
        // A copy of the copy notes against `b`: against `a` the two are
        // walked, and say the same.
        let mut c = b.clone();
        c.set(10, Arc::new(100));
        assert!(c.0.set_since(&a.0).is_none() && c.0.set_since(&b.0).is_some());
        assert_eq!(pairs(c.replaced(&b)), [(100, 10)]);
        assert_eq!(pairs(c.replaced(&a)), [(30, 3), (100, 10), (7001, 700)]);
        // The list copied from is changed: it is copied first, so what
        // `d` noted stays true of the list it points to, and the changed
        // one is walked.
        let mut base: Objects<u32> = (0..100).collect();
        let mut d = base.clone();
        d.set(1, Arc::new(1000));
        let pointed_to = Arc::as_ptr(&base.0);
        base.set(2, Arc::new(2000));
        assert!(!std::ptr::eq(Arc::as_ptr(&base.0), pointed_to));
        assert!(d.0.set_since(&base.0).is_none());
        assert_eq!(pairs(d.replaced(&base)), [(1000, 1), (2, 2000)]);
        // An object in and another out: nothing noted, the lists walked.
        let mut e = a.clone();
        e.set(1, Arc::new(10));
        e.insert(10, Arc::new(5000));
        e.remove(901);
        assert!(e.0.set_since(&a.0).is_none());
        assert_eq!(e.replaced(&a).unwrap().len(), 892);
        // A position past the end changes nothing and is not noted.
        let mut g = a.clone();
        assert!(g.get_mut(1000).is_none());
        g.set(0, Arc::new(9));
        assert_eq!(pairs(g.replaced(&a)), [(9, 0)]);
        // Past the most it notes, it walks.
        let mut f = a.clone();
        for i in 0..1000 {
            for _ in 0..5 {
                f[i] += 1;
            }
        }
        assert!(f.0.set_since(&a.0).is_none());
        let moved = pairs(f.replaced(&a));
        assert!(moved.len() == 1000 && moved.iter().all(|(n, b)| *n == b + 5));
    }
}
