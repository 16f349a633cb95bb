//! The connection phase: Initial Handshake v10, SSLRequest, HandshakeResponse41,
//! AuthSwitchRequest, and the `mysql_native_password` scramble. Both directions: the proxy is
//! the server for apps and a client of the backend.

use sha1::{Digest, Sha1};

use super::codec::Reader;
use super::{caps, put_lenenc_int, put_lenenc_str, ProtocolError};

/// `mysql_native_password`: the only plugin the proxy authenticates apps with.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// `caching_sha2_password`: accepted inside TLS only (full authentication, the token in clear
/// over the encrypted link); without TLS the client is switched to `mysql_native_password`.
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// Most connection attributes kept from a handshake (the rest are ignored).
const MAX_ATTRS: usize = 64;

/// Initial Handshake v10 as the proxy (or the backend) sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    /// The 20-byte scramble (nonce).
    pub scramble: [u8; 20],
    pub capabilities: u32,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Greeting {
    /// Encodes the greeting as a packet payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.push(10);
        out.extend_from_slice(self.server_version.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        out.extend_from_slice(&self.scramble[..8]);
        out.push(0);
        out.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        out.push(21);
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&self.scramble[8..]);
        out.push(0);
        out.extend_from_slice(self.auth_plugin.as_bytes());
        out.push(0);
        out
    }

    /// Decodes a server's greeting (the backend's, for the proxy's own login).
    pub fn decode(payload: &[u8]) -> Result<Greeting, ProtocolError> {
        let mut r = Reader::new(payload, "server greeting");
        if r.u8()? != 10 {
            return Err(ProtocolError::malformed(
                "server greeting (protocol version)",
            ));
        }
        let server_version = String::from_utf8_lossy(r.nul_str(false)?).into_owned();
        let connection_id = r.u32()?;
        let mut scramble = [0u8; 20];
        scramble[..8].copy_from_slice(r.bytes(8)?);
        r.u8()?;
        let low = u32::from(r.u16()?);
        let collation = r.u8()?;
        let status = r.u16()?;
        let high = u32::from(r.u16()?);
        let capabilities = low | high << 16;
        let data_len = usize::from(r.u8()?);
        r.bytes(10)?;
        let part2 = data_len.saturating_sub(8).max(13);
        let rest = r.bytes(part2)?;
        if rest.len() < 12 {
            return Err(ProtocolError::malformed("server greeting (scramble)"));
        }
        scramble[8..].copy_from_slice(&rest[..12]);
        let auth_plugin = if capabilities & caps::PLUGIN_AUTH != 0 {
            String::from_utf8_lossy(r.nul_str(true)?).into_owned()
        } else {
            NATIVE_PASSWORD.to_owned()
        };
        Ok(Greeting {
            server_version,
            connection_id,
            scramble,
            capabilities,
            collation,
            status,
            auth_plugin,
        })
    }
}

/// What a client sends in answer to the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// A short HandshakeResponse asking to switch to TLS first.
    SslRequest { capabilities: u32, collation: u8 },
    /// A full HandshakeResponse41.
    Response(HandshakeResponse),
}

/// HandshakeResponse41.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
    pub username: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<String>,
    pub attributes: Vec<(String, String)>,
}

impl ClientHello {
    /// Decodes the client's first packet.
    pub fn decode(payload: &[u8]) -> Result<ClientHello, ProtocolError> {
        let mut r = Reader::new(payload, "handshake response");
        let capabilities = r.u32()?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(ProtocolError::malformed(
                "handshake response (pre-4.1 clients are not supported)",
            ));
        }
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        r.bytes(23)?;
        if r.is_empty() && capabilities & caps::SSL != 0 {
            return Ok(ClientHello::SslRequest {
                capabilities,
                collation,
            });
        }
        let username = r.nul_str(false)?.to_vec();
        let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_str()?.to_vec()
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.bytes(n)?.to_vec()
        } else {
            r.nul_str(true)?.to_vec()
        };
        let database = if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            Some(r.nul_str(true)?.to_vec())
        } else {
            None
        };
        let auth_plugin = if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            Some(String::from_utf8_lossy(r.nul_str(true)?).into_owned())
        } else {
            None
        };
        let mut attributes = Vec::new();
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            let len = usize::try_from(r.lenenc_int()?)
                .map_err(|_| ProtocolError::malformed("connection attributes"))?;
            let mut a = Reader::new(r.bytes(len)?, "connection attributes");
            while !a.is_empty() {
                let k = a.lenenc_str()?;
                let v = a.lenenc_str()?;
                if attributes.len() < MAX_ATTRS {
                    attributes.push((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    ));
                }
            }
        }
        Ok(ClientHello::Response(HandshakeResponse {
            capabilities,
            max_packet,
            collation,
            username,
            auth_response,
            database,
            auth_plugin,
            attributes,
        }))
    }
}

