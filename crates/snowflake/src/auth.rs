//! Key-pair authentication for the SQL API: an RSA private key from a PEM file, the SHA-256
//! fingerprint of its public key, and RS256 JWTs minted from it.
//!
//! As Snowflake documents for the SQL API: the JWT's `iss` is
//! `<ACCOUNT>.<USER>.SHA256:<fingerprint>` and its `sub` `<ACCOUNT>.<USER>`, both upper-cased;
//! the fingerprint is the base64 SHA-256 of the public key's DER `SubjectPublicKeyInfo`;
//! `exp` is at most one hour after `iat`. The account part drops the region and cloud of an
//! account locator (`xy12345.us-east-1` → `XY12345`) and keeps an organization-account name
//! whole (`myorg-myaccount` → `MYORG-MYACCOUNT`).
//!
//! Nothing here prints key material: `Debug` shows the file and the fingerprint only, and
//! errors name the file.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use pkcs8::der::SecretDocument;
use pkcs8::{DecodePrivateKey, EncodePublicKey, EncryptedPrivateKeyInfo};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

use crate::SnowflakeError;

/// The longest JWT lifetime this client mints: Snowflake refuses more than one hour.
pub const MAX_LIFETIME: Duration = Duration::from_secs(59 * 60);

/// An RSA private key and its public key's fingerprint.
pub struct KeyPair {
    key: RsaPrivateKey,
    fingerprint: String,
    source: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("source", &self.source)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Load the private key in the PEM file `path`: PKCS#8 (`BEGIN PRIVATE KEY`), encrypted
    /// PKCS#8 (`BEGIN ENCRYPTED PRIVATE KEY`, PBES2 with AES or DES-EDE3) opened with
    /// `passphrase`, or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem_file(path: &Path, passphrase: Option<&str>) -> Result<Self, SnowflakeError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SnowflakeError::Key {
            path: shown.clone(),
            detail: format!("cannot be read: {e}"),
        })?;
        Self::from_pem(&text, &shown, passphrase)
    }

    /// The same from PEM text; `source` names it in errors.
    pub fn from_pem(
        pem: &str,
        source: &str,
        passphrase: Option<&str>,
    ) -> Result<Self, SnowflakeError> {
        let bad = |detail: &str| SnowflakeError::Key {
            path: source.to_owned(),
            detail: detail.to_owned(),
        };
        let label = pem
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
            })
            .unwrap_or("");
        let key = match label {
            "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_pem(pem)
                .map_err(|_| bad("is not a valid PKCS#8 RSA private key"))?,
            "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_pem(pem).map_err(|_| {
                bad("is not a valid PKCS#1 RSA private key (an encrypted PKCS#1 key is not supported: convert it with `openssl pkcs8 -topk8`)")
            })?,
            "ENCRYPTED PRIVATE KEY" => {
                let Some(passphrase) = passphrase else {
                    return Err(bad("is encrypted and no passphrase was given"));
                };
                let (_, doc) = SecretDocument::from_pem(pem)
                    .map_err(|_| bad("is not a valid encrypted PKCS#8 document"))?;
                let info = EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
                    .map_err(|_| bad("is not a valid encrypted PKCS#8 document"))?;
                let plain = info.decrypt(passphrase).map_err(|e| match e {
                    pkcs8::Error::EncryptedPrivateKey(
                        e @ (pkcs8::pkcs5::Error::UnsupportedAlgorithm { .. }
                        | pkcs8::pkcs5::Error::AlgorithmParametersInvalid { .. }
                        | pkcs8::pkcs5::Error::NoPbes1CryptSupport),
                    ) => bad(&format!(
                        "is encrypted with a scheme this client cannot open ({e}); re-encrypt it with `openssl pkcs8 -topk8 -v2 aes256`"
                    )),
                    // A padding failure after decryption: the passphrase derived the wrong key.
                    _ => SnowflakeError::WrongPassphrase {
                        path: source.to_owned(),
                    },
                })?;
                // A wrong passphrase can decrypt to bytes whose padding happens to be valid:
                // they are then not a key.
                RsaPrivateKey::from_pkcs8_der(plain.as_bytes()).map_err(|_| {
                    SnowflakeError::WrongPassphrase {
                        path: source.to_owned(),
                    }
                })?
            }
            "" => return Err(bad("holds no PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN ENCRYPTED PRIVATE KEY-----)")),
            other => {
                return Err(bad(&format!(
                    "holds a PEM `{other}`, not a private key"
                )));
            }
        };
        let fingerprint = fingerprint_of(&key.to_public_key()).map_err(|e| bad(&e))?;
        Ok(Self {
            key,
            fingerprint,
            source: source.to_owned(),
        })
    }

    /// An in-memory key (tests, keys from a secret store).
    pub fn from_key(key: RsaPrivateKey, source: &str) -> Result<Self, SnowflakeError> {
        let fingerprint =
            fingerprint_of(&key.to_public_key()).map_err(|detail| SnowflakeError::Key {
                path: source.to_owned(),
                detail,
            })?;
        Ok(Self {
            key,
            fingerprint,
            source: source.to_owned(),
        })
    }

    /// `SHA256:<base64 of the SHA-256 of the public key's DER SubjectPublicKeyInfo>`, as
    /// `DESCRIBE USER` shows it in `RSA_PUBLIC_KEY_FP`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn public_key(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }

    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.key.size() * 8
    }

    fn sign_rs256(&self, message: &[u8]) -> Vec<u8> {
        SigningKey::<Sha256>::new(self.key.clone())
            .sign(message)
            .to_vec()
    }
}

