//! [`SeenIds`]: which `client_message_id`s the outbox may already hold, so that a send with a
//! new id skips the read-only lookup of SPEC §5.3 and goes straight to the writer.
//!
//! The lookup on a reader answers a repeated id without queueing behind the writer; for a new
//! id it finds nothing and only adds a blocking-pool round trip to the accept (measured: about
//! a quarter of a unique accept's wall time at c=64). This is a scalable Bloom filter (a chain
//! of filters, each twice the size of the one before, Almeida et al. 2007) over every id the
//! outbox holds:
//!
//! - **No wrong answer is possible.** "Maybe seen" sends the request to the reader, as before;
//!   "not seen" sends it to the writer, whose accept checks the id itself (SPEC §5.3). A false
//!   positive costs one lookup; a missed id would cost only the read-off-the-writer property
//!   for that one repeat.
//! - **Ids are added before their row can exist**, by the OutboxDrainer that every write goes
//!   through: a caller's id when its accept is queued, a minted id as soon as the group commit
//!   returns it (before the caller can know it), a requeue's new id before and after. Ids
//!   already in the file are added by a background scan at start
//!   ([`SeenIds::load`]); until it ends, every send asks the reader (`maybe_seen` is `true`).
//! - **Cost.** About 10 bits per id (1.2 MB at 1M ids); each link of the chain aims at a 1 %
//!   false-positive rate, so a chain of `n` links stays under `n` %. Checks and adds take a
//!   shared lock and set bits atomically; only a new link takes the lock exclusively.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;

use rusqlite::Connection;

/// Ids the first link holds before the next is added.
const FIRST_CAPACITY: usize = 16_384;
/// Bits per id and probes per id: a 1 % false-positive rate at capacity.
const BITS_PER_ID: usize = 10;
const PROBES: u64 = 7;
/// Ids read per transaction by the start-up scan.
const SCAN_CHUNK: i64 = 10_000;
/// One chunk of the start-up scan: the ids after `?1`, in index order.
const SCAN: &str = "SELECT client_message_id FROM outbox WHERE client_message_id > ?1
  ORDER BY client_message_id LIMIT ?2";

/// One Bloom filter of the chain.
struct Link {
    bits: Vec<AtomicU64>,
    capacity: usize,
    added: AtomicUsize,
}

impl Link {
    fn with_capacity(capacity: usize) -> Link {
        let words = (capacity * BITS_PER_ID).div_ceil(64).max(1);
        Link {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            capacity,
            added: AtomicUsize::new(0),
        }
    }

    /// The bit positions of `hash` (double hashing, Kirsch–Mitzenmacher).
    fn probes(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> {
        let m = self.bits.len() as u64 * 64;
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..PROBES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn contains(&self, hash: u64) -> bool {
        self.probes(hash)
            .all(|(w, mask)| self.bits[w].load(Ordering::Relaxed) & mask != 0)
    }

    /// Adds `hash`; true when the link is now past its capacity.
    fn add(&self, hash: u64) -> bool {
        for (w, mask) in self.probes(hash) {
            self.bits[w].fetch_or(mask, Ordering::Relaxed);
        }
        self.added.fetch_add(1, Ordering::Relaxed) + 1 > self.capacity
    }
}

/// The ids the outbox may hold (see the module documentation). Shared by every HTTP worker.
pub struct SeenIds {
    chain: RwLock<Vec<Link>>,
    /// Set once the start-up scan has added every id that was in the file.
    loaded: AtomicBool,
}

impl Default for SeenIds {
    fn default() -> Self {
        SeenIds::new()
    }
}

impl std::fmt::Debug for SeenIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenIds")
            .field("loaded", &self.loaded.load(Ordering::Relaxed))
            .field("bytes", &self.bytes())
            .finish()
    }
}

