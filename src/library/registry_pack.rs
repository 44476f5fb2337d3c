//! [`PackedRegistry`]: the registry as a service keeps it between scans — every entry as
//! listings need it (no url, no sha256), encoded one after another in one byte buffer and
//! decoded on demand, with an index of the ids by hash. At 100 000 entries it holds about a
//! quarter of what the parsed entries hold (one allocation instead of ~12 per entry), and a
//! registry copy (`registry_copy`) loads into it without making a single string. Owns the
//! encoding and nothing else: no I/O.
//!
//! Encoding of one entry, in this order: id (str), name (opt str), provider (opt sym),
//! capabilities (count, then syms), format (opt sym), description, license (opt str), files
//! (count, then per file: path (str), size (opt u64)), problem (opt str). A str is a varint
//! length and UTF-8 bytes; an option is a varint 0 for `None` or 1 before the value; a sym
//! is a varint index into the packed registry's table of interned values.

use std::collections::HashMap;

use crate::library::registry::{EntryProblem, Registry, RegistryEntry, RegistryFileSpec, id_key};
use crate::library::sym::Sym;

/// A registry's entries, packed. Built from a parsed [`Registry`] ([`PackedRegistry::pack`])
/// or from bytes it wrote ([`PackedRegistry::from_parts`], which checks every entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedRegistry {
    /// The entries, encoded back to back; every entry in it decodes (checked when made).
    data: Box<[u8]>,
    /// Where each entry starts in `data`, in registry order.
    starts: Box<[usize]>,
    /// Id hashes (`id_key`), sorted; `positions[i]` is the entry whose id has `hashes[i]`.
    hashes: Box<[u64]>,
    /// Entry positions, parallel to `hashes`.
    positions: Box<[u32]>,
    /// The interned values entries refer to by index.
    syms: Box<[Sym]>,
    /// Entries that were skipped when the registry was parsed, with the reason.
    pub problems: Vec<EntryProblem>,
    /// Whether every entry's name and description were left out ([`Self::without_texts`]):
    /// they decode as `None`, and this registry must not be saved as the copy.
    slim: bool,
}

/// What [`PackedRegistry::parts`] gives and [`PackedRegistry::from_parts`] takes: the
/// table of interned values and the encoded entries.
pub struct Parts<'a> {
    /// The interned values, in index order.
    pub syms: Vec<&'a str>,
    /// The encoded entries, back to back.
    pub data: &'a [u8],
}

impl PackedRegistry {
    /// Packs `registry` (ids unique, as a parse leaves them). Urls and hashes are not kept.
    pub fn pack(registry: &Registry) -> PackedRegistry {
        let mut syms: Vec<Sym> = Vec::new();
        let mut sym_index: HashMap<Sym, usize> = HashMap::new();
        let mut data = Vec::new();
        let mut starts = Vec::with_capacity(registry.entries.len());
        for entry in &registry.entries {
            starts.push(data.len());
            let mut w = Writer {
                out: &mut data,
                syms: &mut syms,
                sym_index: &mut sym_index,
            };
            w.entry(entry);
        }
        Self::indexed(
            data.into_boxed_slice(),
            starts,
            syms,
            registry.problems.clone(),
        )
    }

    /// A packed registry of `parts` (as [`PackedRegistry::parts`] gave them) and `problems`;
    /// `None` when any entry does not decode, or an id repeats.
    pub fn from_parts(parts: Parts<'_>, problems: Vec<EntryProblem>) -> Option<PackedRegistry> {
        let syms: Vec<Sym> = parts.syms.iter().map(|s| Sym::new(s)).collect();
        let mut starts = Vec::new();
        let mut r = Reader {
            bytes: parts.data,
            at: 0,
        };
        while r.at < parts.data.len() {
            starts.push(r.at);
            r.skip_entry(syms.len())?;
        }
        let packed = Self::indexed(parts.data.into(), starts, syms, problems);
        let unique = (0..packed.len()).all(|i| packed.position(packed.id_at(i)) == Some(i));
        unique.then_some(packed)
    }

