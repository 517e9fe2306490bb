//! A voter's memory across a restart of its daemon within one boot:
//! `<run_dir>/quorum-state`, the boot id then one JSON object (instance →
//! `voter::Memory`), written by a thread of its own (the lease thread never
//! touches a disk, see `horizon`), replacing the file as it changes, at
//! most every `voter::MEMORY_EVERY_NS`. Without it a restarted voter would
//! know nothing of where the master's data stands and could vouch for no
//! takeover: every daemon restarted at once would leave no node that could
//! be elected.
use std::{collections::BTreeMap, path::PathBuf, sync::mpsc};

use super::voter::Memory;

pub struct MemoryFile {
    tx: mpsc::Sender<String>,
}

impl MemoryFile {
    /// Starts the writer thread for `file`.
    pub fn start(file: PathBuf, boot_id: String) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("ha-memory".into())
            .spawn(move || {
                let tmp = file.with_extension("tmp");
                let mut warned = false;
                while let Ok(mut text) = rx.recv() {
                    // Only the newest matters.
                    while let Ok(t) = rx.try_recv() {
                        text = t;
                    }
                    let r = std::fs::write(&tmp, format!("{boot_id}\n{text}\n"))
                        .and_then(|()| std::fs::rename(&tmp, &file));
                    if let Err(e) = r
                        && !warned
                    {
                        warned = true;
                        tracing::warn!(
                            "quorum: writing {}: {e}; after a restart this voter vouches for no takeover until it sees a holder renew",
                            file.display()
                        );
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Replaces what is kept.
    pub fn save(&self, m: &BTreeMap<String, Memory>) {
        if let Ok(text) = serde_json::to_string(m) {
            let _ = self.tx.send(text);
        }
    }
}

/// What a daemon that ran before in this boot kept (nothing after a reboot,
/// or when the file is missing or unreadable).
pub fn load(file: &std::path::Path, boot_id: &str) -> BTreeMap<String, Memory> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return BTreeMap::new();
    };
    let Some((boot, json)) = text.split_once('\n') else {
        return BTreeMap::new();
    };
    if boot != boot_id || boot_id.is_empty() {
        return BTreeMap::new();
    }
    serde_json::from_str(json.trim()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_within_a_boot_only() {
        let dir = std::env::temp_dir().join(format!("ha-memory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("quorum-state");
        let w = MemoryFile::start(file.clone(), "boot-a".into()).unwrap();
        let mut m = BTreeMap::new();
        m.insert(
            "vi".to_string(),
            Memory {
                max_term: 7,
                max_holder: Some("198.18.0.1".parse().unwrap()),
                data_holder: Some("198.18.0.1".parse().unwrap()),
                samples: vec![(5, 100), (9, 150)],
                ids: vec![42],
            },
        );
        w.save(&m);
        let ok = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            load(&file, "boot-a") == m
        });
        assert!(ok);
        assert!(
            load(&file, "boot-b").is_empty(),
            "another boot: nothing kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
