//! The disk half of an OTLP exporter's sending queue
//! (`sending_queue.storage`): batches that outlive the memory queue and an
//! agent restart.
//!
//! One file per batch, `<sequence, 20 digits>.batch`, holding one record
//! `[len u32 LE][crc32 u32 LE][payload]`, the payload being the encoded
//! `ExportMetricsServiceRequest`, so a replay sends what would have been
//! sent. A file per batch (rather than segments of many) keeps the three
//! operations single system calls: ack is an unlink, dropping the oldest
//! under the byte cap is an unlink, and a torn write can only spoil the one
//! batch it was writing. Batches come one per interval, so the file count
//! stays small (an hour at 10s is 360 files).
//!
//! Durability: a batch is written to `<seq>.tmp`, fsynced, renamed to
//! `<seq>.batch` and the directory fsynced, so after `append` returns the
//! batch survives a crash or power loss. An ack is an unlink without fsync:
//! a crash right after a send may resend that batch (delivery is at least
//! once). A leftover `.tmp` (a crash mid-write) is removed and counted as
//! corrupt at open; a `.batch` whose length or CRC does not match is
//! removed and counted when it reaches the front, never replayed.
//!
//! Not thread-safe by itself: the exporter holds it behind a mutex and
//! calls it from blocking threads (every call may touch the disk).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};

use crate::exporter::file::safe_fs::Dir;

/// `len` and `crc32` before each payload.
pub(crate) const RECORD_HEADER: u64 = 8;

const BATCH_SUFFIX: &str = ".batch";
const TEMP_SUFFIX: &str = ".tmp";

pub(crate) struct DiskLog {
    dir: Dir,
    max_bytes: u64,
    /// Batches on disk, oldest first: sequence number and file size.
    files: VecDeque<(u64, u64)>,
    bytes: u64,
    next_seq: u64,
    /// The batch handed out by [`oldest`](Self::oldest) and not yet
    /// removed: the byte cap never evicts a batch while it is being sent.
    reading: Option<u64>,
    /// Batches lost since [`take_lost`](Self::take_lost), kept here so that
    /// a call failing half-way still reports what it already deleted.
    lost: Lost,
}

/// A batch read back from disk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Batches the log gave up, by reason; each is one lost batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost {
    /// Evicted (or refused) to stay within `max_bytes`.
    pub disk_full: u64,
    /// Torn or damaged on disk: skipped, never replayed.
    pub corrupt: u64,
}

impl Lost {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Lost::default()
    }
}

/// What [`DiskLog::open`] found.
pub(crate) enum Opened {
    /// The log; its [`take_lost`](DiskLog::take_lost) has what opening
    /// dropped (leftovers of a torn write, or over a smaller `max_bytes`).
    Ready(DiskLog),
    /// Another holder (a previous exporter still shutting down, another
    /// agent) has the directory: the directory back, to try again.
    Locked(Dir),
}

impl DiskLog {
    /// Lock `dir` and index the batches in it.
    pub(crate) fn open(dir: Dir, max_bytes: u64) -> io::Result<Opened> {
        if !dir.try_lock()? {
            return Ok(Opened::Locked(dir));
        }
        let mut lost = Lost::default();
        let mut files = Vec::new();
        // New batches number after every name of ours, skipped ones too, so
        // that no write ever lands on a name something else holds.
        let mut next_seq = 0;
        for name in dir.names()? {
            let Some((seq, suffix)) = parse_name(&name) else {
                continue; // Not ours: left alone.
            };
            next_seq = next_seq.max(seq + 1);
            if suffix == TEMP_SUFFIX {
                // A directory or the like under our name stays; one bad
                // entry must not keep the queue from opening.
                if dir.remove(&name).is_ok() {
                    lost.corrupt += 1;
                }
                continue;
            }
            // Anything that is not a readable regular file under our name
            // (a link, a FIFO, a socket) is skipped here and never read.
            if let Ok(Some(meta)) = dir.open_regular(&name).map(|f| f.map(|f| f.metadata())) {
                files.push((seq, meta?.len()));
            }
        }
        files.sort_unstable();
        let mut log = DiskLog {
            dir,
            max_bytes,
            bytes: files.iter().map(|&(_, size)| size).sum(),
            files: files.into(),
            next_seq,
            reading: None,
            lost,
        };
        // `max_megabytes` may have shrunk since the files were written.
        log.make_room(0)?;
        Ok(Opened::Ready(log))
    }

