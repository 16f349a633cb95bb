//! App and operator tokens: services store only hashes and compare them in constant time, so
//! neither a leaked config nor response timing gives a token away.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::TenantError;

/// What a service keeps of an app token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash {
    /// SHA-256 of the token, checked by every service.
    pub sha256: [u8; 32],
    /// `SHA1(SHA1(token))`, MySQL's `mysql_native_password` hash, for the query proxy.
    pub mysql_native: Option<[u8; 20]>,
}

/// Hashes a token for storage: SHA-256 and the `mysql_native_password` hash.
pub fn hash_token(token: &str) -> TokenHash {
    TokenHash {
        sha256: Sha256::digest(token.as_bytes()).into(),
        mysql_native: Some(Sha1::digest(Sha1::digest(token.as_bytes())).into()),
    }
}

/// A fresh app or operator token: 256 random bits from the OS as 64 hex characters.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl TokenHash {
    /// Whether `token` hashes to this entry, in time independent of where they differ.
    pub fn verify(&self, token: &str) -> bool {
        self.matches_sha256(&Sha256::digest(token.as_bytes()).into())
            .into()
    }

    /// Checks a `mysql_native_password` login: `response` is what the client sent for the
    /// 20-byte `nonce` (scramble) the server issued. False when there is no MySQL hash.
    pub fn verify_mysql_native(&self, nonce: &[u8], response: &[u8]) -> bool {
        let Some(stage2) = self.mysql_native else {
            return false;
        };
        if response.len() != 20 {
            return false;
        }
        // response = SHA1(token) XOR SHA1(nonce + stage2); recover SHA1(token) and hash it.
        let mask: [u8; 20] = Sha1::new()
            .chain_update(nonce)
            .chain_update(stage2)
            .finalize()
            .into();
        let mut stage1 = [0u8; 20];
        for (i, byte) in stage1.iter_mut().enumerate() {
            *byte = response[i] ^ mask[i];
        }
        let candidate: [u8; 20] = Sha1::digest(stage1).into();
        candidate[..].ct_eq(&stage2[..]).into()
    }

    pub(crate) fn matches_sha256(&self, digest: &[u8; 32]) -> Choice {
        self.sha256[..].ct_eq(&digest[..])
    }

    /// The `mysql_native` hash as MySQL prints it: `*` and 40 uppercase hex digits.
    pub fn mysql_native_string(&self) -> Option<String> {
        self.mysql_native
            .map(|h| format!("*{}", hex::encode_upper(h)))
    }
}

/// Shows only a prefix: enough to tell entries apart in logs.
impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHash")
            .field(
                "sha256",
                &format_args!("{}…", hex::encode(&self.sha256[..4])),
            )
            .field("mysql_native", &self.mysql_native.is_some())
            .finish()
    }
}

fn parse_sha256_hex(text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|_| format!("sha256 must be 64 hex digits, got {:?}", text))?;
    Ok(out)
}

