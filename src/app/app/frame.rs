//! The window's frame: a table of contents of the panels, each drawn by its `*_ui`
//! function from the state it shows, whose intents are collected into one [`Intent`] list
//! and applied in one place ([`ModelLibraryApp::apply`]). Draws and decides; the worker is
//! only asked, never waited for.

use super::*;

/// What the user asked for in a frame, from any panel or dialog.
enum Intent {
    Toolbar(ToolbarAction),
    Notice(NoticeAction),
    Cache(CacheAction),
    Table(TableAction),
    Details(DetailsAction),
    Delete(DialogAction),
    Stores(StoresAction),
    Import(ImportAction),
    Status(StatusAction),
    Reclaim(ReclaimAction),
    Disk(DiskAction),
    /// Escape with no dialog open: close the details.
    Deselect,
}

impl ModelLibraryApp {
    /// Draws one frame: the panels, then what they asked for.
    pub(super) fn frame_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx);
        let mut intents: Vec<Intent> = Vec::new();
        let now = Instant::now();
        self.notices.retain(|n| n.current(now));
        intents.extend(notices_ui(&ctx, &self.notices).map(Intent::Notice));
        intents.extend(self.toolbar_panel(ui).map(Intent::Toolbar));
        intents.extend(self.status_panel(ui).map(Intent::Status));
        intents.extend(self.cache_side_panel(ui).map(Intent::Cache));
        intents.extend(self.details_panel(ui).map(Intent::Details));
        intents.extend(self.table_panel(ui).map(Intent::Table));
        intents.extend(self.dialogs(&ctx));
        for intent in intents {
            self.apply(intent, &ctx);
        }
        self.import_dropped(&ctx);
        self.schedule_repaint(&ctx);
    }

    /// Applies one intent.
    fn apply(&mut self, intent: Intent, ctx: &egui::Context) {
        match intent {
            Intent::Toolbar(a) => self.apply_toolbar(a, ctx),
            Intent::Status(StatusAction::OpenReclaim) => self.open_reclaim(),
            Intent::Reclaim(a) => self.apply_reclaim(a),
            Intent::Disk(a) => self.apply_disk(a),
            Intent::Notice(NoticeAction::Dismiss(i)) => {
                if i < self.notices.len() {
                    self.notices.remove(i);
                }
            }
            Intent::Cache(a) => match a {
                CacheAction::SetTtl(secs) => {
                    self.start_op(Op::SetTtl, Request::SetTtl { secs: secs as i64 })
                }
                CacheAction::Refresh => self.refresh(),
                CacheAction::ForceRefresh => self.request_list(true),
            },
            Intent::Table(a) => self.apply_table(a, ctx),
            Intent::Details(a) => self.apply_details(a),
            Intent::Delete(a) => match a {
                DialogAction::ConfirmDelete(mode) => {
                    if let Some(d) = self.delete.take() {
                        self.settings.delete_mode = mode;
                        self.start_op(Op::Delete, Request::Delete { id: d.id, mode });
                    }
                }
                DialogAction::SetMode(mode) => self.settings.delete_mode = mode,
                DialogAction::Cancel => self.delete = None,
            },
            Intent::Stores(a) => match a {
                StoresAction::Apply => {
                    if let Some(draft) = self.stores_draft.take() {
                        self.settings.stores = draft.to_settings();
                        self.open_library(self.settings.library.clone());
                    }
                }
                StoresAction::Close => self.stores_draft = None,
            },
            Intent::Import(a) => match a {
                ImportAction::Import(source) => {
                    self.import_path = None;
                    self.download_request(Request::Import { source });
                }
                ImportAction::Choose => self.choose_import_file(),
                ImportAction::Close => self.import_path = None,
            },
            Intent::Deselect => self.selected = None,
        }
    }

    fn apply_table(&mut self, action: TableAction, ctx: &egui::Context) {
        match action {
            TableAction::Select(id) => self.select(id),
            TableAction::Sort(key) => {
                if self.settings.sort == key {
                    self.settings.ascending = !self.settings.ascending;
                } else {
                    self.settings.sort = key;
                    self.settings.ascending = true;
                }
                self.recompute_order();
            }
            TableAction::Delete(id) => self.ask_delete(id),
            TableAction::Download(id) => self.download_request(Request::Download { id }),
            TableAction::CancelDownload(id) => {
                self.download_request(Request::CancelDownload { id })
            }
            TableAction::OpenFolder(path) => self.open_folder(path),
            TableAction::Copy(text) => ctx.copy_text(text),
            TableAction::Verify(id) => self.start_verify(vec![id]),
        }
    }

    fn apply_details(&mut self, action: DetailsAction) {
        match action {
            DetailsAction::OpenFolder(path) => self.open_folder(path),
            DetailsAction::Delete(id) => self.ask_delete(id),
            DetailsAction::Download(id) => self.download_request(Request::Download { id }),
            DetailsAction::CancelDownload(id) => {
                self.download_request(Request::CancelDownload { id })
            }
            DetailsAction::DiscardPartial(id) => {
                self.download_request(Request::DiscardPartial { id })
            }
            DetailsAction::Close => self.selected = None,
        }
    }

    /// Whether a refresh is running (the refresh buttons wait for it).
    fn refreshing(&self) -> bool {
        matches!(self.op_req, Some((Op::Refresh, _)))
    }

    fn toolbar_panel(&mut self, ui: &mut egui::Ui) -> Option<ToolbarAction> {
        let root = self
            .library
            .as_ref()
            .map(|l| l.root().display().to_string());
        let refreshing = self.refreshing();
        let mut action = None;
        egui::Panel::top("toolbar").show(ui, |ui| {
            ui.add_space(4.0);
            action = toolbar_ui(
                ui,
                &ToolbarInput {
                    library: root.as_deref(),
                    refreshing,
                    picking: self.picker.is_some() || self.import_picker.is_some(),
                    providers: &self.providers,
                    capabilities: &self.capabilities,
                    sources: &self.sources,
                    source: self.settings.source.as_deref(),
                    provider: self.settings.provider.as_deref(),
                    status: self.settings.status,
                    capability: self.settings.capability.as_deref(),
                    quick: self.settings.quick,
                    stores: self.stores_allowed.then_some(self.settings.other_stores),
                    focus_search: std::mem::take(&mut self.focus_search),
                    theme: self.settings.theme,
                    verifying: self.verifying(),
                    fits: self.fits_only,
                },
                ToolbarText {
                    search: &mut self.search,
                    typed_path: &mut self.typed_path,
                },
            );
            ui.add_space(2.0);
        });
        action
    }

    fn status_panel(&self, ui: &mut egui::Ui) -> Option<StatusAction> {
        let progress = self.worker.progress().read();
        let reclaimable = self
            .reclaimable
            .as_ref()
            .map(|items| items.iter().map(|i| i.size).sum());
        let mut action = None;
        egui::Panel::bottom("status").show(ui, |ui| {
            action = status_bar_ui(
                ui,
                &StatusInput {
                    counts: &self.counts,
                    total_bytes: self.total_bytes,
                    shown: self.order.len(),
                    total: self.view.as_ref().map_or(0, |v| v.listing.models.len()),
                    progress: progress.running.then_some(progress),
                    stale: self.stale_rows,
                    revalidating: self.revalidating,
                    verify: self.verify.as_ref().filter(|v| v.running),
                    reclaimable,
                },
            );
        });
        action
    }

    fn cache_side_panel(&mut self, ui: &mut egui::Ui) -> Option<CacheAction> {
        let now = unix_seconds(SystemTime::now());
        let refreshing = self.refreshing();
        let mut action = None;
        egui::Panel::right("cache_panel")
            .resizable(true)
            .default_size(320.0)
            .size_range(240.0..=480.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    action = cache_panel_ui(
                        ui,
                        &CachePanelInput {
                            info: self.cache.as_ref(),
                            now,
                            history: &self.history,
                            installed: &self.installed,
                            refreshing,
                        },
                        &mut self.ttl_slider,
                    );
                });
            });
        action
    }

    fn details_panel(&mut self, ui: &mut egui::Ui) -> Option<DetailsAction> {
        let m = self.selected_model().cloned()?;
        let mut action = None;
        egui::Panel::bottom("details")
            .resizable(true)
            .default_size(230.0)
            .size_range(120.0..=600.0)
            .show(ui, |ui| {
                // One scroll position per model: a newly selected model starts at its
                // name, not where the last one was left.
                egui::ScrollArea::vertical().id_salt(&m.id).show(ui, |ui| {
                    let files = self
                        .files
                        .as_ref()
                        .filter(|f| f.id == m.id)
                        .map(|f| (f.files.as_slice(), f.more));
                    action = details_ui(
                        ui,
                        &m,
                        self.downloads.get(&m.id),
                        files,
                        self.machine.as_ref(),
                    );
                });
            });
        action
    }

    fn table_panel(&mut self, ui: &mut egui::Ui) -> Option<TableAction> {
        let progress = self.worker.progress().read();
        let mut action = None;
        egui::CentralPanel::default().show(ui, |ui| match &self.view {
            None => {
                ui.add_space(40.0);
                ui.vertical_centered(|ui| {
                    if self.library.is_none() && self.open_req.is_none() {
                        ui.heading("No library open");
                        ui.label("Choose a folder with “Open folder…”, or type its path.");
                    } else {
                        ui.heading("Scanning the library…");
                        if progress.running && progress.total > 0 {
                            ui.add(
                                egui::ProgressBar::new(
                                    progress.done as f32 / progress.total as f32,
                                )
                                .desired_width(360.0)
                                .text(format!("{} / {} models", progress.done, progress.total)),
                            );
                        }
                    }
                });
            }
            Some(view) if self.order.is_empty() => {
                ui.add_space(40.0);
                ui.vertical_centered(|ui| {
                    if view.listing.models.is_empty() {
                        ui.heading("This library has no models yet");
                    } else {
                        ui.heading("No models match the filters");
                    }
                });
            }
            Some(view) => {
                action = table_ui(
                    ui,
                    &TableInput {
                        view,
                        order: &self.order,
                        sort: self.settings.sort,
                        ascending: self.settings.ascending,
                        selected: self.selected.as_deref(),
                        scroll_to: self.scroll_to.take(),
                        downloads: &self.downloads,
                    },
                );
            }
        });
        action
    }

    /// The dialogs that are open (import, stores, delete), or Escape closing the details
    /// when none is.
    fn dialogs(&mut self, ctx: &egui::Context) -> Vec<Intent> {
        let mut intents = Vec::new();
        let picking = self.import_picker.is_some();
        if let Some(path) = self.import_path.as_mut() {
            intents.extend(import_ui(ctx, path, picking).map(Intent::Import));
        }
        if let Some(draft) = self.stores_draft.as_mut() {
            intents.extend(stores_ui(ctx, draft).map(Intent::Stores));
        }
        if let Some(confirming_link) = self.disk_window {
            let (largest, least_used) = &self.disk_tops;
            let largest: Vec<&ModelInfo> = largest.iter().collect();
            let least_used: Vec<&ModelInfo> = least_used.iter().collect();
            let input = DiskInput {
                usage: self.disk_usage.as_ref(),
                largest: &largest,
                least_used: &least_used,
                reclaimable: self
                    .reclaimable
                    .as_ref()
                    .map(|items| items.iter().map(|i| i.size).sum()),
                duplicates: self.duplicates.as_ref(),
                confirming_link,
            };
            intents.extend(disk_ui(ctx, &input).map(Intent::Disk));
        }
        if let Some(confirming) = self.reclaim_window {
            let input = ReclaimInput {
                items: self.reclaimable.as_deref(),
                confirming,
                busy: self.reclaim_req.is_some(),
            };
            intents.extend(reclaim_ui(ctx, &input).map(Intent::Reclaim));
        }
        if let Some(d) = &self.delete {
            intents.extend(
                delete_dialog_ui(
                    ctx,
                    &DeleteDialogInput {
                        name: &d.name,
                        plan: d.plan.as_ref(),
                        mode: self.settings.delete_mode,
                    },
                )
                .map(Intent::Delete),
            );
        }
        if !self.dialog_open()
            && self.selected.is_some()
            && ctx.input(|i| i.key_pressed(egui::Key::Escape))
        {
            intents.push(Intent::Deselect);
        }
        intents
    }

    /// Keeps frames coming while something moves (a request, a scan, a download), else
    /// once a second for the live age.
    fn schedule_repaint(&self, ctx: &egui::Context) {
        let busy = self.open_req.is_some() || self.list_req.is_some() || self.op_req.is_some();
        let moving = busy
            || self.worker.progress().read().running
            || !self.downloads.is_empty()
            || self.verifying()
            || self.deduplicating();
        ctx.request_repaint_after(std::time::Duration::from_millis(if moving {
            100
        } else {
            1000
        }));
    }
}
