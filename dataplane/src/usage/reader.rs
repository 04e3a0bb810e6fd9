//! The reading half of the spool: batches of complete lines from the cursor on, the cursor
//! file, and the deletion of shipped segments. Blocking file I/O; the shipper calls it from
//! `spawn_blocking`.

use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::spool::{list_segments, remove_segment, segment_path, Spool};

const CURSOR_FILE: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
/// Longest fragment of a torn record quoted in the log.
const MAX_LOGGED_FRAGMENT: u64 = 1024 * 1024;

/// How far the stream has acknowledged: byte `offset` of segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

/// The cursor saved in `dir`, if there is a readable one.
pub(super) fn load_cursor(dir: &Path) -> Option<Cursor> {
    let path = dir.join(CURSOR_FILE);
    match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(cursor) => Some(cursor),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "usage spool cursor is unreadable; every segment is shipped from its start (the control plane drops duplicates)");
                None
            }
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "usage spool cursor cannot be read; every segment is shipped from its start (the control plane drops duplicates)");
            None
        }
    }
}

fn save_cursor(dir: &Path, cursor: Cursor) -> io::Result<()> {
    let tmp = dir.join(CURSOR_TMP);
    fs::write(&tmp, serde_json::to_vec(&cursor)?)?;
    fs::rename(&tmp, dir.join(CURSOR_FILE))
}

/// Complete records read from one segment, in order.
#[derive(Debug)]
pub(super) struct Batch {
    pub seq: u64,
    /// Offsets in the segment: the batch covers `start..end` (whole lines).
    pub start: u64,
    pub end: u64,
    data: Vec<u8>,
    /// Non-blank lines of `data`, without their `\n`.
    lines: Vec<Range<usize>>,
}

