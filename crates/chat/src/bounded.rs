//! Decoding of the state's persistent collections from snapshot bytes,
//! which come from a file or a peer and may be corrupt.
//!
//! `imbl`'s own `Deserialize` reserves room for as many entries as the input
//! claims (a corrupt length prefix can abort the process) and accepts keys in
//! any order. These visitors grow one entry at a time, refuse more than
//! `MAX` entries and require strictly increasing keys, so that decoding does
//! bounded work and one encoding maps to exactly one state. They plug in with
//! `#[serde(deserialize_with = "...")]`; encoding stays `imbl`'s, which
//! writes the same bytes as the std collections.

use std::fmt;
use std::marker::PhantomData;

use imbl::{OrdMap, OrdSet, Vector};
use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
/// Decodes a [`Vector`] of at most `MAX` elements.
pub(crate) fn vector<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vector<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Clone,
{
    deserializer.deserialize_seq(VectorVisitor::<T, MAX>(PhantomData))
}

/// Decodes an [`OrdMap`] of at most `MAX` entries, keys strictly increasing.
pub(crate) fn ord_map<'de, D, K, V, const MAX: usize>(deserializer: D) -> Result<OrdMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    deserializer.deserialize_map(OrdMapVisitor::<K, V, MAX>(PhantomData))
}

/// Decodes an [`OrdSet`] of at most `MAX` members, strictly increasing.
pub(crate) fn ord_set<'de, D, T, const MAX: usize>(deserializer: D) -> Result<OrdSet<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord + Clone,
{
    deserializer.deserialize_seq(OrdSetVisitor::<T, MAX>(PhantomData))
}

/// Builds a [`Vector`] element by element.
struct VectorVisitor<T, const MAX: usize>(PhantomData<T>);

/// Builds an [`OrdMap`] entry by entry.
struct OrdMapVisitor<K, V, const MAX: usize>(PhantomData<(K, V)>);

/// Builds an [`OrdSet`] member by member.
struct OrdSetVisitor<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Clone, const MAX: usize> Visitor<'de> for VectorVisitor<T, MAX> {
    type Value = Vector<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "a sequence of at most {MAX} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut vector = Vector::new();
        while let Some(element) = access.next_element()? {
            refuse_past_max::<A::Error>(vector.len(), MAX, &self)?;
            vector.push_back(element);
        }
        assert!(vector.len() <= MAX);
        Ok(vector)
    }
}

impl<'de, K, V, const MAX: usize> Visitor<'de> for OrdMapVisitor<K, V, MAX>
where
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    type Value = OrdMap<K, V>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "a map of at most {MAX} entries with strictly increasing keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = OrdMap::new();
        while let Some((key, value)) = access.next_entry()? {
            refuse_past_max::<A::Error>(map.len(), MAX, &self)?;
            refuse_unordered::<A::Error, K>(map.get_max().map(|(last, _)| last), &key)?;
            map.insert(key, value);
        }
        assert!(map.len() <= MAX);
        Ok(map)
    }
}

impl<'de, T: Deserialize<'de> + Ord + Clone, const MAX: usize> Visitor<'de> for OrdSetVisitor<T, MAX> {
    type Value = OrdSet<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "a set of at most {MAX} strictly increasing members")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut set = OrdSet::new();
        while let Some(member) = access.next_element()? {
            refuse_past_max::<A::Error>(set.len(), MAX, &self)?;
            refuse_unordered::<A::Error, T>(set.get_max(), &member)?;
            set.insert(member);
        }
        assert!(set.len() <= MAX);
        Ok(set)
    }
}

/// Fails when a collection that already holds `len` entries may not take
/// one more.
fn refuse_past_max<E: Error>(len: usize, max: usize, expected: &dyn serde::de::Expected) -> Result<(), E> {
    if len >= max {
        return Err(E::invalid_length(len + 1, expected));
    }
    Ok(())
}

/// Fails unless `next` sorts strictly after `last`.
fn refuse_unordered<E: Error, K: Ord>(last: Option<&K>, next: &K) -> Result<(), E> {
    if last.is_some_and(|last| last >= next) {
        return Err(E::custom("keys are not in strictly increasing order"));
    }
    Ok(())
}
