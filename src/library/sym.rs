//! [`Sym`]: a short string that many rows repeat — a provider, a format, a source, a
//! capability — kept once per distinct value (interned) and shared by every row, view and
//! registry entry that names it, so 100 000 rows hold a handful of copies instead of
//! 100 000; and [`Syms`], a list of them (a model's capabilities) kept the same way. Plain
//! data; owns the process-wide tables of interned values and nothing else.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Distinct values kept in the table at most: past it (a registry full of made-up
/// providers) new values are still shared by their clones, just not looked up.
const TABLE_LIMIT: usize = 4_096;

/// An interned string; compares, hashes, orders, prints and serializes as its text. One
/// pointer wide (the text's own pointer and length are behind it, once per distinct value),
/// so a row's several symbols cost 8 bytes each.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(Arc<Box<str>>);

fn table() -> &'static Mutex<HashSet<Sym>> {
    static TABLE: OnceLock<Mutex<HashSet<Sym>>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

/// The copy of `key` kept in `table`, or a new one made by `make` (kept there too while the
/// table holds fewer than [`TABLE_LIMIT`] values).
fn intern<T, K>(table: &Mutex<HashSet<T>>, key: &K, make: impl FnOnce() -> T) -> T
where
    T: Clone + Eq + Hash + Borrow<K>,
    K: Eq + Hash + ?Sized,
{
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = table.get(key) {
        return shared.clone();
    }
    let fresh = make();
    if table.len() < TABLE_LIMIT {
        table.insert(fresh.clone());
    }
    fresh
}

impl Sym {
    /// The shared copy of `s`.
    pub fn new(s: &str) -> Sym {
        intern(table(), s, || Sym(Arc::new(Box::from(s))))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Sym {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Sym {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Sym {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Default for Sym {
    fn default() -> Sym {
        Sym::new("")
    }
}

impl fmt::Debug for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Sym {
    fn from(s: &str) -> Sym {
        Sym::new(s)
    }
}

impl From<String> for Sym {
    fn from(s: String) -> Sym {
        Sym::new(&s)
    }
}

impl From<&String> for Sym {
    fn from(s: &String) -> Sym {
        Sym::new(s)
    }
}

impl PartialEq<str> for Sym {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Sym {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Sym {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Sym> for str {
    fn eq(&self, other: &Sym) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Sym> for &str {
    fn eq(&self, other: &Sym) -> bool {
        *self == other.as_str()
    }
}

impl Serialize for Sym {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Sym {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sym, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Sym;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sym, E> {
                Ok(Sym::new(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A short list of [`Sym`]s that many rows repeat — a model's capabilities — kept once per
/// distinct list (interned, like [`Sym`]) and shared by every row that has it: a row holds
/// a pointer, not a list of its own.
/// One pointer wide, as [`Sym`] is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Syms(Arc<Box<[Sym]>>);

fn list_table() -> &'static Mutex<HashSet<Syms>> {
    static TABLE: OnceLock<Mutex<HashSet<Syms>>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

impl Syms {
    /// The shared copy of `list`.
    pub fn new(list: &[Sym]) -> Syms {
        intern(list_table(), list, || Syms(Arc::new(Box::from(list))))
    }
}

impl Borrow<[Sym]> for Syms {
    fn borrow(&self) -> &[Sym] {
        &self.0
    }
}

impl Deref for Syms {
    type Target = [Sym];

    fn deref(&self) -> &[Sym] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Syms {
    type Item = &'a Sym;
    type IntoIter = std::slice::Iter<'a, Sym>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Default for Syms {
    fn default() -> Syms {
        Syms::new(&[])
    }
}

impl fmt::Debug for Syms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl From<&[Sym]> for Syms {
    fn from(list: &[Sym]) -> Syms {
        Syms::new(list)
    }
}

impl From<Vec<Sym>> for Syms {
    fn from(list: Vec<Sym>) -> Syms {
        Syms::new(&list)
    }
}

impl FromIterator<Sym> for Syms {
    fn from_iter<I: IntoIterator<Item = Sym>>(iter: I) -> Syms {
        Syms::new(&iter.into_iter().collect::<Vec<_>>())
    }
}

impl Serialize for Syms {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Syms {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Syms, D::Error> {
        Ok(Syms::from(Vec::<Sym>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_and_a_list_are_one_pointer_wide() {
        assert_eq!(size_of::<Sym>(), size_of::<usize>());
        assert_eq!(size_of::<Option<Sym>>(), size_of::<usize>());
        assert_eq!(size_of::<Syms>(), size_of::<usize>());
    }

    #[test]
    fn equal_values_share_one_copy_and_read_as_text() {
        let a = Sym::new("text-generation");
        let b: Sym = String::from("text-generation").into();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "text-generation");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"text-generation\"");
        let back: Sym = serde_json::from_str("\"text-generation\"").unwrap();
        assert!(Arc::ptr_eq(&a.0, &back.0));
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(
            bytes,
            postcard::to_allocvec(&"text-generation".to_string()).unwrap()
        );
    }

    #[test]
    fn equal_lists_share_one_copy_and_read_as_lists() {
        let a = Syms::from(vec![Sym::new("chat"), Sym::new("text-generation")]);
        let b: Syms = ["chat", "text-generation"]
            .into_iter()
            .map(Sym::new)
            .collect();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a.len(), 2);
        assert_eq!(&*a, &[Sym::new("chat"), Sym::new("text-generation")][..]);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"["chat","text-generation"]"#);
        let back: Syms = serde_json::from_str(&json).unwrap();
        assert!(Arc::ptr_eq(&a.0, &back.0));
        assert!(Syms::default().is_empty());
    }
}