impl HandshakeResponse {
    /// Encodes the response (the proxy logging in to the backend).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.capabilities.to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&[0; 23]);
        out.extend_from_slice(&self.username);
        out.push(0);
        if self.capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_str(&self.auth_response, &mut out);
        } else {
            out.push(self.auth_response.len() as u8);
            out.extend_from_slice(&self.auth_response);
        }
        if self.capabilities & caps::CONNECT_WITH_DB != 0 {
            out.extend_from_slice(self.database.as_deref().unwrap_or_default());
            out.push(0);
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            out.extend_from_slice(
                self.auth_plugin
                    .as_deref()
                    .unwrap_or(NATIVE_PASSWORD)
                    .as_bytes(),
            );
            out.push(0);
        }
        if self.capabilities & caps::CONNECT_ATTRS != 0 {
            let mut attrs = Vec::new();
            for (k, v) in &self.attributes {
                put_lenenc_str(k.as_bytes(), &mut attrs);
                put_lenenc_str(v.as_bytes(), &mut attrs);
            }
            put_lenenc_int(attrs.len() as u64, &mut out);
            out.extend_from_slice(&attrs);
        }
        out
    }
}

/// AuthSwitchRequest: asks the client to answer `plugin` with fresh `data`.
pub fn encode_auth_switch(plugin: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + data.len() + 1);
    out.push(0xFE);
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out.extend_from_slice(data);
    out.push(0);
    out
}

/// Decodes an AuthSwitchRequest (0xFE) from the backend: plugin name and its data (the
/// trailing NUL of the scramble removed).
pub fn decode_auth_switch(payload: &[u8]) -> Result<(String, Vec<u8>), ProtocolError> {
    let mut r = Reader::new(payload, "auth switch request");
    if r.u8()? != 0xFE {
        return Err(ProtocolError::malformed("auth switch request"));
    }
    let plugin = String::from_utf8_lossy(r.nul_str(true)?).into_owned();
    let mut data = r.rest().to_vec();
    if data.last() == Some(&0) {
        data.pop();
    }
    Ok((plugin, data))
}

/// The `mysql_native_password` answer to `scramble` for `password`:
/// `SHA1(password) XOR SHA1(scramble ‖ SHA1(SHA1(password)))`; empty for an empty password.
pub fn native_password_response(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1: [u8; 20] = Sha1::digest(password).into();
    let stage2: [u8; 20] = Sha1::digest(stage1).into();
    let mask: [u8; 20] = Sha1::new()
        .chain_update(scramble)
        .chain_update(stage2)
        .finalize()
        .into();
    stage1.iter().zip(mask).map(|(a, b)| a ^ b).collect()
}

/// A fresh 20-byte scramble: random printable bytes without NUL or `$`, as MySQL makes them.
pub fn new_scramble(rng: &mut impl rand::RngCore) -> [u8; 20] {
    let mut s = [0u8; 20];
    rng.fill_bytes(&mut s);
    for b in &mut s {
        *b = 0x21 + (*b % 0x5C); // '!'..='|', never NUL, never '$'
        if *b == b'$' {
            *b = b'#';
        }
    }
    s
}

/// Whether a handshake collation id is a UTF-8 one (utf8mb3 or utf8mb4), the only connection
/// character sets the policy can read safely.
pub fn is_utf8_collation(id: u8) -> bool {
    matches!(id, 33 | 45 | 46 | 76 | 83 | 192..=215 | 223..=247 | 255)
}
