//! Helpers shared by regionstore's benchmark binaries (the benches themselves live in the
//! per-crate folders next to this file; `RESULTS.md` keeps the numbers).

pub mod alloc_counter {
    //! A global allocator wrapper that counts live heap bytes, for memory-per-object benches.
    //! Install it in a bench binary with
    //! `#[global_allocator] static A: CountingAlloc = CountingAlloc::new();`.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

    pub struct CountingAlloc {
        live_bytes: AtomicIsize,
        allocations: AtomicUsize,
    }

    impl CountingAlloc {
        pub const fn new() -> CountingAlloc {
            CountingAlloc { live_bytes: AtomicIsize::new(0), allocations: AtomicUsize::new(0) }
        }

        /// Heap bytes currently allocated (requested sizes, not allocator overhead).
        pub fn live_bytes(&self) -> isize {
            self.live_bytes.load(Ordering::SeqCst)
        }

        /// Allocation calls so far (including reallocations).
        pub fn allocations(&self) -> usize {
            self.allocations.load(Ordering::SeqCst)
        }
    }

    impl Default for CountingAlloc {
        fn default() -> CountingAlloc {
            CountingAlloc::new()
        }
    }

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
    // counters are plain atomics and never affect what is returned.
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.live_bytes.fetch_add(layout.size() as isize, Ordering::Relaxed);
            self.allocations.fetch_add(1, Ordering::Relaxed);
            // SAFETY: forwarded contract.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            self.live_bytes.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            // SAFETY: forwarded contract.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            self.live_bytes.fetch_add(layout.size() as isize, Ordering::Relaxed);
            self.allocations.fetch_add(1, Ordering::Relaxed);
            // SAFETY: forwarded contract.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            self.live_bytes
                .fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
            self.allocations.fetch_add(1, Ordering::Relaxed);
            // SAFETY: forwarded contract.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}
