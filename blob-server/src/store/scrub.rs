//! Scrub: reads every stored content back, verifies each chunk's checksum and the whole
//! content's SHA-256 against its id, so bit rot is found before a client asks for the bytes.
//! Pages through the metadata with short read transactions (a long one would pin old pages
//! while writers keep committing) and paces itself to a byte rate. Corrupt content is
//! quarantined: reads of it fail until the same bytes are stored again.

use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};

use crate::store::meta::ContentMeta;
use crate::store::{ContentId, Error, Result, Store};

/// Content ids read per metadata transaction.
const PAGE: usize = 256;

/// What one scrub pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Contents read back whole.
    pub checked: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Contents whose bytes failed a checksum or whose digest differs from their id.
    pub corrupt: Vec<ContentId>,
    /// The pass stopped early because `stop` said so.
    pub interrupted: bool,
}

impl Store {
    /// Verifies every stored content, reading at most `bytes_per_sec` (0: unpaced); `stop` is
    /// polled between contents. Content deleted while the pass runs is skipped.
    pub fn scrub(&self, bytes_per_sec: u64, stop: &dyn Fn() -> bool) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        let started = Instant::now();
        let mut after: Option<[u8; 32]> = None;
        while !report.interrupted {
            let page = self.content_page(after.as_ref())?;
            let Some(last) = page.last() else { break };
            after = Some(last.0 .0);
            for (id, cm) in page {
                if stop() {
                    report.interrupted = true;
                    break;
                }
                match self.verify_content(&id, cm) {
                    Ok(()) => {}
                    Err(Error::NotFound) => continue,
                    Err(Error::Corrupt(detail)) => {
                        tracing::error!(%id, %detail, "scrub: stored content is corrupt");
                        report.corrupt.push(id);
                    }
                    Err(e) => return Err(e),
                }
                report.checked += 1;
                report.bytes += cm.size;
                if bytes_per_sec > 0 {
                    let due = Duration::from_secs_f64(report.bytes as f64 / bytes_per_sec as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait.min(Duration::from_secs(1)));
                    }
                }
            }
        }
        if !report.corrupt.is_empty() {
            self.quarantine(&report.corrupt)?;
        }
        Ok(report)
    }

    fn content_page(&self, after: Option<&[u8; 32]>) -> Result<Vec<(ContentId, ContentMeta)>> {
        let mut out = Vec::with_capacity(PAGE);
        self.content_scan()?.each(after, |id, cm| {
            out.push((id, cm));
            Ok(out.len() < PAGE)
        })?;
        Ok(out)
    }

    /// Reads `id` whole, checking every chunk and the digest.
    fn verify_content(&self, id: &ContentId, cm: ContentMeta) -> Result<()> {
        let mut reader = match self.open_reader(id, cm, 0..cm.size, None) {
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound)
            }
            r => r?,
        };
        let mut hasher = Context::new(&SHA256);
        while let Some(chunk) = reader.next_chunk()? {
            hasher.update(&chunk);
        }
        if hasher.finish().as_ref() != id.0 {
            return Err(Error::Corrupt("content digest differs from its id".into()));
        }
        Ok(())
    }
}
