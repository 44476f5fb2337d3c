//! Incremental updates of the full listing: watched changes (models touched, stores
//! changed, top-level names reconciled), selective rescans of a few models, and the
//! start-up revalidation of a saved listing model by model. Each result is installed
//! through [`ModelLibraryService::install_full`]. Reads the library; writes nothing.

use super::commit::Installed;
use super::*;

impl ModelLibraryService {
    /// Applies what the watcher saw since the last call (file events, or the polling
    /// verifier's findings) and what the top-level stamps say: touched models are rescanned
    /// and the rest of the full listing is reused (selective invalidation); a registry edit
    /// or an event that cannot be pinned down invalidates everything. Returns whether
    /// anything changed (and bumps the generation then).
    pub fn apply_changes(&mut self) -> bool {
        let stores_changed = self.apply_store_changes();
        let Some(watcher) = self.watcher.as_mut() else {
            return stores_changed;
        };
        if *watcher.mode() == WatchMode::Off {
            return stores_changed;
        }
        let mut changes = watcher.drain();
        // One reading of the stamps for the comparison and for the listing that results:
        // a change after it moves them again, so the next call looks again.
        let stamps = Stamps::read(&self.library);
        self.reconcile_top_level(&mut changes, &stamps);
        self.note_touched(&changes);
        let ids: Vec<String> = changes.models.iter().cloned().collect();
        let changed = if changes.is_empty() {
            false
        } else if changes.everything || changes.registry {
            self.invalidate("files changed");
            true
        } else {
            self.apply_model_changes(changes.models.into_iter().collect(), stamps)
        };
        if changed {
            self.generation.fetch_add(1, Ordering::SeqCst);
            // Instances elsewhere may not see this machine's file events: tell them (after
            // the new listing was published, so they can take it).
            self.tell_shared(crate::library::shared::EventKind::Changed, ids);
        }
        changed || stores_changed
    }

    /// Rescans each watched store that changed and swaps its models in the full listing.
    pub(super) fn apply_store_changes(&mut self) -> bool {
        // A store may be watched at several folders: rescan it once.
        let changed: std::collections::BTreeSet<usize> = self
            .store_watchers
            .iter_mut()
            .filter_map(|(i, w)| w.changed().then_some(*i))
            .collect();
        if changed.is_empty() {
            return false;
        }
        self.listings.remove(&ListKind::Fast);
        let Some(full) = self.listings.get(&ListKind::Full).cloned() else {
            return true;
        };
        let mut listing = Listing::clone(&full);
        let others = sources::folders_of_others(&self.sources, self.library.root());
        for i in changed {
            let source = &self.sources[i];
            let name = source.kind.as_str();
            let scanned = sources::scan_source_skipping(
                source,
                &mut self.metadata.lock().unwrap_or_else(|e| e.into_inner()),
                &others,
            )
            .map(|scan| scan.models);
            match scanned {
                Ok(found) => {
                    listing.models.retain(|m| m.source != name);
                    listing.models.extend(found.into_iter().map(Arc::new));
                }
                Err(e) => {
                    let why = format!("{} could not be read: {e}", source.kind.display_name());
                    self.invalidate(&why);
                    return true;
                }
            }
        }
        sort_store_rows(&mut listing.models);
        self.install_full(Arc::new(listing), Installed::RowsChanged);
        true
    }