    fn indexed(
        data: Box<[u8]>,
        starts: Vec<usize>,
        syms: Vec<Sym>,
        problems: Vec<EntryProblem>,
    ) -> PackedRegistry {
        let mut packed = PackedRegistry {
            data,
            starts: starts.into_boxed_slice(),
            syms: syms.into_boxed_slice(),
            problems,
            ..PackedRegistry::default()
        };
        let mut keyed: Vec<(u64, u32)> = (0..packed.len())
            .map(|i| (id_key(packed.id_at(i)), i as u32))
            .collect();
        keyed.sort_unstable();
        packed.hashes = keyed.iter().map(|k| k.0).collect();
        packed.positions = keyed.iter().map(|k| k.1).collect();
        packed
    }

    /// The same registry without any entry's name and description (they decode as `None`):
    /// what a service keeps between scans, whose rows carry those texts already (at 100 000
    /// entries, about half of what the entries hold). Ids, positions, files and every other
    /// field are kept as they are.
    pub fn without_texts(&self) -> PackedRegistry {
        let mut data = Vec::with_capacity(self.data.len() / 2);
        let mut starts = Vec::with_capacity(self.len());
        for &start in &self.starts {
            starts.push(data.len());
            let mut r = Reader {
                bytes: &self.data,
                at: start,
            };
            // Every entry decoded when this registry was made.
            let Some(()) = r.copy_without_texts(self.syms.len(), &mut data) else {
                return self.clone();
            };
        }
        PackedRegistry {
            data: data.into_boxed_slice(),
            starts: starts.into_boxed_slice(),
            hashes: self.hashes.clone(),
            positions: self.positions.clone(),
            syms: self.syms.clone(),
            problems: self.problems.clone(),
            slim: true,
        }
    }

    /// Whether names and descriptions were left out ([`Self::without_texts`]).
    pub fn is_slim(&self) -> bool {
        self.slim
    }

    /// The table of interned values and the encoded entries, to save (never of a slim
    /// registry, whose entries lack their texts).
    pub fn parts(&self) -> Parts<'_> {
        debug_assert!(!self.slim, "a slim registry is not saved");
        Parts {
            syms: self.syms.iter().map(|s| s.as_str()).collect(),
            data: &self.data,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Position of the entry with this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        let key = id_key(id);
        let first = self.hashes.partition_point(|&h| h < key);
        self.hashes[first..]
            .iter()
            .take_while(|&&h| h == key)
            .zip(&self.positions[first..])
            .map(|(_, &i)| i as usize)
            .find(|&i| self.id_at(i) == id)
    }

    /// The entry with this id, decoded.
    pub fn get(&self, id: &str) -> Option<RegistryEntry> {
        self.position(id).map(|i| self.entry(i))
    }

    /// The entry at `position` (in registry order), decoded.
    ///
    /// # Panics
    /// When `position` is not below [`PackedRegistry::len`].
    pub fn entry(&self, position: usize) -> RegistryEntry {
        let mut r = self.reader(position);
        // Every entry was checked to decode when the packed registry was made.
        r.entry(&self.syms).unwrap_or_else(|| RegistryEntry {
            id: self.id_at(position).to_string(),
            problem: Some("the registry as kept could not be read".into()),
            ..RegistryEntry::default()
        })
    }

    /// Every entry, decoded, in registry order.
    pub fn iter(&self) -> impl Iterator<Item = RegistryEntry> + '_ {
        (0..self.len()).map(|i| self.entry(i))
    }

    /// Every entry's id, in registry order (nothing decoded but the ids).
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.id_at(i))
    }

    /// The id of the entry at `position`.
    fn id_at(&self, position: usize) -> &str {
        self.reader(position).str().unwrap_or_default()
    }

    fn reader(&self, position: usize) -> Reader<'_> {
        Reader {
            bytes: &self.data,
            at: self.starts[position],
        }
    }
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    syms: &'a mut Vec<Sym>,
    sym_index: &'a mut HashMap<Sym, usize>,
}

