//! The promise horizon on disk, written by a thread of its own.
//!
//! A restarted voter must not grant before the end of the promises it may
//! have made (see `quiet_until`), so the horizon goes to disk ahead of the
//! promises. The lease thread runs at real-time priority and must never
//! wait on a disk: an fsync elsewhere on the same file system (Redis's AOF,
//! once a second) can hold a small write for tens of ms, longer than a
//! lease. So the thread asks for the next horizon well before it is
//! needed and waits only when the disk is a whole chunk behind.
use std::{
    path::PathBuf,
    sync::{Arc, Condvar, Mutex, mpsc},
    time::Duration,
};

use super::Nanos;

/// Written this far ahead of the promises...
const CHUNK_NS: Nanos = 2_000_000_000;
/// ...and asked for again when less than this is left.
const REFILL_NS: Nanos = 1_000_000_000;
/// The longest the lease thread waits when the disk is behind; past it, it
/// goes on (as on a write error) and warns.
const WAIT: Duration = Duration::from_secs(1);

pub struct Horizon {
    tx: mpsc::Sender<Nanos>,
    /// The horizon on disk (0 before the first write lands).
    done: Arc<(Mutex<Nanos>, Condvar)>,
    asked: Nanos,
}

impl Horizon {
    /// Starts the writer thread for `file` (`<boot id> <horizon ns>`).
    pub fn start(file: PathBuf, boot_id: String) -> std::io::Result<Horizon> {
        let (tx, rx) = mpsc::channel::<Nanos>();
        let done = Arc::new((Mutex::new(0), Condvar::new()));
        let shared = done.clone();
        std::thread::Builder::new()
            .name("ha-horizon".into())
            .spawn(move || {
                let tmp = file.with_extension("tmp");
                let mut written = 0;
                while let Ok(mut want) = rx.recv() {
                    // Only the newest ask matters; files only ever grow.
                    while let Ok(w) = rx.try_recv() {
                        want = want.max(w);
                    }
                    if want <= written {
                        continue;
                    }
                    let ok = std::fs::write(&tmp, format!("{boot_id} {want}\n"))
                        .and_then(|()| std::fs::rename(&tmp, &file));
                    match ok {
                        Ok(()) => {
                            written = want;
                            let (m, cv) = &*shared;
                            *m.lock().unwrap_or_else(|e| e.into_inner()) = want;
                            cv.notify_all();
                        }
                        Err(e) => tracing::warn!(
                            "quorum: writing {}: {e}; after a restart this voter stays quiet for the longest promise",
                            file.display()
                        ),
                    }
                }
            })?;
        Ok(Horizon { tx, done, asked: 0 })
    }

    /// The promises now reach `h`: asks for more ahead when little is
    /// left, and waits (at most `WAIT`) only if `h` is past what is on disk.
    pub fn cover(&mut self, h: Nanos) {
        if h + REFILL_NS > self.asked {
            self.asked = h + CHUNK_NS;
            let _ = self.tx.send(self.asked);
        }
        let (m, cv) = &*self.done;
        let on_disk = m.lock().unwrap_or_else(|e| e.into_inner());
        if *on_disk >= h {
            return;
        }
        let (on_disk, t) = cv
            .wait_timeout_while(on_disk, WAIT, |d| *d < h)
            .unwrap_or_else(|e| e.into_inner());
        if t.timed_out() {
            tracing::warn!(
                "quorum: the promise horizon is not on disk after {WAIT:?} ({} ms behind); granting anyway",
                (h - *on_disk) / 1_000_000
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_is_on_disk_before_it_is_needed_and_only_grows() {
        let dir = std::env::temp_dir().join(format!("ha-horizon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("quorum-horizon");
        let mut h = Horizon::start(file.clone(), "boot".into()).unwrap();
        h.cover(5_000_000_000);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, format!("boot {}\n", 5_000_000_000 + CHUNK_NS));
        // Within the chunk: nothing to wait for, nothing new asked.
        h.cover(5_500_000_000);
        assert_eq!(h.asked, 5_000_000_000 + CHUNK_NS);
        // Close to its end: the next chunk is asked for ahead.
        h.cover(6_500_000_000);
        assert_eq!(h.asked, 6_500_000_000 + CHUNK_NS);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
