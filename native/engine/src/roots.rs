//! The system's TLS roots, loaded on the first certificate that needs them.
//!
//! Why: building the platform verifier reads and parses every certificate of the system
//! store (on Debian ~150 files, 2.5–3.6 ms here). The direct client was built before the
//! first request of every download, so every run paid that before its first byte, also
//! when it never spoke TLS. Now plain-HTTP runs never load the roots, and HTTPS runs load
//! them once per process, when the first server certificate arrives.
//!
//! Only `verify_server_cert` needs the roots. Handshake signatures are checked with the
//! crypto provider's algorithms, exactly what the platform verifier delegates to.
//!
//! The loaded verifier is shared by every downloader of the process: it is read-only.
//! A failed load is not remembered, so a later handshake tries again.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;

/// The platform verifier of this process, once loaded.
static LOADED: Mutex<Option<Arc<Verifier>>> = Mutex::new(None);

#[derive(Debug)]
pub struct LazyRoots {
    provider: Arc<CryptoProvider>,
}

impl LazyRoots {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        LazyRoots { provider }
    }

    fn verifier(&self) -> Result<Arc<Verifier>, rustls::Error> {
        // Held while loading: concurrent first handshakes load the roots once.
        let mut slot = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = slot.as_ref() {
            return Ok(v.clone());
        }
        let v = Arc::new(Verifier::new(self.provider.clone())?);
        *slot = Some(v.clone());
        Ok(v)
    }
}

impl ServerCertVerifier for LazyRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
