//! Which SSH algorithms a device is offered.

/// The algorithms offered to a device: modern ones only (no SHA-1 anywhere, no CBC), unless
/// the device is opted in to those old switches still need: the SHA-1 Diffie-Hellman key
/// exchanges (group 1, group 14, group exchange), CBC ciphers with 3des-cbc, hmac-sha1, and
/// ssh-rsa (SHA-1) and ssh-dss host keys. They come after the modern ones, so a device that
/// has both still negotiates a modern set.
pub fn preferred(legacy: bool) -> russh::Preferred {
    use russh::keys::Algorithm;
    use russh::{cipher, kex, mac};
    let default = russh::Preferred::DEFAULT;
    let mut key: Vec<Algorithm> = default
        .key
        .iter()
        .filter(|a| !matches!(a, Algorithm::Rsa { hash: None }))
        .cloned()
        .collect();
    if !legacy {
        return russh::Preferred {
            key: key.into(),
            ..default
        };
    }
    let mut kex: Vec<kex::Name> = default.kex.to_vec();
    // Before the extension pseudo-algorithms, which end the list.
    let at = kex
        .iter()
        .position(|k| *k == kex::EXTENSION_SUPPORT_AS_CLIENT)
        .unwrap_or(kex.len());
    kex.splice(
        at..at,
        [kex::DH_GEX_SHA1, kex::DH_G14_SHA1, kex::DH_G1_SHA1],
    );
    let mut cipher: Vec<cipher::Name> = default.cipher.to_vec();
    cipher.extend([
        cipher::AES_256_CBC,
        cipher::AES_192_CBC,
        cipher::AES_128_CBC,
        cipher::TRIPLE_DES_CBC,
    ]);
    let mut mac: Vec<mac::Name> = default.mac.to_vec();
    mac.extend([mac::HMAC_SHA1_ETM, mac::HMAC_SHA1]);
    key.extend([Algorithm::Rsa { hash: None }, Algorithm::Dsa]);
    russh::Preferred {
        kex: kex.into(),
        key: key.into(),
        cipher: cipher.into(),
        mac: mac.into(),
        ..default
    }
}
