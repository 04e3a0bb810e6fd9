//! The usage spool: a write-ahead log of usage records on local disk, read by the
//! [`Shipper`](super::shipper::Shipper) and sent to the usage stream.
//!
//! Layout of `cluster.spool_dir`:
//! - `usage-<20-digit seq>.jsonl`: segments, one usage record (JSON) per line. [`Spool`] appends
//!   to the newest one, the *current* segment, with one `write(2)` per record on an `O_APPEND`
//!   descriptor, so a record is in the kernel before the request's context is dropped: killing
//!   the process loses nothing. A segment is closed for good when it reaches its size or when
//!   the shipper, having caught up with it, asks for a new one; every start opens a new one.
//! - `cursor`: `{"segment":N,"offset":B}`, how far the stream has acknowledged: byte `B` of
//!   segment `N`. Replaced by rename after each batch; fully shipped segments are deleted.
//! - `lock`: `flock`ed by the process using the directory (it holds that process's pid), so
//!   two data planes cannot share a spool by mistake.
//!
//! The spool never blocks a request on the network. It is bounded by `cluster.spool_max_mb`
//! (bytes on disk, shipped or not): past it a record is logged at error level, in full, and
//! counted in `omg_usage_spool_full_total`. Data written since the last sync can be lost on a
//! power failure (not on a process crash); the shipper syncs the spool every `sync_interval`
//! (100 ms by default) while records are waiting.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use omg_shared::usage::UsageEvent;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

pub use super::reader::SpoolReader;
use super::reader::{load_cursor, Cursor};
use super::UsageSink;
use crate::metrics::Metrics;

const MIB: u64 = 1024 * 1024;
/// Largest segment; smaller spools get proportionally smaller segments.
pub const MAX_SEGMENT_BYTES: u64 = 16 * MIB;
const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
const LOCK_FILE: &str = "lock";
const SEGMENT_PREFIX: &str = "usage-";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// Why the spool could not be opened. The messages name `cluster.spool_dir`.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The directory or a file in it could not be created, read or locked.
    #[error("cannot use the usage spool directory `{}` (`cluster.spool_dir`): {source}", dir.display())]
    Io {
        /// The spool directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// Another process holds the directory's lock.
    #[error(
        "the usage spool directory `{}` (`cluster.spool_dir`) is in use by another process{}; \
         give each data plane its own directory",
        dir.display(),
        holder.as_deref().map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The spool directory.
        dir: PathBuf,
        /// The pid written in the lock file by its holder, when readable.
        holder: Option<String>,
    },
}

/// Sizes of a spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Largest number of bytes on disk (`cluster.spool_max_mb`).
    pub max_bytes: u64,
    /// A segment is closed once the next record would take it past this size.
    pub segment_bytes: u64,
}

impl SpoolOptions {
    /// `max_bytes` with segments of an eighth of it, between 64 KiB and 16 MiB.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
        }
    }

    /// From `cluster.spool_max_mb`.
    pub fn from_max_mb(max_mb: u64) -> Self {
        Self::new(max_mb.saturating_mul(MIB))
    }
}

/// The writing half of the spool, a [`UsageSink`]. Share it (`Arc`) with the proxy; the
/// [`SpoolReader`] returned with it goes to the shipper.
pub struct Spool {
    dir: PathBuf,
    options: SpoolOptions,
    writer: Mutex<Writer>,
    /// Sequence of the current segment; everything older is sealed.
    current_seq: AtomicU64,
    /// Bytes of all segments on disk, shipped or not: what `max_bytes` bounds.
    disk_bytes: AtomicU64,
    /// Bytes not yet shipped.
    pending_bytes: AtomicU64,
    /// Something was written (or a segment created) since the last sync.
    dirty: AtomicBool,
    spooled: AtomicU64,
    full: AtomicU64,
    write_errors: AtomicU64,
    notify: Notify,
    _lock: Flock<File>,
}