impl Writer<'_> {
    fn entry(&mut self, e: &RegistryEntry) {
        self.str(&e.id);
        self.opt_str(e.name.as_deref());
        self.opt_sym(e.provider.as_ref());
        self.varint(e.capabilities.len() as u64);
        for cap in &e.capabilities {
            self.sym(cap);
        }
        self.opt_sym(e.format.as_ref());
        self.opt_str(e.description.as_deref());
        self.opt_str(e.license.as_deref());
        self.varint(e.files.len() as u64);
        for file in &e.files {
            self.str(&file.path);
            match file.size {
                None => self.varint(0),
                Some(size) => {
                    self.varint(1);
                    self.varint(size);
                }
            }
        }
        self.opt_str(e.problem.as_deref());
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.varint(0),
            Some(s) => {
                self.varint(1);
                self.str(s);
            }
        }
    }

    fn sym(&mut self, s: &Sym) {
        let next = self.syms.len();
        let index = *self.sym_index.entry(s.clone()).or_insert(next);
        if index == next {
            self.syms.push(s.clone());
        }
        self.varint(index as u64);
    }

    fn opt_sym(&mut self, s: Option<&Sym>) {
        match s {
            None => self.varint(0),
            Some(s) => {
                self.varint(1);
                self.sym(s);
            }
        }
    }
}

