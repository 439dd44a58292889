//! The Prometheus recorder keeps each histogram sample until it is folded into its buckets:
//! `/metrics` must not need a scraper for memory to stay bounded. Heap bytes are counted by a
//! counting global allocator, so the check is exact, not an RSS reading.
//!
//! A relay nobody scraped used to hold every sample (16 bytes each): about 500 per million
//! events at the e2e bench's settings, some 700 MiB a day at 1M events/s.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE_BYTES.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SAMPLES: usize = 1_000_000;

#[test]
fn histogram_samples_are_folded_without_a_scrape() {
    let _handle = flumen::http::recorder();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for i in 0..SAMPLES {
        metrics::histogram!("flumen_channel_fsync_seconds").record(i as f64 * 1e-6);
    }
    let grown = LIVE_BYTES.load(Ordering::Relaxed) - before;
    // The samples are held until folded: at least 8 bytes each.
    assert!(grown >= 8 * SAMPLES as isize, "grew {grown} bytes");
    let limit = flumen::http::UPKEEP_INTERVAL * 3;
    let t = Instant::now();
    loop {
        let held = LIVE_BYTES.load(Ordering::Relaxed) - before;
        if held < grown / 10 {
            break;
        }
        assert!(
            t.elapsed() < limit,
            "{held} of {grown} bytes still held {limit:?} after the samples, with no scrape"
        );
        // A relay keeps recording: folded blocks are freed once the recorder's epoch-based
        // reclamation sees further use.
        for _ in 0..64 {
            metrics::histogram!("flumen_channel_fsync_seconds").record(1e-3);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