impl Batch {
    /// The records, each one JSON document.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.lines
            .iter()
            .filter_map(|range| self.data.get(range.clone()))
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Reads the spool from the cursor on. Returned by [`Spool::open`]; give it to the
/// [`Shipper`](super::shipper::Shipper).
pub struct SpoolReader {
    spool: Arc<Spool>,
    cursor: Cursor,
    open: Option<(u64, File)>,
}

impl std::fmt::Debug for SpoolReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolReader")
            .field("dir", &self.spool.dir())
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl SpoolReader {
    pub(super) fn new(spool: Arc<Spool>, cursor: Cursor) -> Self {
        Self {
            spool,
            cursor,
            open: None,
        }
    }

    /// The spool it reads.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    #[cfg(test)]
    pub(super) fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The next complete lines (at most `max_records`, about `max_bytes`) after the cursor,
    /// or `None` when there are none yet. Moves past sealed segments that are fully read
    /// (deleting them) and asks the writer for a new segment when it has caught up with a
    /// large current one.
    pub(super) fn next_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> io::Result<Option<Batch>> {
        loop {
            let Cursor {
                segment: seq,
                offset,
            } = self.cursor;
            // Read before the segment's content: once sealed, a segment never grows.
            let sealed = self.spool.current_seq() > seq;
            let Some(file) = self.open_segment(seq)? else {
                if sealed {
                    self.advance(seq, 0)?;
                    continue;
                }
                return Ok(None);
            };
            let len = file.metadata()?.len();
            if let Some(batch) = read_lines(file, seq, offset, len, max_records, max_bytes)? {
                return Ok(Some(batch));
            }
            if sealed {
                self.skip_fragment(seq, len)?;
                self.advance(seq, len)?;
                continue;
            }
            let threshold = self.spool.options().segment_bytes / 4;
            if self.spool.rotate_if_current(seq, threshold.max(1))? {
                continue;
            }
            return Ok(None);
        }
    }

    /// The batch `seq`, `start..end` reached the stream: move the cursor past it and save it.
    /// The cursor moves even when saving fails (the error is returned to be logged):
    /// records are then sent again after a restart, which the control plane deduplicates.
    pub(super) fn commit_range(&mut self, seq: u64, start: u64, end: u64) -> io::Result<()> {
        if seq != self.cursor.segment || start != self.cursor.offset || end < start {
            return Err(io::Error::other("batch does not start at the cursor"));
        }
        self.cursor.offset = end;
        self.spool.release_pending(end - start);
        save_cursor(self.spool.dir(), self.cursor)
    }

    fn open_segment(&mut self, seq: u64) -> io::Result<Option<&File>> {
        if self.open.as_ref().is_some_and(|(open, _)| *open != seq) {
            self.open = None;
        }
        if self.open.is_none() {
            match File::open(segment_path(self.spool.dir(), seq)) {
                Ok(file) => self.open = Some((seq, file)),
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(error),
            }
        }
        Ok(self.open.as_ref().map(|(_, file)| file))
    }

    /// A sealed segment ending without `\n` was cut mid-record (the process or the machine
    /// stopped during a write): the fragment is logged and skipped.
    fn skip_fragment(&mut self, seq: u64, len: u64) -> io::Result<()> {
        let offset = self.cursor.offset;
        if len <= offset {
            return Ok(());
        }
        let Some((_, file)) = self.open.as_ref() else {
            return Ok(());
        };
        let shown = (len - offset).min(MAX_LOGGED_FRAGMENT);
        let mut fragment = vec![0; usize::try_from(shown).unwrap_or(usize::MAX)];
        let read = read_full_at(file, &mut fragment, offset)?;
        fragment.truncate(read);
        tracing::error!(
            spool_dir = %self.spool.dir().display(),
            segment = seq,
            offset,
            bytes = len - offset,
            fragment = %String::from_utf8_lossy(&fragment),
            "usage spool segment ends with an incomplete record (a write was cut short); \
             it is logged here and skipped"
        );
        self.spool.count_write_error();
        self.spool.release_pending(len - offset);
        self.cursor.offset = len;
        Ok(())
    }

    /// Moves the cursor to the segment after the sealed `seq` and deletes `seq` (of `len`
    /// bytes). Either order survives a crash in between: a saved cursor past a segment still
    /// on disk makes the next start delete it, and a saved cursor in a segment no longer on
    /// disk makes it start at the next segment's beginning. So a cursor that cannot be saved
    /// does not keep a shipped segment on disk.
    fn advance(&mut self, seq: u64, len: u64) -> io::Result<()> {
        let next = list_segments(self.spool.dir())?
            .into_iter()
            .map(|segment| segment.seq)
            .find(|&s| s > seq)
            .unwrap_or_else(|| self.spool.current_seq());
        self.cursor = Cursor {
            segment: next,
            offset: 0,
        };
        self.open = None;
        if let Err(error) = save_cursor(self.spool.dir(), self.cursor) {
            tracing::warn!(
                spool_dir = %self.spool.dir().display(),
                %error,
                "cannot save the usage spool cursor; after a restart some records may be sent again (the control plane drops duplicates)"
            );
        }
        match remove_segment(self.spool.dir(), seq) {
            Ok(()) => self.spool.release_disk(len),
            Err(error) => tracing::warn!(
                spool_dir = %self.spool.dir().display(),
                segment = seq,
                %error,
                "cannot delete a shipped usage spool segment; the next start deletes it"
            ),
        }
        Ok(())
    }
}

/// Complete lines of `file` (of length `len`) from `offset`: up to `max_records` within about
/// `max_bytes` (more for a single longer line). `None` when no line is complete yet.
fn read_lines(
    file: &File,
    seq: u64,
    offset: u64,
    len: u64,
    max_records: usize,
    max_bytes: usize,
) -> io::Result<Option<Batch>> {
    let available = len.saturating_sub(offset);
    if available == 0 {
        return Ok(None);
    }
    let chunk = usize::try_from(available)
        .unwrap_or(usize::MAX)
        .min(max_bytes.max(1));
    let mut data = vec![0; chunk];
    let read = read_full_at(file, &mut data, offset)?;
    data.truncate(read);
    let mut lines = Vec::new();
    let mut consumed = 0;
    for newline in memchr::memchr_iter(b'\n', &data) {
        push_line(&data, consumed..newline, &mut lines);
        consumed = newline + 1;
        if lines.len() >= max_records {
            break;
        }
    }
    if consumed == 0 {
        // One line longer than `max_bytes`: read on to its end, if it has one yet.
        loop {
            let from = data.len();
            if (from as u64) >= available {
                return Ok(None);
            }
            data.resize(from + chunk, 0);
            let read = read_full_at(file, &mut data[from..], offset + from as u64)?;
            data.truncate(from + read);
            if read == 0 {
                return Ok(None);
            }
            if let Some(i) = memchr::memchr(b'\n', &data[from..]) {
                consumed = from + i + 1;
                push_line(&data, 0..from + i, &mut lines);
                break;
            }
        }
    }
    data.truncate(consumed);
    Ok(Some(Batch {
        seq,
        start: offset,
        end: offset + consumed as u64,
        data,
        lines,
    }))
}

fn push_line(data: &[u8], range: Range<usize>, lines: &mut Vec<Range<usize>>) {
    let blank = data
        .get(range.clone())
        .is_none_or(|line| line.iter().all(u8::is_ascii_whitespace));
    if !blank {
        lines.push(range);
    }
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