struct Writer {
    seq: u64,
    /// `None` after a failure left the segment unusable: the next record opens a new one.
    file: Option<Arc<File>>,
    len: u64,
    /// Closed segments written since the last sync.
    unsynced: Vec<Arc<File>>,
    /// A segment was created since the last sync (the directory needs one too).
    dir_dirty: bool,
}

/// Why a record was not spooled.
enum Refused {
    Full,
    Io(io::Error),
}

impl Spool {
    /// Opens (creating it) the spool in `dir`, bounded at `max_bytes`. Whatever a previous
    /// run left unshipped is picked up by the returned reader.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Arc<Spool>, SpoolReader), SpoolError> {
        Self::open_with(dir, SpoolOptions::new(max_bytes))
    }

    /// [`Spool::open`] with explicit sizes.
    pub fn open_with(
        dir: &Path,
        options: SpoolOptions,
    ) -> Result<(Arc<Spool>, SpoolReader), SpoolError> {
        let io_error = |source| SpoolError::Io {
            dir: dir.to_owned(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error)?;
        let lock = acquire_lock(dir)?;
        let segments = list_segments(dir).map_err(io_error)?;
        let mut cursor = load_cursor(dir).unwrap_or(Cursor {
            segment: segments.first().map_or(0, |s| s.seq),
            offset: 0,
        });
        let mut disk_bytes = 0;
        let mut pending_bytes = 0;
        let mut waiting = 0usize;
        for segment in &segments {
            if segment.seq < cursor.segment {
                // Shipped; the previous run stopped before deleting it.
                if let Err(error) = remove_segment(dir, segment.seq) {
                    tracing::warn!(spool_dir = %dir.display(), segment = segment.seq, %error, "cannot delete a shipped usage spool segment");
                    disk_bytes += segment.len;
                }
                continue;
            }
            disk_bytes += segment.len;
            let shipped = if segment.seq == cursor.segment {
                cursor.offset.min(segment.len)
            } else {
                0
            };
            pending_bytes += segment.len - shipped;
            waiting += usize::from(segment.len > shipped);
        }
        if !segments.iter().any(|s| s.seq == cursor.segment) {
            cursor.offset = 0;
        }
        let last = segments.last().map_or(0, |s| s.seq).max(cursor.segment);
        let (seq, file) = create_segment(dir, last + 1).map_err(io_error)?;
        let spool = Arc::new(Spool {
            dir: dir.to_owned(),
            options,
            writer: Mutex::new(Writer {
                seq,
                file: Some(Arc::new(file)),
                len: 0,
                unsynced: Vec::new(),
                dir_dirty: true,
            }),
            current_seq: AtomicU64::new(seq),
            disk_bytes: AtomicU64::new(disk_bytes),
            pending_bytes: AtomicU64::new(pending_bytes),
            dirty: AtomicBool::new(true),
            spooled: AtomicU64::new(0),
            full: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            notify: Notify::new(),
            _lock: lock,
        });
        Metrics::global()
            .usage_spool_bytes
            .add(i64::try_from(pending_bytes).unwrap_or(i64::MAX));
        if pending_bytes > 0 {
            tracing::info!(
                spool_dir = %dir.display(),
                pending_bytes,
                segments = waiting,
                "usage spool holds records a previous run did not ship; they are shipped first"
            );
        }
        let reader = SpoolReader::new(spool.clone(), cursor);
        Ok((spool, reader))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its sizes.
    pub fn options(&self) -> SpoolOptions {
        self.options
    }

    /// Bytes written and not yet shipped.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::Acquire)
    }

    /// Bytes of all segments on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Acquire)
    }

    /// Records spooled by this process.
    pub fn spooled_total(&self) -> u64 {
        self.spooled.load(Ordering::Relaxed)
    }

    /// Records refused because the spool was full (each was logged).
    pub fn full_total(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Records that could not be written (each was logged), and torn records skipped.
    pub fn write_errors_total(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    pub(super) fn current_seq(&self) -> u64 {
        self.current_seq.load(Ordering::Acquire)
    }

    pub(super) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    pub(super) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    pub(super) fn count_write_error(&self) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        Metrics::global().usage_write_errors.inc();
    }

    /// `bytes` of the spool reached the stream (or were skipped).
    pub(super) fn release_pending(&self, bytes: u64) {
        let before = saturating_sub(&self.pending_bytes, bytes);
        let released = before.min(bytes);
        Metrics::global()
            .usage_spool_bytes
            .sub(i64::try_from(released).unwrap_or(i64::MAX));
    }

    /// A segment of `bytes` was deleted.
    pub(super) fn release_disk(&self, bytes: u64) {
        saturating_sub(&self.disk_bytes, bytes);
    }

    /// Closes the current segment if it is still `seq` and holds at least `min_len` bytes.
    /// The shipper calls it once it has shipped all of `seq`, so shipped bytes do not linger.
    pub(super) fn rotate_if_current(&self, seq: u64, min_len: u64) -> io::Result<bool> {
        let mut writer = self.writer();
        if writer.seq != seq || writer.len < min_len {
            return Ok(false);
        }
        self.rotate(&mut writer)?;
        Ok(true)
    }

    /// Flushes what was written since the last call to the disk (`fdatasync` of the
    /// segments, `fsync` of the directory after a new segment). Blocking.
    pub(super) fn sync(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let (files, dir_dirty) = {
            let mut writer = self.writer();
            let mut files = std::mem::take(&mut writer.unsynced);
            files.extend(writer.file.clone());
            (files, std::mem::take(&mut writer.dir_dirty))
        };
        let result = files
            .iter()
            .try_for_each(|file| file.sync_data())
            .and_then(|()| {
                if dir_dirty {
                    File::open(&self.dir)?.sync_all()
                } else {
                    Ok(())
                }
            });
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
            self.writer().dir_dirty |= dir_dirty;
        }
        result
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // Nothing panics while holding it; a poisoned lock still guards consistent state.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One write of a whole line, under the writer lock (held for that write only).
    fn append(&self, line: &[u8]) -> Result<(), Refused> {
        let len = line.len() as u64;
        let mut writer = self.writer();
        if self.disk_bytes().saturating_add(len) > self.options.max_bytes {
            return Err(Refused::Full);
        }
        if writer.file.is_none()
            || (writer.len > 0 && writer.len + len > self.options.segment_bytes)
        {
            self.rotate(&mut writer).map_err(Refused::Io)?;
        }
        let Some(file) = writer.file.clone() else {
            return Err(Refused::Io(io::Error::other("no open segment")));
        };
        // Counted before the bytes are visible: the shipper may read, ship and release them
        // before this thread runs again, and a release before the count would leave phantom
        // pending bytes behind.
        self.disk_bytes.fetch_add(len, Ordering::AcqRel);
        self.pending_bytes.fetch_add(len, Ordering::AcqRel);
        let gauge = &Metrics::global().usage_spool_bytes;
        gauge.add(i64::try_from(len).unwrap_or(i64::MAX));
        if let Err(error) = (&*file).write_all(line) {
            saturating_sub(&self.disk_bytes, len);
            saturating_sub(&self.pending_bytes, len);
            gauge.sub(i64::try_from(len).unwrap_or(i64::MAX));
            // A partial write would glue the next record to a fragment: cut it off, or, if
            // that fails too, leave the fragment at the end of a closed segment (the reader
            // logs and skips it).
            if file.set_len(writer.len).is_err() {
                writer.file = None;
                writer.unsynced.push(file);
            }
            return Err(Refused::Io(error));
        }
        writer.len += len;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn rotate(&self, writer: &mut Writer) -> io::Result<()> {
        let (seq, file) = create_segment(&self.dir, writer.seq + 1)?;
        if let Some(old) = writer.file.replace(Arc::new(file)) {
            writer.unsynced.push(old);
        }
        writer.seq = seq;
        writer.len = 0;
        writer.dir_dirty = true;
        self.dirty.store(true, Ordering::Release);
        self.current_seq.store(seq, Ordering::Release);
        Ok(())
    }
}

impl UsageSink for Spool {
    fn record(&self, event: &UsageEvent) {
        let metrics = Metrics::global();
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(request_id = %event.request_id, %error, "usage record could not be serialized");
                self.count_write_error();
                return;
            }
        };
        line.push(b'\n');
        match self.append(&line) {
            Ok(()) => {
                self.spooled.fetch_add(1, Ordering::Relaxed);
                metrics.usage_spooled.inc();
                metrics.usage_records.inc();
                self.notify.notify_one();
            }
            Err(Refused::Full) => {
                self.full.fetch_add(1, Ordering::Relaxed);
                metrics.usage_spool_full.inc();
                tracing::error!(
                    spool_dir = %self.dir.display(),
                    max_bytes = self.options.max_bytes,
                    record = %String::from_utf8_lossy(&line[..line.len() - 1]),
                    "usage spool is full (`cluster.spool_max_mb`; is the usage stream reachable?); \
                     the record is logged here instead"
                );
            }
            Err(Refused::Io(error)) => {
                self.count_write_error();
                tracing::error!(
                    spool_dir = %self.dir.display(),
                    %error,
                    record = %String::from_utf8_lossy(&line[..line.len() - 1]),
                    "usage record could not be written to the spool; it is logged here instead"
                );
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // What is pending stays on disk; it is counted again by whoever opens it next.
        Metrics::global()
            .usage_spool_bytes
            .sub(i64::try_from(self.pending_bytes()).unwrap_or(i64::MAX));
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("current_seq", &self.current_seq())
            .field("pending_bytes", &self.pending_bytes())
            .finish_non_exhaustive()
    }
}

/// `atomic -= bytes`, stopping at zero; returns the previous value.
fn saturating_sub(atomic: &AtomicU64, bytes: u64) -> u64 {
    atomic
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(v.saturating_sub(bytes))
        })
        .unwrap_or_else(|v| v)
}