/// The fingerprint of a public key: `SHA256:` + base64(SHA-256(DER SubjectPublicKeyInfo)).
pub fn fingerprint_of(key: &RsaPublicKey) -> Result<String, String> {
    let der = key
        .to_public_key_der()
        .map_err(|e| format!("its public key cannot be encoded: {e}"))?;
    Ok(format!(
        "SHA256:{}",
        STANDARD.encode(Sha256::digest(der.as_bytes()))
    ))
}

/// The account part of the JWT claims, from an account identifier or host:
/// upper-cased; an account locator's region and cloud dropped (`xy12345.us-east-1.aws` →
/// `XY12345`); for a global URL (`xy12345-abc.global`) the part before the first `-`; an
/// organization-account name (`myorg-myaccount`) kept whole.
pub fn jwt_account(account: &str) -> String {
    let a = account.trim();
    let lower = a.to_ascii_lowercase();
    let a = match lower.strip_suffix(".snowflakecomputing.com") {
        Some(_) => &a[..a.len() - ".snowflakecomputing.com".len()],
        None => a,
    };
    let a = if a.to_ascii_lowercase().contains(".global") {
        a.split('-').next().unwrap_or(a)
    } else {
        a.split('.').next().unwrap_or(a)
    };
    a.to_ascii_uppercase()
}

struct Minted {
    token: String,
    iat: u64,
    expires: SystemTime,
}

/// Mints RS256 JWTs for one user and re-mints when the cached one is close to expiry.
pub struct JwtMinter {
    account: String,
    user: String,
    key: KeyPair,
    lifetime: Duration,
    cache: Mutex<Option<Minted>>,
    minted: AtomicU32,
}

