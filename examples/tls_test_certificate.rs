//! Writes a throwaway self-signed certificate and its private key as PEM files, for trying
//! the SSL examples and for the smoke tests (never for production).
//!
//! Usage: `tls_test_certificate <cert.pem> <key.pem> [name...]` (default name `localhost`;
//! `127.0.0.1` is always included).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("Usage: tls_test_certificate <cert.pem> <key.pem> [name...]");
        return ExitCode::FAILURE;
    }
    let mut names: Vec<String> = args[3..].to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    names.push("127.0.0.1".into());
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string());
    let written = made.and_then(|c| {
        std::fs::write(&args[1], c.cert.pem())
            .and_then(|()| std::fs::write(&args[2], c.signing_key.serialize_pem()))
            .map_err(|e| e.to_string())
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_test_certificate: {e}");
            ExitCode::FAILURE
        }
    }
}
