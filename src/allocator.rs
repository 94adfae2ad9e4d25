//! The binary's allocator: mimalloc, called the way Rust's own system allocator calls malloc.
//!
//! A request allocates and frees a few dozen small blocks, and glibc's malloc and free were
//! about a sixth of keel's CPU time per request (see the README's performance notes). The
//! `mimalloc` crate sends every allocation through `mi_malloc_aligned`, which costs some 25
//! instructions more than `mi_malloc` even when the alignment asked for is one that every
//! mimalloc block has anyway; that was about 700 instructions of a `GET /`. This allocator asks
//! for plain blocks where that is enough, as `std`'s `System` does with malloc, and for aligned
//! ones otherwise.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// Every block `mi_malloc` returns is aligned to a machine word at least.
const PLAIN_ALIGN: usize = std::mem::align_of::<usize>();

/// mimalloc as the global allocator: `#[global_allocator] static A: Mimalloc = Mimalloc;`.
pub struct Mimalloc;

/// The plain function for a word-aligned `layout`, the aligned one otherwise.
///
/// # Safety
/// As `GlobalAlloc::alloc`: `layout` has a non-zero size.
#[inline]
unsafe fn allocate(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation functions take any size and alignment and return null on
    // failure.
    unsafe {
        if layout.align() <= PLAIN_ALIGN {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: every method hands the request to mimalloc with the layout's size, and with its
// alignment unless that is at most a machine word, which every mimalloc block already has.
// mimalloc's functions are thread-safe and return null on failure, as `GlobalAlloc` requires.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe { allocate(layout, mi_malloc, mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe { allocate(layout, mi_zalloc, mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, _layout: Layout) {
        // SAFETY: `block` came from this allocator, so from mimalloc.
        unsafe { mi_free(block.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `block` came from this allocator with `layout`; the new block keeps its
        // alignment as `alloc` would have chosen it.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi_realloc(block.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(block.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for_and_keep_their_contents() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 24, 100, 4096, 100_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; every block is freed with its own layout.
                unsafe {
                    let block = Mimalloc.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "alloc size {size} align {align}");
                    block.write_bytes(0xab, size);
                    let grown = Mimalloc.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "realloc size {size} align {align}");
                    assert!((0..size).all(|at| *grown.add(at) == 0xab), "realloc kept the contents");
                    Mimalloc.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    let zeroed = Mimalloc.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0, "alloc_zeroed size {size} align {align}");
                    assert!((0..size).all(|at| *zeroed.add(at) == 0));
                    Mimalloc.dealloc(zeroed, layout);
                }
            }
        }
    }
}