impl fmt::Debug for JwtMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtMinter")
            .field("account", &self.account)
            .field("user", &self.user)
            .field("key", &self.key)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl JwtMinter {
    /// `lifetime` is how long each JWT is valid: more than zero, at most 59 minutes.
    pub fn new(
        account: &str,
        user: &str,
        key: KeyPair,
        lifetime: Duration,
    ) -> Result<Self, SnowflakeError> {
        if lifetime.is_zero() || lifetime > MAX_LIFETIME {
            return Err(SnowflakeError::Config(format!(
                "the JWT lifetime must be between 1 second and 59 minutes, not {lifetime:?}"
            )));
        }
        let account = jwt_account(account);
        if account.is_empty() {
            return Err(SnowflakeError::Config(
                "the account identifier is empty".into(),
            ));
        }
        let user = user.trim().to_uppercase();
        if user.is_empty() {
            return Err(SnowflakeError::Config("the user name is empty".into()));
        }
        Ok(Self {
            account,
            user,
            key,
            lifetime,
            cache: Mutex::new(None),
            minted: AtomicU32::new(0),
        })
    }

    /// `ACCOUNT.USER`, the `sub` claim.
    pub fn subject(&self) -> String {
        format!("{}.{}", self.account, self.user)
    }

    /// `ACCOUNT.USER.SHA256:<fingerprint>`, the `iss` claim.
    pub fn issuer(&self) -> String {
        format!("{}.{}", self.subject(), self.key.fingerprint())
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// How many JWTs were minted so far.
    pub fn minted(&self) -> u32 {
        self.minted.load(Ordering::Relaxed)
    }

    /// A JWT valid for at least a quarter of the lifetime more: the cached one, or a new one.
    pub fn token(&self) -> String {
        let now = SystemTime::now();
        let mut cache = self.cache.lock().expect("jwt cache lock");
        if let Some(m) = cache.as_ref()
            && now + self.lifetime / 4 < m.expires
        {
            return m.token.clone();
        }
        let m = self.mint(now);
        let token = m.token.clone();
        *cache = Some(m);
        token
    }

    /// Snowflake refused `refused`: mint a new JWT unless another request already replaced it.
    pub fn remint(&self, refused: &str) -> String {
        let mut cache = self.cache.lock().expect("jwt cache lock");
        if let Some(m) = cache.as_ref()
            && m.token != refused
        {
            return m.token.clone();
        }
        // RS256 is deterministic: a JWT minted in the same second as the refused one would be
        // the same JWT, so the new one is issued at least one second later.
        let not_before = cache.as_ref().map_or(0, |m| m.iat + 1);
        let m = self.mint_at(SystemTime::now(), not_before);
        let token = m.token.clone();
        *cache = Some(m);
        token
    }

    fn mint(&self, now: SystemTime) -> Minted {
        self.mint_at(now, 0)
    }

    fn mint_at(&self, now: SystemTime, not_before: u64) -> Minted {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .max(not_before);
        let exp = iat + self.lifetime.as_secs().max(1);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.issuer(),
            "sub": self.subject(),
            "iat": iat,
            "exp": exp,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
        let input = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign_rs256(input.as_bytes()));
        self.minted.fetch_add(1, Ordering::Relaxed);
        Minted {
            token: format!("{input}.{signature}"),
            iat,
            expires: UNIX_EPOCH + Duration::from_secs(exp),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;

    use super::*;

    /// One 2048-bit key per test binary (generation is slow in debug builds).
    pub(crate) fn test_key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
    }

    fn encrypted_pem(passphrase: &str) -> String {
        // PBES2 with PBKDF2-SHA256 and AES-256-CBC, what `openssl pkcs8 -topk8 -v2 aes256`
        // writes.
        let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
            2048,
            b"saltsalt",
            b"0123456789abcdef",
        )
        .unwrap();
        let der = test_key().to_pkcs8_der().unwrap();
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_bytes()).unwrap();
        let enc = info.encrypt_with_params(params, passphrase).unwrap();
        enc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .unwrap()
            .to_string()
    }

    #[test]
    fn plain_and_encrypted_keys_load_to_the_same_fingerprint() {
        let plain = test_key().to_pkcs8_pem(LineEnding::LF).unwrap();
        let a = KeyPair::from_pem(&plain, "plain.p8", None).unwrap();
        let b = KeyPair::from_pem(&encrypted_pem("s3cret pass"), "enc.p8", Some("s3cret pass"))
            .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(a.fingerprint().starts_with("SHA256:"));
        // base64 of 32 bytes is 44 characters.
        assert_eq!(a.fingerprint().len(), "SHA256:".len() + 44);
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("BEGIN") && shown.contains("plain.p8"),
            "{shown}"
        );
    }

    #[test]
    fn a_wrong_passphrase_is_one_clear_line() {
        let pem = encrypted_pem("right");
        let e = KeyPair::from_pem(&pem, "/keys/rsa_key.p8", Some("wrong")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the private key in /keys/rsa_key.p8 could not be decrypted: wrong passphrase?"
        );
        let e = KeyPair::from_pem(&pem, "/keys/rsa_key.p8", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the private key in /keys/rsa_key.p8: is encrypted and no passphrase was given"
        );
        let e = KeyPair::from_pem("not a key", "k.pem", None).unwrap_err();
        assert!(e.to_string().contains("holds no PEM private key"), "{e}");
    }

    #[test]
    fn a_des3_key_as_snowflakes_openssl_command_writes_it_opens() {
        // `openssl pkcs8 -topk8 -v2 des3`: PBES2, PBKDF2-HMAC-SHA256, DES-EDE3-CBC.
        use pkcs8::pkcs5::pbes2::{EncryptionScheme, Parameters, Pbkdf2Params};
        let params = Parameters {
            kdf: Pbkdf2Params::hmac_with_sha256(2048, b"saltsalt")
                .unwrap()
                .into(),
            encryption: EncryptionScheme::DesEde3Cbc { iv: b"12345678" },
        };
        let der = test_key().to_pkcs8_der().unwrap();
        let pem = pkcs8::PrivateKeyInfo::try_from(der.as_bytes())
            .unwrap()
            .encrypt_with_params(params, "des3 pass")
            .unwrap()
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .unwrap();
        let k = KeyPair::from_pem(&pem, "des3.p8", Some("des3 pass")).unwrap();
        assert_eq!(
            k.fingerprint(),
            fingerprint_of(&test_key().to_public_key()).unwrap()
        );
        assert!(matches!(
            KeyPair::from_pem(&pem, "des3.p8", Some("other")),
            Err(SnowflakeError::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn account_identifiers_follow_the_jwt_rules() {
        assert_eq!(jwt_account("xy12345"), "XY12345");
        assert_eq!(jwt_account("xy12345.us-east-1"), "XY12345");
        assert_eq!(jwt_account("xy12345.us-east-2.aws"), "XY12345");
        assert_eq!(jwt_account("myorg-myaccount"), "MYORG-MYACCOUNT");
        assert_eq!(
            jwt_account("myorg-myaccount.snowflakecomputing.com"),
            "MYORG-MYACCOUNT"
        );
        assert_eq!(jwt_account("xy12345-abcdef.global"), "XY12345");
    }

    #[test]
    fn jwts_carry_the_documented_claims_and_verify() {
        let key = KeyPair::from_key(test_key().clone(), "mem").unwrap();
        let fp = key.fingerprint().to_owned();
        let m = JwtMinter::new("myorg-acct", "svc_user", key, Duration::from_secs(3540)).unwrap();
        let t = m.token();
        assert_eq!(m.token(), t, "cached while far from expiry");
        assert_eq!(m.minted(), 1);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], format!("MYORG-ACCT.SVC_USER.{fp}"));
        assert_eq!(claims["sub"], "MYORG-ACCT.SVC_USER");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 3540);
        let sig =
            Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
        VerifyingKey::<Sha256>::new(test_key().to_public_key())
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        // Refused: a new one; refused again with the old one: the new one stays.
        let t2 = m.remint(&t);
        assert_ne!(t2, t);
        assert_eq!(m.remint(&t), t2);
        assert_eq!(m.minted(), 2);
    }

    #[test]
    fn jwts_are_reminted_close_to_expiry_and_lifetimes_are_bounded() {
        let key = || KeyPair::from_key(test_key().clone(), "mem").unwrap();
        assert!(JwtMinter::new("a", "u", key(), Duration::from_secs(3601)).is_err());
        assert!(JwtMinter::new("a", "u", key(), Duration::ZERO).is_err());
        // With a 1-second lifetime every token is within a quarter of its expiry.
        let m = JwtMinter::new("a", "u", key(), Duration::from_secs(1)).unwrap();
        m.token();
        std::thread::sleep(Duration::from_millis(1100));
        m.token();
        assert_eq!(m.minted(), 2);
    }
}
