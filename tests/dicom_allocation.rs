//! The bounded DICOM decoder (`interop::bounded`) on its own, without the nesting
//! pre-scan in front of it: an element claiming 4 GB in a few bytes must fail after
//! allocating about the input's size (under 1 MiB, with the dictionary's own tables). A
//! counting global allocator records the
//! largest single allocation; dicom-rs alone allocates the claimed 4 GB first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use drscreen::interop::object::read_bounded;
use drscreen::interop::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

#[test]
fn a_claimed_length_beyond_the_data_allocates_no_more_than_the_data() {
    // (0010,0010) PN claiming 0xFFFFFFF0 bytes, implicit VR; (0010,4000) LT the same in
    // explicit VR (a 4-byte length needs a long VR: UT); OB and SL for the byte and
    // numeric readers.
    let implicit = [&[0x10, 0x00, 0x10, 0x00, 0xF0, 0xFF, 0xFF, 0xFF][..], b"Doe^Jane"].concat();
    let ut = [&[0x10, 0x00, 0x00, 0x40, b'U', b'T', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF][..], b"note"].concat();
    let ob = [&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF][..], &[1, 2, 3, 4]].concat();
    let unknown_vr = [&[0x09, 0x00, 0x10, 0x10, 0xFF, 0x00, 0, 0, 0xF0, 0xFF, 0xFF, 0xFF][..], &[1, 2, 3, 4]].concat();
    for (name, bytes, ts) in [
        ("implicit PN", implicit, IMPLICIT_VR_LE),
        ("UT", ut, EXPLICIT_VR_LE),
        ("OB", ob, EXPLICIT_VR_LE),
        ("unknown VR", unknown_vr, EXPLICIT_VR_LE),
    ] {
        let ts = TransferSyntaxRegistry.get(ts).unwrap();
        LARGEST.store(0, Ordering::Relaxed);
        let result = read_bounded(&bytes, ts);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(result.is_err(), "{name}: a value past the end must not parse");
        assert!(largest < 1024 * 1024, "{name}: largest allocation {largest} bytes for a {} byte input", bytes.len());
    }
}
