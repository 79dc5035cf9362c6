//! Strings and byte buffers across the boundary: arguments read from C,
//! results handed to C, and the functions C calls to free them.

use std::ffi::{CStr, CString, c_char};

use crate::error::Failure;

/// Bytes that libpairgate allocated and the caller owns: free them with
/// `pairgate_bytes_free`. `data` is NULL when `len` is 0.
#[repr(C)]
#[derive(Debug)]
pub struct PairgateBytes {
    /// The first byte, or NULL for no bytes.
    pub data: *mut u8,
    /// How many bytes.
    pub len: usize,
}

impl PairgateBytes {
    /// No bytes.
    pub(crate) fn empty() -> Self {
        Self {
            data: std::ptr::null_mut(),
            len: 0,
        }
    }

    /// Hands `bytes` to the caller.
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        if bytes.is_empty() {
            return Self::empty();
        }
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        let data = Box::into_raw(boxed).cast::<u8>();
        Self { data, len }
    }
}

/// A required string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
pub(crate) unsafe fn required<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    // SAFETY: the caller's contract, passed on.
    unsafe { optional(ptr, name) }?.ok_or_else(|| Failure::argument(format!("{name} is NULL")))
}

/// An optional string argument (NULL means none).
///
/// # Safety
/// As for [`required`].
pub(crate) unsafe fn optional<'a>(
    ptr: *const c_char,
    name: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and by the caller's contract NUL-terminated and
    // valid for 'a.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map(Some)
        .map_err(|_| Failure::argument(format!("{name} is not UTF-8")))
}

/// A byte-range argument; NULL is allowed when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes valid for `'a`.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::argument(format!(
            "{name} is NULL but its length is {len}"
        )));
    }
    // SAFETY: non-NULL, and by the caller's contract `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Writes a new string the caller owns to `out`.
///
/// # Safety
/// `out` is NULL or valid for one pointer write.
pub(crate) unsafe fn put_string(
    out: *mut *mut c_char,
    text: String,
    name: &str,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::argument(format!("{name} is NULL")));
    }
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    // SAFETY: non-NULL and, by the caller's contract, writable.
    unsafe { out.write(text.into_raw()) };
    Ok(())
}

/// Frees a string that libpairgate returned. NULL is ignored.
///
/// # Safety
/// `text` is NULL or a string returned by libpairgate and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_string_free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: made by CString::into_raw in put_string, freed once.
        drop(unsafe { CString::from_raw(text) });
    }
}

/// Frees bytes that libpairgate returned. Empty bytes are ignored.
///
/// # Safety
/// `bytes` was returned by libpairgate and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_bytes_free(bytes: PairgateBytes) {
    if !bytes.data.is_null() && bytes.len > 0 {
        let slice = std::ptr::slice_from_raw_parts_mut(bytes.data, bytes.len);
        // SAFETY: made by Box::into_raw of a boxed slice of this length in
        // PairgateBytes::from_vec, freed once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn strings_and_bytes_round_trip_and_free() {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: `out` is a valid place for one pointer.
        unsafe { put_string(&mut out, "a\0b".to_owned(), "out") }.unwrap();
        // SAFETY: `out` was just made by put_string.
        let read = unsafe { required(out, "out") }.unwrap().to_owned();
        assert_eq!(read, "a b");
        // SAFETY: freed once.
        unsafe { pairgate_string_free(out) };
        let b = PairgateBytes::from_vec(vec![1, 2, 3]);
        // SAFETY: `b` points to its 3 bytes.
        assert_eq!(unsafe { bytes(b.data, b.len, "b") }.unwrap(), &[1, 2, 3]);
        // SAFETY: freed once.
        unsafe { pairgate_bytes_free(b) };
        // SAFETY: NULL with length 0 is allowed; NULL with a length is refused.
        let none = unsafe { bytes(std::ptr::null(), 0, "b") };
        assert!(none.unwrap().is_empty());
        // SAFETY: as above.
        assert!(unsafe { bytes(std::ptr::null(), 3, "b") }.is_err());
        // SAFETY: NULL is refused before it is read.
        assert!(unsafe { required(std::ptr::null(), "x") }.is_err());
    }
}