fn parse_mysql_native(text: &str) -> Result<[u8; 20], String> {
    let bad = || format!("mysql_native must be '*' and 40 hex digits, got {text:?}");
    let digits = text.trim().strip_prefix('*').ok_or_else(bad)?;
    let mut out = [0u8; 20];
    hex::decode_to_slice(digits, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// A token entry as written in a tenants file: hashes, or (development only) the token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    sha256: Option<String>,
    mysql_native: Option<String>,
    token: Option<String>,
}

impl TryFrom<RawToken> for TokenHash {
    type Error = TenantError;

    fn try_from(raw: RawToken) -> Result<Self, TenantError> {
        match raw {
            RawToken {
                token: Some(token),
                sha256: None,
                mysql_native: None,
            } => {
                if token.is_empty() {
                    return Err(TenantError::InvalidToken("token is empty".into()));
                }
                Ok(hash_token(&token))
            }
            RawToken { token: Some(_), .. } => Err(TenantError::InvalidToken(
                "give either `token` or `sha256`/`mysql_native`, not both".into(),
            )),
            RawToken {
                sha256: Some(sha256),
                mysql_native,
                token: None,
            } => Ok(TokenHash {
                sha256: parse_sha256_hex(&sha256).map_err(TenantError::InvalidToken)?,
                mysql_native: mysql_native
                    .as_deref()
                    .map(parse_mysql_native)
                    .transpose()
                    .map_err(TenantError::InvalidToken)?,
            }),
            RawToken { sha256: None, .. } => Err(TenantError::InvalidToken(
                "a token entry needs `sha256` (and optionally `mysql_native`), or `token`".into(),
            )),
        }
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TokenHash::try_from(RawToken::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Always written as hashes, never as a plaintext token.
impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out {
            sha256: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            mysql_native: Option<String>,
        }
        Out {
            sha256: hex::encode(self.sha256),
            mysql_native: self.mysql_native_string(),
        }
        .serialize(s)
    }
}

/// The SHA-256 hashes of the operator tokens a service accepts (config: a list of hex strings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorTokens(Vec<[u8; 32]>);

impl OperatorTokens {
    /// Parses hex SHA-256 hashes, as listed in a service's config.
    pub fn from_hex_hashes(hashes: &[String]) -> Result<Self, TenantError> {
        hashes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                parse_sha256_hex(h).map_err(|reason| TenantError::InvalidOperatorHash {
                    index: i + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(OperatorTokens)
    }

    /// Hashes plaintext tokens (tests and development setups).
    pub fn from_tokens<S: AsRef<str>>(tokens: &[S]) -> Self {
        OperatorTokens(
            tokens
                .iter()
                .map(|t| hash_token(t.as_ref()).sha256)
                .collect(),
        )
    }

    /// Whether `token` is one of the operator tokens; compares against every entry, in constant
    /// time, whichever matches.
    pub fn verify(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let found = self
            .0
            .iter()
            .fold(Choice::from(0), |found, h| found | h[..].ct_eq(&digest[..]));
        found.into()
    }

    /// The hashes as hex strings, as a config lists them.
    pub fn hex_hashes(&self) -> Vec<String> {
        self.0.iter().map(hex::encode).collect()
    }

    /// True when no operator token is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many operator tokens are accepted.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Serialize for OperatorTokens {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(hex::encode))
    }
}

impl<'de> Deserialize<'de> for OperatorTokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hashes = Vec::<String>::deserialize(d)?;
        OperatorTokens::from_hex_hashes(&hashes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let h = hash_token("password");
        assert_eq!(
            h.mysql_native_string().unwrap(),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        assert_eq!(
            hex::encode(h.sha256),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }

    #[test]
    fn verify_accepts_only_the_token() {
        let token = generate_token();
        let h = hash_token(&token);
        assert!(h.verify(&token));
        assert!(!h.verify(""));
        assert!(!h.verify(&token[1..]));
        assert!(!h.verify(&format!("{token} ")));
    }

    #[test]
    fn generated_tokens_are_256_bit_hex_and_distinct() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn mysql_native_scramble() {
        let token = "s3cret-token";
        let h = hash_token(token);
        let nonce: Vec<u8> = (1..=20).collect();
        // What a MySQL client computes.
        let stage1: [u8; 20] = Sha1::digest(token.as_bytes()).into();
        let stage2: [u8; 20] = Sha1::digest(stage1).into();
        let mask: [u8; 20] = Sha1::new()
            .chain_update(&nonce)
            .chain_update(stage2)
            .finalize()
            .into();
        let response: Vec<u8> = stage1.iter().zip(mask).map(|(a, b)| a ^ b).collect();
        assert!(h.verify_mysql_native(&nonce, &response));
        let mut wrong = response.clone();
        wrong[7] ^= 1;
        assert!(!h.verify_mysql_native(&nonce, &wrong));
        assert!(!h.verify_mysql_native(&[0; 20], &response));
        assert!(!h.verify_mysql_native(&nonce, &[]));
        let no_mysql = TokenHash {
            mysql_native: None,
            ..h
        };
        assert!(!no_mysql.verify_mysql_native(&nonce, &response));
    }

    #[derive(Deserialize, Serialize, Debug)]
    struct W {
        tokens: Vec<TokenHash>,
    }

    #[test]
    fn toml_forms() {
        let text = r#"tokens = [
            { sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", mysql_native = "*2470c0c06dee42fd1618bb99005adca2ec9d1e19" },
            { sha256 = "5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF721D1542D8" },
            { token = "password" },
        ]"#;
        let w: W = toml::from_str(text).unwrap();
        assert!(w.tokens.iter().all(|t| t.verify("password")));
        assert_eq!(w.tokens[0], hash_token("password"));
        assert_eq!(w.tokens[1].mysql_native, None);
        assert_eq!(w.tokens[2], hash_token("password"));

        let printed = toml::to_string(&w).unwrap();
        assert!(!printed.contains("token = "), "{printed}");
        assert!(
            printed.contains("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
            "{printed}"
        );
        let back: W = toml::from_str(&printed).unwrap();
        assert_eq!(back.tokens, w.tokens);
    }

    #[test]
    fn toml_forms_refused() {
        let cases = [
            ("tokens = [{ sha256 = \"abc\" }]", "64 hex digits"),
            ("tokens = [{ sha256 = \"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\", mysql_native = \"2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19\" }]", "'*' and 40 hex"),
            ("tokens = [{ token = \"x\", sha256 = \"00\" }]", "not both"),
            ("tokens = [{ mysql_native = \"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19\" }]", "needs `sha256`"),
            ("tokens = [{ token = \"\" }]", "empty"),
            ("tokens = [{ sha265 = \"00\" }]", "unknown field `sha265`"),
        ];
        for (text, expected) in cases {
            let err = toml::from_str::<W>(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn operator_tokens() {
        let empty = OperatorTokens::default();
        assert!(empty.is_empty());
        assert!(!empty.verify("anything"));

        let hashes = vec![
            hex::encode(hash_token("op-one").sha256),
            hex::encode(hash_token("op-two").sha256),
        ];
        let ops = OperatorTokens::from_hex_hashes(&hashes).unwrap();
        assert_eq!(ops.len(), 2);
        assert!(ops.verify("op-one"));
        assert!(ops.verify("op-two"));
        assert!(!ops.verify("op-three"));
        assert_eq!(ops, OperatorTokens::from_tokens(&["op-one", "op-two"]));

        let err = OperatorTokens::from_hex_hashes(&[hashes[0].clone(), "zz".into()]).unwrap_err();
        assert!(err.to_string().contains("#2"), "{err}");

        #[derive(Deserialize, Serialize)]
        struct Cfg {
            operator_tokens: OperatorTokens,
        }
        let cfg: Cfg = toml::from_str(
            &toml::to_string(&Cfg {
                operator_tokens: ops.clone(),
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(cfg.operator_tokens, ops);
    }
}
