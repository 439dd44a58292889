//! The few MIT GSSAPI calls the login needs, loaded at run time from `libgssapi_krb5.so.2`
//! (as hdfs-native loads it), so a build without Kerberos users needs no Kerberos library.
//!
//! `gss_acquire_cred_from` with a `client_keytab` store is MIT's keytab login: it gets a
//! ticket when the cache has none and gets a new one once the old one is past half its life
//! (MIT krb5 1.11+, "client keytab initiation"). Every connection hdfs-native opens does the
//! same acquire on the same cache, so the two share one ticket.

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr;
use std::sync::OnceLock;

use libloading::Library;

type Minor = u32;
type Major = u32;

#[repr(C)]
struct Buffer {
    length: usize,
    value: *mut c_void,
}

#[repr(C)]
struct Oid {
    length: u32,
    elements: *const c_void,
}

#[repr(C)]
struct KeyValue {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
struct KeyValueSet {
    count: u32,
    elements: *const KeyValue,
}

type ImportName =
    unsafe extern "C" fn(*mut Minor, *mut Buffer, *const Oid, *mut *mut c_void) -> Major;
type AcquireFrom = unsafe extern "C" fn(
    *mut Minor,
    *mut c_void,
    u32,
    *mut c_void,
    c_int,
    *const KeyValueSet,
    *mut *mut c_void,
    *mut *mut c_void,
    *mut u32,
) -> Major;
type Release = unsafe extern "C" fn(*mut Minor, *mut *mut c_void) -> Major;
type DisplayStatus =
    unsafe extern "C" fn(*mut Minor, u32, c_int, *const Oid, *mut u32, *mut Buffer) -> Major;
type ReleaseBuffer = unsafe extern "C" fn(*mut Minor, *mut Buffer) -> Major;

const LIBRARY: &str = "libgssapi_krb5.so.2";
const GSS_C_INDEFINITE: u32 = u32::MAX;
const GSS_C_INITIATE: c_int = 1;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;
/// GSS_KRB5_NT_PRINCIPAL_NAME, 1.2.840.113554.1.2.2.1: a principal in its usual text form.
const KRB5_PRINCIPAL_NAME: [u8; 10] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01];

fn library() -> Result<&'static Library, String> {
    static LIB: OnceLock<Result<Library, String>> = OnceLock::new();
    LIB.get_or_init(|| {
        // SAFETY: loading MIT's GSSAPI library runs only its own initialisers.
        unsafe { Library::new(LIBRARY) }.map_err(|e| {
            format!("cannot load {LIBRARY} ({e}); install libgssapi-krb5-2 (Debian) or krb5-libs (RHEL)")
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn symbol<T: Copy>(name: &str) -> Result<T, String> {
    // SAFETY: each call site names a function whose C signature matches `T` (gssapi.h).
    unsafe { library()?.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("{LIBRARY} has no {name}: {e}"))
}

/// Gets (or keeps) a ticket for `principal` and returns its remaining lifetime in seconds.
/// `keytab`: log in from it into `cache`; `None`: use the default credential cache as is.
pub fn acquire(principal: &str, keytab: Option<&str>, cache: Option<&str>) -> Result<u32, String> {
    let name = import_name(principal)?;
    let result = acquire_as(name, keytab, cache);
    release(name, "gss_release_name");
    result
}

fn import_name(principal: &str) -> Result<*mut c_void, String> {
    let import: ImportName = symbol("gss_import_name")?;
    let oid = Oid {
        length: KRB5_PRINCIPAL_NAME.len() as u32,
        elements: KRB5_PRINCIPAL_NAME.as_ptr().cast(),
    };
    let mut buf = Buffer {
        length: principal.len(),
        value: principal.as_ptr() as *mut c_void,
    };
    let (mut minor, mut name) = (0, ptr::null_mut());
    // SAFETY: the buffer and OID point at live memory for the call; GSSAPI copies the name.
    let major = unsafe { import(&mut minor, &mut buf, &oid, &mut name) };
    check(major, minor)?;
    Ok(name)
}

fn acquire_as(name: *mut c_void, keytab: Option<&str>, cache: Option<&str>) -> Result<u32, String> {
    let acquire: AcquireFrom = symbol("gss_acquire_cred_from")?;
    let owned: Vec<(CString, CString)> = [("client_keytab", keytab), ("ccache", cache)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .map(|(k, v)| Ok((CString::new(k).unwrap(), cstring(v)?)))
        .collect::<Result<_, String>>()?;
    let elements: Vec<KeyValue> = owned
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.as_ptr(),
            value: v.as_ptr(),
        })
        .collect();
    let store = KeyValueSet {
        count: elements.len() as u32,
        elements: elements.as_ptr(),
    };
    let (mut minor, mut cred, mut lifetime) = (0, ptr::null_mut(), 0u32);
    // SAFETY: every pointer is live for the call; the store's strings outlive it (`owned`).
    let major = unsafe {
        acquire(
            &mut minor,
            name,
            GSS_C_INDEFINITE,
            ptr::null_mut(),
            GSS_C_INITIATE,
            &store,
            &mut cred,
            ptr::null_mut(),
            &mut lifetime,
        )
    };
    check(major, minor)?;
    release(cred, "gss_release_cred");
    Ok(lifetime)
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"))
}

fn release(handle: *mut c_void, function: &str) {
    if handle.is_null() {
        return;
    }
    if let Ok(f) = symbol::<Release>(function) {
        let (mut minor, mut h) = (0, handle);
        // SAFETY: `h` came from the matching GSSAPI call and is released once.
        unsafe { f(&mut minor, &mut h) };
    }
}

/// `Ok` for GSS_S_COMPLETE (and informational codes), else MIT's own words for the failure.
fn check(major: Major, minor: Minor) -> Result<(), String> {
    if major & 0xffff_0000 == 0 {
        return Ok(());
    }
    let mut words = describe(major, GSS_C_GSS_CODE);
    if minor != 0 {
        words = format!("{words}: {}", describe(minor, GSS_C_MECH_CODE));
    }
    Err(words)
}

fn describe(code: u32, kind: c_int) -> String {
    let (Ok(display), Ok(free)) = (
        symbol::<DisplayStatus>("gss_display_status"),
        symbol::<ReleaseBuffer>("gss_release_buffer"),
    ) else {
        return format!("GSSAPI status {code:#x}");
    };
    let mut parts = Vec::new();
    let mut context = 0u32;
    loop {
        let (mut minor, mut buf) = (
            0,
            Buffer {
                length: 0,
                value: ptr::null_mut(),
            },
        );
        // SAFETY: GSSAPI fills `buf`, which is released right after it is copied.
        let major = unsafe { display(&mut minor, code, kind, ptr::null(), &mut context, &mut buf) };
        if major != 0 {
            break;
        }
        if !buf.value.is_null() {
            // SAFETY: GSSAPI returned `length` readable bytes at `value`.
            let text = unsafe { std::slice::from_raw_parts(buf.value.cast::<u8>(), buf.length) };
            parts.push(String::from_utf8_lossy(text).into_owned());
            unsafe { free(&mut minor, &mut buf) };
        }
        if context == 0 {
            break;
        }
    }
    if parts.is_empty() {
        format!("GSSAPI status {code:#x}")
    } else {
        parts.join("; ")
    }
}