/// Reads entries; every method returns `None` on bytes that do not decode.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn flag(&mut self) -> Option<bool> {
        match self.varint()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn count(&mut self) -> Option<usize> {
        let n = usize::try_from(self.varint()?).ok()?;
        // Each counted item takes at least one byte: a count beyond what is left is damage.
        (n <= self.bytes.len() - self.at).then_some(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.count()?;
        let bytes = &self.bytes[self.at..self.at + len];
        self.at += len;
        std::str::from_utf8(bytes).ok()
    }

    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        if self.flag()? {
            self.str().map(Some)
        } else {
            Some(None)
        }
    }

    fn sym<'s>(&mut self, syms: &'s [Sym]) -> Option<&'s Sym> {
        syms.get(usize::try_from(self.varint()?).ok()?)
    }

    fn opt_sym<'s>(&mut self, syms: &'s [Sym]) -> Option<Option<&'s Sym>> {
        if self.flag()? {
            self.sym(syms).map(Some)
        } else {
            Some(None)
        }
    }

    fn size(&mut self) -> Option<Option<u64>> {
        if self.flag()? {
            self.varint().map(Some)
        } else {
            Some(None)
        }
    }

    fn entry(&mut self, syms: &[Sym]) -> Option<RegistryEntry> {
        let id = self.str()?.to_string();
        let name = self.opt_str()?.map(str::to_string);
        let provider = self.opt_sym(syms)?.cloned();
        let capabilities = (0..self.count()?)
            .map(|_| self.sym(syms).cloned())
            .collect::<Option<Vec<Sym>>>()?;
        let format = self.opt_sym(syms)?.cloned();
        let description = self.opt_str()?.map(str::to_string);
        let license = self.opt_str()?.map(str::to_string);
        let files = (0..self.count()?)
            .map(|_| {
                let path = self.str()?.to_string();
                let size = self.size()?;
                Some(RegistryFileSpec::declared(path, size))
            })
            .collect::<Option<Vec<_>>>()?;
        let problem = self.opt_str()?.map(str::to_string);
        Some(RegistryEntry {
            id,
            name,
            provider,
            capabilities,
            format,
            description,
            license,
            files,
            problem,
        })
    }

    /// Checks one entry without making anything of it (values of `syms` are counted only).
    fn skip_entry(&mut self, syms: usize) -> Option<()> {
        self.str()?;
        self.opt_str()?;
        self.skip_symbols(syms)?;
        self.opt_str()?;
        self.skip_rest()
    }

    /// Provider, capabilities and format.
    fn skip_symbols(&mut self, syms: usize) -> Option<()> {
        let sym = |r: &mut Self| r.varint().filter(|&i| i < syms as u64).map(drop);
        let opt_sym = |r: &mut Self| if r.flag()? { sym(r) } else { Some(()) };
        opt_sym(self)?;
        for _ in 0..self.count()? {
            sym(self)?;
        }
        opt_sym(self)
    }

    /// License, files and problem: what follows the description.
    fn skip_rest(&mut self) -> Option<()> {
        self.opt_str()?;
        for _ in 0..self.count()? {
            self.str()?;
            self.size()?;
        }
        self.opt_str()?;
        Some(())
    }

    /// Appends one entry to `out` as it is, but with no name and no description.
    fn copy_without_texts(&mut self, syms: usize, out: &mut Vec<u8>) -> Option<()> {
        let from = self.at;
        self.str()?;
        out.extend_from_slice(&self.bytes[from..self.at]);
        self.opt_str()?;
        out.push(0); // no name
        let from = self.at;
        self.skip_symbols(syms)?;
        out.extend_from_slice(&self.bytes[from..self.at]);
        self.opt_str()?;
        out.push(0); // no description
        let from = self.at;
        self.skip_rest()?;
        out.extend_from_slice(&self.bytes[from..self.at]);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn registry() -> Registry {
        let text = r#"{"version": 1, "models": [
            {"id": "a", "name": "A", "provider": "meta", "capabilities": ["chat", "text-generation"],
             "format": "gguf", "description": "Ä model", "license": "mit",
             "files": [{"path": "a.gguf", "size": 18446744073709551615, "url": "https://x/a"},
                       {"path": "sub/b.json"}]},
            {"id": "b"},
            {"id": "c", "files": [{"path": "../x"}]},
            {"id": "a"}
        ]}"#;
        Registry::parse(Path::new("r.json"), text.as_bytes()).unwrap()
    }

    #[test]
    fn entries_decode_as_listings_need_them() {
        let parsed = registry();
        let packed = PackedRegistry::pack(&parsed);
        let mut listing = parsed.clone();
        for e in &mut listing.entries {
            for f in &mut e.files {
                *f = RegistryFileSpec::declared(f.path.clone(), f.size);
            }
        }
        assert_eq!(packed.len(), 3);
        assert_eq!(packed.iter().collect::<Vec<_>>(), listing.entries);
        assert_eq!(packed.problems, parsed.problems);
        for (i, e) in listing.entries.iter().enumerate() {
            assert_eq!(packed.position(&e.id), Some(i));
            assert_eq!(packed.get(&e.id).as_ref(), Some(e));
        }
        assert_eq!(packed.position("z"), None);
        assert!(
            packed.entry(0).files[0].url().is_none(),
            "urls are not kept"
        );
    }

    #[test]
    fn parts_round_trip_and_damage_is_refused() {
        let packed = PackedRegistry::pack(&registry());
        let parts = packed.parts();
        let again = PackedRegistry::from_parts(
            Parts {
                syms: parts.syms.clone(),
                data: parts.data,
            },
            packed.problems.clone(),
        );
        assert_eq!(again.as_ref(), Some(&packed));
        // Cut short, a sym table too small, or an id twice: refused.
        let cut = &parts.data[..parts.data.len() - 1];
        let refuse = |syms: Vec<&str>, data: &[u8]| {
            PackedRegistry::from_parts(Parts { syms, data }, Vec::new()).is_none()
        };
        assert!(refuse(parts.syms.clone(), cut));
        assert!(refuse(parts.syms[..1].to_vec(), parts.data));
        let twice = [parts.data, parts.data].concat();
        assert!(refuse(parts.syms.clone(), &twice));
        assert!(
            PackedRegistry::from_parts(
                Parts {
                    syms: vec![],
                    data: &[]
                },
                vec![]
            )
            .is_some()
        );
    }

    #[test]
    fn a_slim_registry_keeps_everything_but_names_and_descriptions() {
        let packed = PackedRegistry::pack(&registry());
        let slim = packed.without_texts();
        assert!(slim.is_slim() && !packed.is_slim());
        assert!(slim.data.len() < packed.data.len());
        assert_eq!(slim.len(), packed.len());
        for (i, full) in packed.iter().enumerate() {
            let expected = RegistryEntry {
                name: None,
                description: None,
                ..full.clone()
            };
            assert_eq!(slim.entry(i), expected);
            assert_eq!(slim.position(&full.id), Some(i));
        }
        assert_eq!(slim.problems, packed.problems);
        assert_eq!(slim.without_texts(), slim, "slimming twice changes nothing");
    }
}
