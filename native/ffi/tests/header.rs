//! The committed C header must be exactly what cbindgen makes of the code today, plus
//! the error codes of `tthsd_engine::ErrorCode` as `TTHSD_ERROR_*` constants (the engine
//! is their one definition; cbindgen only reads this crate).
//! Set TTHSD_BLESS=1 to rewrite it after an intended change.

use std::fmt::Write as _;
use std::path::PathBuf;

use tthsd_engine::ErrorCode;

/// `#define TTHSD_ERROR_<CODE> "<code>"` for every code, each under its meaning.
fn error_code_defines() -> String {
    let mut out = String::from(
        "// The `Code` of `err` events (see docs/errors.md). Codes may be added, never renamed:\n\
         // treat an unknown one like a generic failure.\n",
    );
    for code in ErrorCode::ALL {
        let name = code.as_str().to_ascii_uppercase();
        let _ = writeln!(out, "// {}", code.meaning());
        let _ = writeln!(out, "#define TTHSD_ERROR_{name} \"{}\"", code.as_str());
    }
    out
}

#[test]
fn committed_header_matches_the_code() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    config.after_includes = Some(error_code_defines());
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("header is UTF-8");
    let path = crate_dir.join("..").join("include").join("tthsd.h");
    if std::env::var_os("TTHSD_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("header written");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "native/include/tthsd.h is out of date: run `TTHSD_BLESS=1 cargo test -p tthsd-ffi --test header`"
    );
}

#[test]
fn version_matches_cargo_toml() {
    let v = unsafe { std::ffi::CStr::from_ptr(TTHighSpeedDownloader::exports::tthsd_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