    /// Events can be lost (a full kernel queue) or name a folder only by a name it no
    /// longer has, so when the top-level stamps moved,
    /// the folder names on disk are compared with the listing's and every difference is
    /// rescanned too. One read of `models/` and `.downloads/`, only when a stamp changed.
    pub(super) fn reconcile_top_level(&self, changes: &mut Changes, stamps: &Stamps) {
        let Some(full) = self.listings.get(&ListKind::Full) else {
            return;
        };
        if *stamps == full.stamps {
            return;
        }
        if stamps.registry != full.stamps.registry {
            changes.registry = true;
            return;
        }
        let mut on_disk: HashSet<String> = HashSet::new();
        for dir in [self.library.models_dir(), self.library.downloads_dir()] {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                on_disk.extend(
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.')),
                );
            }
        }
        let listed: HashSet<&str> = full
            .models
            .iter()
            .filter(|m| {
                m.source == LIBRARY_SOURCE && (!m.registered || m.status != ModelStatus::Available)
            })
            .map(|m| m.id.as_str())
            .collect();
        for name in &on_disk {
            if !listed.contains(name.as_str()) {
                changes.models.insert(name.clone());
            }
        }
        for name in listed {
            if !on_disk.contains(name) {
                changes.models.insert(name.to_string());
            }
        }
        // Leftovers appearing or going in `.downloads/` change the status of a model whose
        // folder stays: every name there now, and every row that may have had some.
        if stamps.downloads_dir != full.stamps.downloads_dir {
            if let Ok(rd) = std::fs::read_dir(self.library.downloads_dir()) {
                changes.models.extend(
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.')),
                );
            }
            changes.models.extend(
                full.models
                    .iter()
                    .filter(|m| m.source == LIBRARY_SOURCE && m.status == ModelStatus::Partial)
                    .map(|m| m.id.clone()),
            );
        }
        // The stamps moved; if the names agree (a file replaced in place, say), the new
        // stamps are recorded without rescanning anything, so the next check is quiet.
        changes.restamp = true;
    }

    /// Rescans `names`; returns whether what a listing shows changed. Activity that leaves
    /// every row as it was (a `.part` file growing during a download, say) only records
    /// the new stamps and keeps the views. `stamps` were read before `names` were worked
    /// out (they become the listing's).
    pub(super) fn apply_model_changes(&mut self, names: Vec<String>, stamps: Stamps) -> bool {
        let Some(full) = self.listings.get(&ListKind::Full).cloned() else {
            self.listings.remove(&ListKind::Fast);
            return true;
        };
        match self.rescan_some(&full, &names, stamps, None) {
            Ok(None) => false,
            Ok(Some((listing, false))) => {
                self.install_full(Arc::new(listing), Installed::Restamped);
                false
            }
            Ok(Some((listing, true))) => {
                self.install_full(Arc::new(listing), Installed::RowsChanged);
                true
            }
            Err(_) => {
                self.invalidate("files changed");
                true
            }
        }
    }

    /// A copy of `full` with the models `names` rescanned (added, updated or removed).
    /// `None` when no row changed and the stamps are the same (nothing to replace);
    /// otherwise the new listing and whether any row changed (or only the stamps).
    /// `registry`: the registry as of `stamps`, when the caller has just read it whole.
    ///
    /// Refused (an error) when the registry changed since `full` was made: every
    /// registered row may have changed then, and a listing of rows made from two
    /// registries must carry neither's stamp (callers scan everything instead).
    pub(super) fn rescan_some(
        &mut self,
        full: &Listing,
        names: &[String],
        stamps: Stamps,
        registry: Option<Arc<PackedRegistry>>,
    ) -> Result<Option<(Listing, bool)>> {
        if stamps.registry != full.stamps.registry {
            return Err(LibraryError::io(
                self.library.registry_path(),
                std::io::Error::other("changed since the listing was made: a full scan is needed"),
            ));
        }
        let started_wall = Instant::now();
        let scan_started = self.clock.now();
        let mut registry = match registry {
            Some(registry) => registry,
            None => self.registry_for(stamps.registry)?,
        };
        let importing = importing_now(&self.library);
        // Where each rescanned name sits: a linear search for a few names, an index for many
        // (building one for 100 000 rows costs more than the rescan itself).
        let index: Option<HashMap<&str, usize>> = (names.len() > 8).then(|| {
            full.models
                .iter()
                .enumerate()
                .map(|(i, m)| (m.id.as_str(), i))
                .collect()
        });
        let position = |name: &str| match &index {
            Some(index) => index.get(name).copied(),
            None => full.models.iter().position(|m| m.id == name),
        };
        // A slim registry has no names and descriptions: the rows `full` has for these
        // models carry them (`full` was made from this same registry file, checked above).
        // Where it has no registered row for a registered one, the file is read whole.
        let old_row = |name: &str| position(name).map(|i| &full.models[i]);
        if registry.is_slim()
            && names.iter().any(|n| {
                registry.position(n).is_some() && !old_row(n).is_some_and(|o| o.registered)
            })
        {
            registry = self.load_registry()?;
        }
        let mut updates = scan::scan_some(&self.scan_input(&registry, &importing), names)?;
        if registry.is_slim() {
            for (name, info) in &mut updates {
                if let Some(m) = info.as_mut().filter(|m| m.registered)
                    && let Some(old) = old_row(name)
                {
                    m.name = old.name.clone();
                    m.description = old.description.clone();
                }
            }
        }
        let located: Vec<(Option<usize>, Option<ModelInfo>)> = updates
            .into_iter()
            .map(|(name, info)| (position(&name), info))
            .collect();
        let problems: Vec<String> = registry
            .problems
            .iter()
            .map(|p| p.to_string())
            .chain(self.source_problems.iter().cloned())
            .collect();
        let rows_changed = located.iter().any(|(at, info)| match (at, info) {
            (Some(i), Some(m)) => *full.models[*i] != *m,
            (None, None) => false,
            _ => true,
        });
        if !rows_changed && stamps == full.stamps && problems == full.problems {
            return Ok(None);
        }
        let mut models = full.models.clone();
        let mut removed: HashSet<usize> = HashSet::new();
        let mut reorder = false;
        for (at, info) in located {
            match (at, info) {
                (Some(i), Some(m)) => {
                    reorder |= models[i].status != m.status;
                    models[i] = Arc::new(m);
                }
                (Some(i), None) => {
                    removed.insert(i);
                }
                (None, Some(m)) => {
                    models.push(Arc::new(m));
                    reorder = true;
                }
                (None, None) => {}
            }
        }
        if !removed.is_empty() {
            let mut i = 0;
            models.retain(|_| {
                let keep = !removed.contains(&i);
                i += 1;
                keep
            });
        }
        if reorder {
            models.sort_by_cached_key(|m| scan::order_key(m, &registry));
        }
        Ok(Some((
            Listing {
                kind: ListKind::Full,
                models,
                problems,
                scan_started,
                timestamp: full.timestamp,
                scan_duration: started_wall.elapsed(),
                stamps,
            },
            rows_changed,
        )))
    }

    /// Revalidates the listing saved by the last run instead of scanning everything: the
    /// models whose folder changed since that scan (per-model fingerprint: the folder's
    /// modification time newer than the newest time the scan saw in it), the folders that
    /// appeared or vanished, the rows whose status is volatile, and the other stores
    /// are rescanned; every other row is reused. A registry that changed means a full
    /// scan. A file replaced in place deep inside a model folder is not seen here; the
    /// watcher sees it while the app runs, and the TTL's full scan after a restart.
    pub(super) fn revalidate(&mut self, warm: &Arc<Listing>) -> Result<Arc<Listing>> {
        self.warm = None;
        let stamps = Stamps::read(&self.library);
        if stamps.registry != warm.stamps.registry {
            return self.rescan(ListKind::Full);
        }
        self.library.check_reachable()?;
        let started_wall = Instant::now();
        let mut changes = Changes::default();
        // The fingerprints (one `fstatat` per model folder, relative to one open `models/`,
        // on the scan threads) while the registry is read on this one: the rows to read
        // again need it, and it is not needed before.
        let library = self.library.clone();
        let now = self.clock.now();
        let (rows, registry) = rayon::join(
            || scan::rows_to_reread(&library, &warm.models),
            || registry_copy::load_for_listing(&library, now),
        );
        let (registry, pending) = registry?;
        let registry = self.keep_registry(registry, pending);
        self.remember_registry(stamps.registry, &registry);
        let registry = Some(registry);
        changes.models.extend(rows);
        // Folders that appeared, and the registry's view of them, need the same reading
        // (compared against the saved listing, held as the full one while this runs).
        let full = Arc::clone(warm);
        self.listings.insert(ListKind::Full, Arc::clone(&full));
        self.reconcile_top_level(&mut changes, &stamps);
        let names: Vec<String> = changes.models.into_iter().collect();
        let rescanned = names.len();
        // The other stores are cheap to list again in full (first, so the listing's
        // problems below name any store that cannot be read).
        let store_models = self.scan_stores();
        let mut listing = match self.rescan_some(&full, &names, stamps, registry) {
            Ok(Some((listing, _))) => listing,
            Ok(None) => Listing::clone(&full),
            Err(e) => {
                self.listings.remove(&ListKind::Full);
                return Err(e);
            }
        };
        listing.models.retain(|m| m.source == LIBRARY_SOURCE);
        listing.models.extend(store_models);
        listing.timestamp = self.clock.now();
        listing.scan_duration = started_wall.elapsed();
        let total = listing.models.len();
        let listing = Arc::new(listing);
        // Whether any row differs from the saved one (the rescanned ones and the other
        // stores' alike; rows carried over are the same `Arc`s, so they cost nothing).
        let rows_changed = listing.models.len() != full.models.len()
            || listing
                .models
                .iter()
                .zip(full.models.iter())
                .any(|(a, b)| !Arc::ptr_eq(a, b) && a != b);
        let how = if rows_changed {
            Installed::Scanned
        } else {
            Installed::Confirmed
        };
        // A file replaced in place deep inside a folder is not seen here: nobody vouches.
        self.note_coverage(None);
        let listing = self.install_full(listing, how);
        self.persist_note = Some(format!(
            "revalidated the saved listing: {rescanned} of {total} models rescanned"
        ));
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::watch::WatchOption;

    /// A selective rescan takes a registered model's name and description from the row it
    /// replaces (the kept registry has none); it refuses a listing made from another
    /// registry file (a full scan must follow), and reads the registry whole when the
    /// listing has no registered row for the model.
    #[test]
    fn a_rescan_takes_names_from_rows_of_the_same_registry_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("models/a")).unwrap();
        std::fs::write(root.join("models/a/w.bin"), b"abc").unwrap();
        std::fs::write(
            root.join("model_registry.json"),
            r#"{"version": 1, "models": [{"id": "a", "name": "Alpha", "description": "A.",
                "files": [{"path": "w.bin", "size": 3}]}]}"#,
        )
        .unwrap();
        let options = ServiceOptions {
            persist: false,
            watch: WatchOption::Off,
            ..ServiceOptions::default()
        };
        let mut svc = ModelLibraryService::new(Library::new(root), options).unwrap();
        let listing = svc.list(ListKind::Full, true).unwrap();
        let stamps = listing.stamps;
        assert!(svc.registry_for(stamps.registry).unwrap().is_slim());
        std::fs::write(root.join("models/a/more.bin"), b"de").unwrap();
        let a = ["a".to_string()];
        // From a listing of the same registry, the names come from its rows.
        let mut same = Listing::clone(&listing);
        Arc::make_mut(&mut same.models[0]).name = "From the row".into();
        let (rescanned, _) = svc
            .rescan_some(&same, &a, stamps, None)
            .unwrap()
            .expect("a row changed");
        let row = &rescanned.models[0];
        assert_eq!((&*row.name, row.size_bytes()), ("From the row", Some(5)));
        assert_eq!(row.description.as_deref(), Some("A."));
        // A listing made from an older registry file: refused, whatever its rows say.
        let mut other = Listing::clone(&listing);
        other.stamps.registry = stamps.registry.map(|t| t - 60.0);
        assert!(svc.rescan_some(&other, &a, stamps, None).is_err());
        // No registered row to take the texts from: the registry is read whole.
        let mut bare = Listing::clone(&listing);
        let row = Arc::make_mut(&mut bare.models[0]);
        row.registered = false;
        row.name = "a".into();
        row.description = None;
        let (rescanned, _) = svc
            .rescan_some(&bare, &a, stamps, None)
            .unwrap()
            .expect("a row changed");
        let row = &rescanned.models[0];
        assert_eq!(
            (&*row.name, row.description.as_deref()),
            ("Alpha", Some("A."))
        );
    }
}