    /// Batches on disk.
    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// Bytes on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The batches lost since the last call.
    pub(crate) fn take_lost(&mut self) -> Lost {
        std::mem::take(&mut self.lost)
    }

    /// Store `payload` durably after the others, evicting the oldest batches
    /// when it would not fit within `max_bytes`. A payload larger than the
    /// cap by itself (or than the record format allows) is refused and
    /// counted as `disk_full`.
    pub(crate) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let size = RECORD_HEADER + payload.len() as u64;
        let Ok(len) = u32::try_from(payload.len()) else {
            self.lost.disk_full += 1;
            return Ok(());
        };
        self.make_room(size)?;
        if self.bytes + size > self.max_bytes {
            self.lost.disk_full += 1;
            return Ok(());
        }
        let seq = self.next_seq;
        // Taken even if the write fails: a name that cannot be written must
        // not fail every later batch too.
        self.next_seq = seq + 1;
        let temp = file_name(seq, TEMP_SUFFIX);
        let written = self.write_record(&temp, len, payload).and_then(|()| {
            self.dir.rename(&temp, &file_name(seq, BATCH_SUFFIX))?;
            self.dir.sync()
        });
        if let Err(e) = written {
            // Best effort: a leftover is removed (and counted) at next open.
            let _ = self.dir.remove(&temp);
            return Err(e);
        }
        self.files.push_back((seq, size));
        self.bytes += size;
        Ok(())
    }

    fn write_record(&self, name: &OsStr, len: u32, payload: &[u8]) -> io::Result<()> {
        let mut file = self.dir.create_new(name)?;
        let mut header = [0u8; RECORD_HEADER as usize];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        file.write_all(&header)?;
        file.write_all(payload)?;
        file.sync_data()
    }

    /// Evict the oldest batches (never the one being sent) until `incoming`
    /// more bytes fit.
    fn make_room(&mut self, incoming: u64) -> io::Result<()> {
        while self.bytes + incoming > self.max_bytes {
            let Some(i) = self
                .files
                .iter()
                .position(|&(s, _)| Some(s) != self.reading)
            else {
                break;
            };
            let (seq, _) = self.files[i];
            self.lost.disk_full += 1;
            self.forget(i, seq)?;
        }
        Ok(())
    }

    /// The oldest intact batch, removing (and counting) damaged ones in
    /// front of it. It stays on disk until [`remove`](Self::remove).
    pub(crate) fn oldest(&mut self) -> io::Result<Option<Record>> {
        while let Some(&(seq, _)) = self.files.front() {
            match self.read(seq)? {
                OnDisk::Intact(payload) => {
                    self.reading = Some(seq);
                    return Ok(Some(Record { seq, payload }));
                }
                OnDisk::Corrupt => self.lost.corrupt += 1,
                // Removed from under us (an operator cleaning up).
                OnDisk::Gone => {}
            }
            self.forget(0, seq)?;
        }
        Ok(None)
    }

    fn read(&self, seq: u64) -> io::Result<OnDisk> {
        let file = match self.dir.open_regular(&file_name(seq, BATCH_SUFFIX)) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(OnDisk::Gone),
            // Replaced by something that is not a regular file.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(OnDisk::Corrupt),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        // Checked before reading, so a damaged length never allocates more
        // than the cap.
        if !(RECORD_HEADER..=self.max_bytes).contains(&size) {
            return Ok(OnDisk::Corrupt);
        }
        let mut data = Vec::with_capacity(size as usize);
        file.take(size).read_to_end(&mut data)?;
        Ok(decode_record(&data).map_or(OnDisk::Corrupt, |p| OnDisk::Intact(p.to_vec())))
    }

    /// Batch `seq` was delivered or given up: delete it. The index forgets
    /// it even if the unlink fails (the error is returned for the log), so
    /// the queue moves on; the file is then resent after a restart.
    pub(crate) fn remove(&mut self, seq: u64) -> io::Result<()> {
        match self.files.iter().position(|&(s, _)| s == seq) {
            Some(i) => self.forget(i, seq),
            None => Ok(()),
        }
    }

    fn forget(&mut self, index: usize, seq: u64) -> io::Result<()> {
        if let Some((_, size)) = self.files.remove(index) {
            self.bytes -= size;
        }
        if self.reading == Some(seq) {
            self.reading = None;
        }
        self.dir.remove(&file_name(seq, BATCH_SUFFIX))
    }
}

