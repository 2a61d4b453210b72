//! The relay paths allocate nothing: a counting global allocator for this test binary,
//! counting per thread so parallel tests do not disturb each other.
//!
//! `unsafe` appears here only because `GlobalAlloc` is an unsafe trait; every method
//! forwards to `System` unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crate::stun::{ChannelDataRepr, Framing};
use crate::turn::{ClientAction, PeerAction};

use super::kit::*;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` with the same arguments; the counter is a
// const-initialised thread-local `Cell` (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn relay_paths_do_not_allocate() {
    let mut h = Harness::new(config());
    let peer = sa("172.31.31.50:40000");
    let other = sa("172.31.31.50:40001");
    let mut c = Client::new("198.51.100.7:5000", 1);
    let relay = c.allocate(&mut h, &[]).relayed()[0];
    assert!(c.bind(&mut h, 0x4000, peer).is_success());
    let f = c.five;
    let mut cd = Vec::new();
    ChannelDataRepr {
        channel: 0x4000,
        data: &[0xAB; 160],
    }
    .emit(&mut cd, Framing::Datagram)
    .unwrap();
    let send = c.send_indication(peer, &[0xCD; 160], false);
    let payload = [0xEF; 160];
    h.out.reserve(1500);
    // Warm up once (the first Data indication sizes `out`).
    assert!(matches!(
        h.peer(relay, other, &payload),
        PeerAction::ToClient { .. }
    ));

    let before = allocations();
    for _ in 0..1000 {
        assert!(matches!(h.client(&cd, f), ClientAction::ToPeer { .. }));
        assert!(matches!(h.client(&send, f), ClientAction::ToPeer { .. }));
        assert!(matches!(
            h.peer(relay, peer, &payload),
            PeerAction::ToClientChannel { .. }
        ));
        assert!(matches!(
            h.peer(relay, other, &payload),
            PeerAction::ToClient { .. }
        ));
    }
    assert_eq!(allocations() - before, 0);
}
