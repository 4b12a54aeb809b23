//! The default JPEG pixel decoder: libjpeg-turbo's decoder as vendored by `mozjpeg-sys`
//! (MozJPEG 4 is libjpeg-turbo with a different encoder; decoding is libjpeg-turbo's),
//! compiled from C by the `cc` crate, with its nasm SIMD when `nasm` was on PATH at build
//! time and its portable C code otherwise. It decodes 8-bit Huffman (baseline, extended,
//! progressive) JPEGs straight to RGB8 at a reduced DCT scale, the same scaled IDCT that
//! the training recipe used through Pillow's `draft()`.
//!
//! Error handling: libjpeg's default `error_exit` calls `exit()`, which would take the
//! whole service down on one corrupt upload. Here `error_exit`, and `emit_message` for
//! warnings (corrupt or truncated data that libjpeg would otherwise paper over with grey
//! rows: a half-grey photograph must not be graded), end the decode by unwinding with
//! [`std::panic::resume_unwind`] out of the C frames to a `catch_unwind` around the
//! libjpeg calls; `jpeg_destroy_decompress` then frees everything libjpeg allocated. This
//! is the recovery libjpeg documents for `longjmp`, done with Rust's unwinder instead:
//! the callbacks and libjpeg's functions are `extern "C-unwind"` in `mozjpeg-sys`, its
//! `unwinding` feature compiles the C code with `-fexceptions` (unwind tables), the nasm
//! routines are leaf functions that never call back, and no C frame holds a resource
//! that only a normal return would free. `resume_unwind` skips the panic hook, so a bad
//! upload logs no panic message. It needs `panic = "unwind"`, which is enforced below.

use std::any::Any;
use std::ffi::{c_int, c_ulong};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use mozjpeg_sys as ffi;

use super::PreprocessError;

// With panic = "abort" the first corrupt JPEG would abort the process: refuse to build.
#[cfg(panic = "abort")]
compile_error!("the `mozjpeg` JPEG decoder needs panic = \"unwind\" to turn libjpeg errors into Rust errors");

/// Progressive files with many scans make decoding quadratic; TurboJPEG's limit (and the
/// one the service applied with the old `turbojpeg` feature).
const MAX_SCANS: c_int = 500;

/// libjpeg's `JMSG_LENGTH_MAX`: `format_message` writes up to this many bytes. (The
/// `mozjpeg-sys` signature says 80, so the buffer is passed as a raw pointer.)
const JMSG_LENGTH_MAX: usize = 200;

/// The payload that carries a libjpeg error (or one of our own checks) from a callback
/// to the `catch_unwind` in [`decode_rgb`].
struct Failure(String);

/// Decodes an 8-bit Huffman JPEG to RGB8 at 1/`denominator` scale. `source` is the size
/// `jpeg-decoder` read from the header (and the limits were checked against) and
/// `expected` the scaled size: libjpeg must agree on both, so no allocation here depends
/// on a number that was not checked.
pub fn decode_rgb(bytes: &[u8], denominator: u32, source: (u32, u32), expected: (u32, u32)) -> Result<Vec<u8>, PreprocessError> {
    let mut rgb = pixel_buffer(expected.0 as usize * expected.1 as usize * 3);
    // Boxed: libjpeg keeps pointers to the error and progress managers, so their
    // addresses must not move while it runs.
    // SAFETY: all three are plain C structs for which all-zero is a valid (empty) value;
    // jpeg_std_error and jpeg_create_decompress fill them in before use.
    let mut err: Box<ffi::jpeg_error_mgr> = Box::new(unsafe { std::mem::zeroed() });
    let mut progress: Box<ffi::jpeg_progress_mgr> = Box::new(unsafe { std::mem::zeroed() });
    let mut cinfo: Box<ffi::jpeg_decompress_struct> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: jpeg_std_error only fills in the struct it is given.
    unsafe { ffi::jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    progress.progress_monitor = Some(limit_scans);
    cinfo.common.err = &mut *err;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: cinfo's err points at a live error manager whose error_exit unwinds;
        // jpeg_create_decompress keeps it and sets up the memory manager.
        unsafe { ffi::jpeg_create_decompress(&mut *cinfo) };
        cinfo.common.progress = &mut *progress;
        // SAFETY: cinfo was created above; `bytes` and `rgb` outlive the decode.
        unsafe { decode_into(&mut cinfo, bytes, denominator, source, expected, &mut rgb) }
    }));
    // SAFETY: after success or an unwind out of any libjpeg call, destroying the object is
    // what libjpeg documents (it frees every pool; on a zeroed or half-created struct it
    // does nothing, as `mem` is null). No callback of ours can fail inside it.
    unsafe { ffi::jpeg_destroy_decompress(&mut cinfo) };
    match outcome {
        Ok(Ok(())) => Ok(rgb),
        Ok(Err(message)) => Err(PreprocessError::Corrupt(format!("JPEG: {message}"))),
        Err(payload) => Err(PreprocessError::Corrupt(format!("JPEG: {}", failure_message(payload)))),
    }
}

/// The message of a libjpeg failure; any other panic is a bug elsewhere and keeps
/// unwinding (after the caller's libjpeg object was already destroyed).
fn failure_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<Failure>() {
        Ok(failure) => failure.0,
        Err(other) => resume_unwind(other),
    }
}