fn hash(id: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

impl SeenIds {
    /// An empty set, not loaded yet: every id is "maybe seen" until [`SeenIds::load`] ends.
    pub fn new() -> SeenIds {
        SeenIds {
            chain: RwLock::new(vec![Link::with_capacity(FIRST_CAPACITY)]),
            loaded: AtomicBool::new(false),
        }
    }

    /// False only when `id` is certainly not in the outbox: never added, and the start-up scan
    /// is over.
    pub fn maybe_seen(&self, id: &str) -> bool {
        if !self.loaded.load(Ordering::Acquire) {
            return true;
        }
        let h = hash(id);
        match self.chain.read() {
            Ok(chain) => chain.iter().any(|l| l.contains(h)),
            Err(_) => true,
        }
    }

    /// Records that the outbox may now hold `id`.
    pub fn add(&self, id: &str) {
        let h = hash(id);
        let full = match self.chain.read() {
            Ok(chain) => chain.last().is_some_and(|l| l.add(h)),
            Err(_) => return,
        };
        if full {
            if let Ok(mut chain) = self.chain.write() {
                // Another adder may have grown the chain meanwhile.
                let full = chain
                    .last()
                    .filter(|l| l.added.load(Ordering::Relaxed) > l.capacity)
                    .map(|l| l.capacity);
                if let Some(capacity) = full {
                    chain.push(Link::with_capacity(capacity * 2));
                }
            }
        }
    }

    /// Adds every id of `outbox` (a read-only connection to `outbox.db`), a chunk per read
    /// transaction, then marks the set loaded. Returns how many ids were read. Run once, off
    /// the request path; ids accepted meanwhile are added by their requests.
    ///
    /// The scan walks the `client_message_id` index (it covers the query: the table's pages,
    /// with their payloads, are never read) and adds each id as it is read.
    pub fn load(&self, outbox: &Connection) -> rusqlite::Result<usize> {
        let mut st = outbox.prepare(SCAN)?;
        let (mut after, mut total) = (String::new(), 0);
        loop {
            let mut rows = st.query((&after, SCAN_CHUNK))?;
            let mut read = 0;
            while let Some(row) = rows.next()? {
                let id = row.get_ref(0)?.as_str()?;
                self.add(id);
                read += 1;
                if read == SCAN_CHUNK {
                    after = id.to_owned();
                }
            }
            total += read as usize;
            if read < SCAN_CHUNK {
                break;
            }
        }
        self.loaded.store(true, Ordering::Release);
        Ok(total)
    }

    /// Bytes held by the filters.
    pub fn bytes(&self) -> usize {
        self.chain
            .read()
            .map(|c| c.iter().map(|l| l.bits.len() * 8).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded() -> SeenIds {
        let s = SeenIds::new();
        s.loaded.store(true, Ordering::Release);
        s
    }

    #[test]
    fn the_scan_reads_only_the_id_index_of_the_real_schema() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::outbox::store::open(
            &dir.path().join("outbox.db"),
            crate::outbox::store::Durability::Normal,
            false,
        )
        .unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {SCAN}"))
            .unwrap()
            .query_map(("", SCAN_CHUNK), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|l| l.contains("USING COVERING INDEX")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:?}");
    }

    #[test]
    fn before_the_scan_ends_every_id_may_be_seen() {
        let s = SeenIds::new();
        assert!(s.maybe_seen("never-added"));
    }

    #[test]
    fn an_added_id_is_always_seen_as_the_chain_grows_past_its_first_link() {
        let s = loaded();
        let n = FIRST_CAPACITY * 5;
        for i in 0..n {
            s.add(&format!("id-{i}"));
        }
        assert!(s.chain.read().unwrap().len() >= 3, "the chain grew");
        for i in 0..n {
            assert!(s.maybe_seen(&format!("id-{i}")), "id-{i} was added");
        }
        // Ids never added are mostly not seen: the rate stays near 1 % per link.
        let fp = (0..20_000)
            .filter(|i| s.maybe_seen(&format!("other-{i}")))
            .count();
        let links = s.chain.read().unwrap().len();
        assert!(
            fp < 20_000 * links / 100 + 100,
            "{fp} false positives over {links} links"
        );
        assert!(
            s.bytes() < n * 4,
            "about 10 bits per id: {} bytes",
            s.bytes()
        );
    }

    #[test]
    fn the_scan_adds_every_id_in_the_file_in_chunks_and_marks_the_set_loaded() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, client_message_id TEXT NOT NULL UNIQUE);",
        )
        .unwrap();
        let n = SCAN_CHUNK as usize * 2 + 7;
        {
            let mut st = conn
                .prepare("INSERT INTO outbox (id, client_message_id) VALUES (?1, ?2)")
                .unwrap();
            for i in 0..n {
                // Gaps in the ids, as deletes leave them.
                st.execute((i as i64 * 3 + 1, format!("file-{i}"))).unwrap();
            }
        }
        let s = SeenIds::new();
        assert_eq!(s.load(&conn).unwrap(), n);
        assert!(s.loaded.load(Ordering::Acquire));
        assert!((0..n).all(|i| s.maybe_seen(&format!("file-{i}"))));
        let fp = (0..1_000)
            .filter(|i| s.maybe_seen(&format!("new-{i}")))
            .count();
        assert!(fp < 50, "{fp} of 1,000 new ids seen");
    }
}