/// What [`DiskLog::read`] found for a batch.
enum OnDisk {
    Intact(Vec<u8>),
    /// Not exactly one record with a matching CRC.
    Corrupt,
    Gone,
}

/// The payload of `data` if it is exactly one record with a matching CRC.
fn decode_record(data: &[u8]) -> Option<&[u8]> {
    let (header, payload) = data.split_at_checked(RECORD_HEADER as usize)?;
    let (len, crc) = header.split_at(4);
    let len = u32::from_le_bytes(len.try_into().ok()?);
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    (payload.len() as u64 == u64::from(len) && crc32fast::hash(payload) == crc).then_some(payload)
}

fn file_name(seq: u64, suffix: &str) -> OsString {
    format!("{seq:020}{suffix}").into()
}

/// Sequence numbers this log ever uses: far more than it will ever write,
/// and far enough from `u64::MAX` that a planted name cannot make the next
/// number wrap or repeat.
const MAX_SEQ: u64 = u64::MAX / 2;

/// The sequence number and suffix of a name this log writes.
fn parse_name(name: &OsStr) -> Option<(u64, &'static str)> {
    let name = name.to_str()?;
    [BATCH_SUFFIX, TEMP_SUFFIX].into_iter().find_map(|suffix| {
        let digits = name.strip_suffix(suffix)?;
        let all_digits = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
        let seq = digits
            .parse()
            .ok()
            .filter(|&s| all_digits && s <= MAX_SEQ)?;
        Some((seq, suffix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::file::safe_fs::open_dir;
    use phoenix_tests::TempDir;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    const MAX: u64 = 8 * 1024;

    fn open(path: &Path) -> (DiskLog, Lost) {
        open_with(path, MAX)
    }

    fn open_with(path: &Path, max_bytes: u64) -> (DiskLog, Lost) {
        match DiskLog::open(open_dir(path).unwrap(), max_bytes).unwrap() {
            Opened::Ready(mut log) => {
                let lost = log.take_lost();
                (log, lost)
            }
            Opened::Locked(_) => panic!("locked"),
        }
    }

    /// Each payload starts with its id, so a replayed one is recognised.
    fn payload(id: u64, len: usize) -> Vec<u8> {
        let mut p = id.to_le_bytes().to_vec();
        p.extend((0..len).map(|i| (i as u64 ^ id) as u8));
        p
    }

    fn batch_files(path: &Path) -> Vec<std::path::PathBuf> {
        phoenix_tests::files_with_extension(path, "batch")
    }

    const GARBAGE: &[u8] = b"garbage";

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        /// Read the oldest without acking it (a send in progress).
        Peek,
        Ack,
        /// A restart, perhaps after a crash between writing a batch and
        /// renaming it (which leaves a `.tmp`).
        Reopen {
            crashed_mid_write: bool,
        },
        /// Cut a batch file at a fraction of its length.
        Truncate(usize, f64),
        Flip(usize, f64),
        /// Garbage after a batch's record.
        Extend(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..3000).prop_map(Op::Append),
            1 => Just(Op::Peek),
            4 => Just(Op::Ack),
            2 => any::<bool>().prop_map(|crashed_mid_write| Op::Reopen { crashed_mid_write }),
            1 => (any::<usize>(), 0.0..1.0).prop_map(|(i, f)| Op::Truncate(i, f)),
            1 => (any::<usize>(), 0.0..1.0).prop_map(|(i, f)| Op::Flip(i, f)),
            1 => any::<usize>().prop_map(Op::Extend),
        ]
    }

    /// Damage one batch file (picked by `i`); the id it held, if any.
    fn damage(path: &Path, i: usize, how: impl FnOnce(&mut Vec<u8>)) -> Option<u64> {
        let files = batch_files(path);
        let file = files.get(i % files.len().max(1))?;
        let mut data = std::fs::read(file).unwrap();
        let id = data
            .get(8..16)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
        how(&mut data);
        std::fs::write(file, data).unwrap();
        id
    }

    /// What the test knows: every batch appended, the ones it damaged,
    /// the ones read back and acked, and what the log said it lost.
    #[derive(Default)]
    struct Model {
        appended: BTreeMap<u64, Vec<u8>>,
        damaged: std::collections::BTreeSet<u64>,
        leftover_temps: u64,
        delivered: Vec<u64>,
        lost: Lost,
    }

    impl Model {
        fn note(&mut self, l: Lost) {
            self.lost.disk_full += l.disk_full;
            self.lost.corrupt += l.corrupt;
        }

        /// The oldest batch, checked: exactly as appended, never damaged,
        /// after everything acked before it.
        fn read_oldest(&mut self, log: &mut DiskLog) -> Option<(u64, u64)> {
            let record = log.oldest().unwrap();
            self.note(log.take_lost());
            let record = record?;
            let id = u64::from_le_bytes(record.payload[..8].try_into().unwrap());
            assert_eq!(
                Some(&record.payload),
                self.appended.get(&id),
                "replayed bytes differ"
            );
            assert!(!self.damaged.contains(&id), "a damaged batch was replayed");
            assert!(
                self.delivered.last().is_none_or(|&last| id > last),
                "out of order or resent"
            );
            Some((record.seq, id))
        }

        fn ack(&mut self, log: &mut DiskLog) -> Option<u64> {
            let (seq, id) = self.read_oldest(log)?;
            log.remove(seq).unwrap();
            self.delivered.push(id);
            Some(id)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the sequence of appends, acks, restarts and damage:
        /// what comes back is what was appended, in order, each at most
        /// once, nothing damaged, the cap kept; every batch is accounted
        /// for as delivered, evicted or corrupt.
        #[test]
        fn log_reads_back_an_ordered_intact_subset(ops in proptest::collection::vec(op(), 1..60)) {
            let tmp = TempDir::new("disk-log-prop");
            let (mut log, opened) = open(tmp.path());
            let mut m = Model::default();
            m.note(opened);
            let mut peeked: Option<u64> = None;
            let mut grown = 0u64;
            for op in ops {
                match op {
                    Op::Append(len) => {
                        let id = m.appended.len() as u64;
                        let p = payload(id, len);
                        log.append(&p).unwrap();
                        m.note(log.take_lost());
                        m.appended.insert(id, p);
                    }
                    Op::Peek => {
                        let got = m.read_oldest(&mut log).map(|(_, id)| id);
                        if peeked.is_some() {
                            prop_assert_eq!(got, peeked, "the batch in flight was evicted");
                        }
                        peeked = got;
                    }
                    Op::Ack => {
                        let got = m.ack(&mut log);
                        if peeked.is_some() {
                            prop_assert_eq!(got, peeked, "the batch in flight was evicted");
                        }
                        peeked = None;
                    }
                    Op::Reopen { crashed_mid_write } => {
                        drop(log);
                        if crashed_mid_write {
                            let name = format!("{:020}.tmp", m.leftover_temps);
                            std::fs::write(tmp.path().join(name), b"torn").unwrap();
                            m.leftover_temps += 1;
                        }
                        let (l, opened) = open(tmp.path());
                        log = l;
                        m.note(opened);
                        grown = 0;
                        peeked = None;
                    }
                    Op::Truncate(i, f) => {
                        m.damaged.extend(damage(tmp.path(), i, |d| d.truncate((d.len() as f64 * f) as usize)));
                        peeked = None;
                    }
                    Op::Flip(i, f) => {
                        m.damaged.extend(damage(tmp.path(), i, |d| {
                            // An empty file (truncated before) has no byte to flip.
                            if let Some(last) = d.len().checked_sub(1) {
                                let at = ((d.len() as f64 * f) as usize).min(last);
                                d[at] ^= 0x5a;
                            }
                        }));
                        peeked = None;
                    }
                    Op::Extend(i) => {
                        let id = damage(tmp.path(), i, |d| d.extend_from_slice(GARBAGE));
                        // Bytes the log did not write count against the
                        // cap only once it sees them, at the next open.
                        grown += id.map_or(0, |_| GARBAGE.len() as u64);
                        m.damaged.extend(id);
                        peeked = None;
                    }

                }
                prop_assert!(log.bytes() <= MAX, "index over the cap");
                let on_disk: u64 = batch_files(tmp.path()).iter().map(|f| f.metadata().unwrap().len()).sum();
                prop_assert!(on_disk <= MAX + grown, "disk over the cap: {}", on_disk);
            }
            // Drain after a final restart: everything is accounted for.
            drop(log);
            let (mut log, opened) = open(tmp.path());
            m.note(opened);
            while m.ack(&mut log).is_some() {}
            prop_assert_eq!(log.len(), 0);
            prop_assert_eq!(log.bytes(), 0);
            prop_assert!(batch_files(tmp.path()).is_empty());
            prop_assert!(m.lost.corrupt <= m.damaged.len() as u64 + m.leftover_temps);
            prop_assert_eq!(
                m.delivered.len() as u64 + m.lost.disk_full + m.lost.corrupt,
                m.appended.len() as u64 + m.leftover_temps,
                "every batch delivered, evicted or corrupt"
            );
        }
    }

    #[test]
    fn a_locked_directory_is_not_opened_twice() {
        let tmp = TempDir::new("disk-log-lock");
        let (mut log, _) = open(tmp.path());
        log.append(b"one").unwrap();
        assert!(matches!(
            DiskLog::open(open_dir(tmp.path()).unwrap(), MAX).unwrap(),
            Opened::Locked(_)
        ));
        drop(log);
        let (mut log, lost) = open(tmp.path());
        assert!(lost.is_empty());
        assert_eq!(log.oldest().unwrap().unwrap().payload, b"one");
    }

    #[test]
    fn strange_entries_under_our_names_are_skipped_not_fatal() {
        let tmp = TempDir::new("disk-log-strange");
        let (mut log, _) = open(tmp.path());
        log.append(b"kept").unwrap();
        drop(log);
        let name = |n: u64, suffix: &str| tmp.path().join(format!("{n:020}{suffix}"));
        std::fs::create_dir(name(7, ".tmp")).unwrap();
        std::fs::create_dir(name(8, ".batch")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", name(9, ".batch")).unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"an operator's").unwrap();
        // A number near the end of u64 would make the next one wrap.
        std::fs::write(name(u64::MAX, ".batch"), b"planted").unwrap();
        let (mut log, lost) = open(tmp.path());
        assert!(lost.is_empty(), "{lost:?}");
        // New batches are numbered past the strange names, never onto them.
        for _ in 0..12 {
            log.append(b"new").unwrap();
        }
        assert_eq!(log.len(), 13);
        assert_eq!(log.oldest().unwrap().unwrap().payload, b"kept");
        assert!(
            tmp.path().join("notes.txt").exists() && name(u64::MAX, ".batch").exists(),
            "not ours: left alone"
        );
    }

    #[test]
    fn a_shrunk_cap_evicts_the_oldest_at_open() {
        let tmp = TempDir::new("disk-log-shrink");
        let (mut log, _) = open(tmp.path());
        for id in 0..4 {
            log.append(&payload(id, 1000)).unwrap();
        }
        drop(log);
        let cap = 2 * (RECORD_HEADER + 1008);
        let (mut log, lost) = open_with(tmp.path(), cap);
        assert_eq!(
            lost,
            Lost {
                disk_full: 2,
                corrupt: 0
            }
        );
        assert_eq!(log.oldest().unwrap().unwrap().payload, payload(2, 1000));
    }
}