/// # Safety
/// `cinfo` must be a created decompressor whose error manager unwinds.
unsafe fn decode_into(
    cinfo: &mut ffi::jpeg_decompress_struct,
    bytes: &[u8],
    denominator: u32,
    source: (u32, u32),
    expected: (u32, u32),
    rgb: &mut [u8],
) -> Result<(), String> {
    let len = c_ulong::try_from(bytes.len()).map_err(|_| "input too large for libjpeg".to_string())?;
    // SAFETY (whole block): cinfo is a created decompressor (caller), `bytes` outlives it,
    // and every row pointer handed to jpeg_read_scanlines points at a full output row
    // inside `rgb`, whose size is checked against libjpeg's output size first.
    unsafe {
        ffi::jpeg_mem_src(cinfo, bytes.as_ptr(), len);
        ffi::jpeg_read_header(cinfo, 1);
        if (cinfo.image_width, cinfo.image_height) != source {
            return Err(format!(
                "libjpeg reads {}x{}, the header check read {}x{}",
                cinfo.image_width, cinfo.image_height, source.0, source.1
            ));
        }
        cinfo.out_color_space = ffi::J_COLOR_SPACE::JCS_RGB;
        cinfo.scale_num = 1;
        cinfo.scale_denom = denominator;
        ffi::jpeg_start_decompress(cinfo);
        let (width, height) = (cinfo.output_width, cinfo.output_height);
        if (width, height) != expected || cinfo.output_components != 3 {
            return Err(format!("libjpeg scales to {width}x{height}, expected {}x{}", expected.0, expected.1));
        }
        let stride = width as usize * 3;
        if rgb.len() != stride * height as usize {
            return Err("pixel buffer size mismatch".to_string());
        }
        // Several rows per call: libjpeg emits up to `rec_outbuf_height` rows at once.
        let mut rows = [std::ptr::null_mut::<u8>(); 16];
        while cinfo.output_scanline < height {
            let first = cinfo.output_scanline as usize;
            let count = rows.len().min(height as usize - first);
            for (i, row) in rows.iter_mut().take(count).enumerate() {
                *row = rgb[(first + i) * stride..].as_mut_ptr();
            }
            // A memory source never suspends, so this always makes progress or unwinds.
            if ffi::jpeg_read_scanlines(cinfo, rows.as_mut_ptr(), count as ffi::JDIMENSION) == 0 {
                return Err("libjpeg returned no rows".to_string());
            }
        }
        ffi::jpeg_finish_decompress(cinfo);
    }
    Ok(())
}

/// libjpeg's message for its current error or warning.
fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    let mut buffer = [0u8; JMSG_LENGTH_MAX];
    // SAFETY: err is the manager installed in decode_rgb, and format_message (libjpeg's
    // own, from jpeg_std_error) writes at most JMSG_LENGTH_MAX bytes, NUL-terminated.
    let format = unsafe { cinfo.err.as_ref() }.and_then(|err| err.format_message);
    match format {
        Some(format) => {
            // SAFETY: the same C function; only the buffer's declared Rust type differs.
            type Declared = unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, &[u8; 80]);
            type Actual = unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, *mut u8);
            let format = unsafe { std::mem::transmute::<Declared, Actual>(format) };
            unsafe { format(cinfo, buffer.as_mut_ptr()) };
            let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
            String::from_utf8_lossy(&buffer[..end]).into_owned()
        }
        None => "libjpeg error".to_string(),
    }
}

extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let message = message(cinfo);
    resume_unwind(Box::new(Failure(message)));
}

/// Warnings (level -1) are corrupt or truncated data; trace messages (>= 0) are ignored.
extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    if level < 0 {
        let message = message(cinfo);
        resume_unwind(Box::new(Failure(message)));
    }
}

extern "C-unwind" fn limit_scans(cinfo: &mut ffi::jpeg_common_struct) {
    if cinfo.is_decompressor != 0 {
        // SAFETY: a decompressor's common struct is the first field of its
        // jpeg_decompress_struct (libjpeg's own j_decompress_ptr cast).
        let scan = unsafe { (*(cinfo as *mut ffi::jpeg_common_struct).cast::<ffi::jpeg_decompress_struct>()).input_scan_number };
        if scan > MAX_SCANS {
            resume_unwind(Box::new(Failure(format!("progressive JPEG has more than {MAX_SCANS} scans"))));
        }
    }
}

thread_local! {
    static SPARE_PIXELS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest pixel buffer a thread keeps for its next image.
const MAX_SPARE_BYTES: usize = 64 << 20;

/// A pixel buffer of `len` bytes for libjpeg to overwrite, reusing this thread's spare: a
/// fresh multi-megabyte buffer per image costs a zeroing pass (and page faults) that
/// shows up next to a 1/4-scale decode. Its old contents are never exposed: libjpeg
/// writes every row or the decode fails, and a failed buffer is dropped.
fn pixel_buffer(len: usize) -> Vec<u8> {
    let mut rgb = SPARE_PIXELS.with(|spare| std::mem::take(&mut *spare.borrow_mut()));
    rgb.resize(len, 0);
    rgb
}

/// Keeps `rgb` as this thread's spare pixel buffer.
pub fn recycle(rgb: Vec<u8>) {
    if rgb.capacity() <= MAX_SPARE_BYTES {
        SPARE_PIXELS.with(|spare| *spare.borrow_mut() = rgb);
    }
}
