//! Istio's `cacerts` layout on disk: `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
//! `cert-chain.pem`. The self-signed root is persisted in the same layout, so a restart keeps
//! the same trust root and an operator can later swap in their own CA file by file.

use std::path::{Path, PathBuf};

use crate::authority::CaError;

/// The signing certificate.
pub const CA_CERT: &str = "ca-cert.pem";
/// The signing key (PKCS#8 PEM).
pub const CA_KEY: &str = "ca-key.pem";
/// The trust root workloads verify peers against.
pub const ROOT_CERT: &str = "root-cert.pem";
/// The chain from the signing certificate up to the root.
pub const CERT_CHAIN: &str = "cert-chain.pem";

const ALL: [&str; 4] = [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN];

/// The four files' contents.
pub struct CaFiles {
    pub ca_cert: String,
    pub ca_key: String,
    pub root_cert: String,
    pub cert_chain: String,
}

/// Reads the layout: `Ok(None)` when none of the files exist, an error naming the missing ones
/// when only some do.
pub fn read(dir: &Path) -> Result<Option<CaFiles>, CaError> {
    let present: Vec<bool> = ALL.iter().map(|f| dir.join(f).exists()).collect();
    if present.iter().all(|p| !p) {
        return Ok(None);
    }
    let missing: Vec<&str> = ALL
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(f, _)| *f)
        .collect();
    if !missing.is_empty() {
        return Err(CaError::IncompleteCaDir {
            dir: dir.to_path_buf(),
            missing: missing.join(", "),
        });
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| CaError::Io { path, source })
    };
    Ok(Some(CaFiles {
        ca_cert: read(CA_CERT)?,
        ca_key: read(CA_KEY)?,
        root_cert: read(ROOT_CERT)?,
        cert_chain: read(CERT_CHAIN)?,
    }))
}

/// Writes the layout; the key file is readable by its owner only.
pub fn write(dir: &Path, files: &CaFiles) -> Result<(), CaError> {
    let io = |path: PathBuf| move |source| CaError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    for (name, text) in [
        (CA_CERT, &files.ca_cert),
        (ROOT_CERT, &files.root_cert),
        (CERT_CHAIN, &files.cert_chain),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(path.clone()))?;
    }
    let key = dir.join(CA_KEY);
    write_private(&key, &files.ca_key).map_err(io(key.clone()))
}

pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// Splits a PEM bundle into its certificates (each as PEM text).
pub fn split_pem_certs(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .filter_map(|chunk| {
            let start = chunk.find("-----BEGIN CERTIFICATE-----")?;
            chunk
                .ends_with(END)
                .then(|| format!("{}\n", &chunk[start..]))
        })
        .collect()
}