fn acquire_lock(dir: &Path) -> Result<Flock<File>, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let io_error = |source| SpoolError::Io {
        dir: dir.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_error)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            lock.set_len(0).map_err(io_error)?;
            writeln!(&*lock, "{}", std::process::id()).map_err(io_error)?;
            Ok(lock)
        }
        Err((_, Errno::EWOULDBLOCK)) => Err(SpoolError::Locked {
            dir: dir.to_owned(),
            holder: fs::read_to_string(&path)
                .ok()
                .map(|pid| pid.trim().to_owned())
                .filter(|pid| !pid.is_empty()),
        }),
        Err((_, errno)) => Err(io_error(io::Error::from(errno))),
    }
}

/// A segment file on disk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub seq: u64,
    pub len: u64,
}

pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{seq:020}{SEGMENT_SUFFIX}"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        match entry.metadata() {
            Ok(meta) if meta.is_file() => segments.push(Segment {
                seq,
                len: meta.len(),
            }),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

/// Deletes a segment; one already gone is not an error.
pub(super) fn remove_segment(dir: &Path, seq: u64) -> io::Result<()> {
    match fs::remove_file(segment_path(dir, seq)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Creates the segment `seq`, or the next free sequence if a file with that name exists.
fn create_segment(dir: &Path, seq: u64) -> io::Result<(u64, File)> {
    let mut seq = seq;
    loop {
        let opened = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(segment_path(dir, seq));
        match opened {
            Ok(file) => return Ok((seq, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => seq += 1,
            Err(error) => return Err(error),
        }
    }
}
