//! The EL2 heap behind `alloc`.
//!
//! linked_list_allocator is a small, widely used first-fit allocator that
//! returns freed blocks (domain construction allocates and frees buffers of
//! many sizes, so a bump allocator would waste memory) and needs nothing
//! but a memory range.

use linked_list_allocator::LockedHeap;

/// Heap size: room for stage-2 tables, guest DTBs and emulator state.
pub const HEAP_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

/// The memory the heap manages (in `.bss`).
static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hands the heap area to the allocator. Call once, with the MMU on.
pub fn init() {
    let start = &raw mut HEAP_AREA;
    // SAFETY: HEAP_AREA is used by nothing but the allocator, and `init`
    // runs once on the boot CPU before any allocation.
    unsafe { ALLOCATOR.lock().init(start.cast::<u8>(), HEAP_SIZE) };
}
