//! Audit exports: the records with their signed checkpoints as JSON
//! lines, and their verification offline against the server's pin,
//! opening no database. The first line names the format; each checkpoint
//! comes before the records it covers; the last line is the chain head at
//! export time.

use std::io::{BufRead, Write};

use pairgate_pki::SpkiPin;

use super::chain::{ChainVerifier, Checkpoint};
use super::checkpoints::Item;
use super::{AuditRecord, AuditVerification};
use crate::{Store, StoreError};

/// The format name on an export's first line.
pub const EXPORT_FORMAT: &str = "pairgate-audit-export/1";

/// One line of an export.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportLine {
    /// The first line.
    Header {
        /// [`EXPORT_FORMAT`].
        format: String,
        /// When exported (Unix ms).
        exported_at: i64,
    },
    /// A signed checkpoint.
    Checkpoint(Checkpoint),
    /// A record.
    Record(AuditRecord),
    /// The last line: the chain head when exported.
    Head {
        /// Its sequence number.
        seq: i64,
        /// Its hash.
        hash: String,
    },
}

fn write_line(out: &mut dyn Write, line: &ExportLine) -> Result<(), StoreError> {
    serde_json::to_writer(&mut *out, line)
        .map_err(|e| StoreError::Io(format!("writing the export: {e}")))?;
    out.write_all(b"\n")
        .map_err(|e| StoreError::Io(format!("writing the export: {e}")))
}

impl Store {
    /// Writes the whole audit log with its checkpoints to `out` as JSON
    /// lines; returns how many records. One page in memory.
    pub async fn export_audit(
        &self,
        out: &mut dyn Write,
        exported_at: i64,
    ) -> Result<i64, StoreError> {
        let (head_seq, head_hash) = self.audit_head().await?;
        write_line(
            out,
            &ExportLine::Header {
                format: EXPORT_FORMAT.into(),
                exported_at,
            },
        )?;
        let mut records = 0;
        self.walk(1, head_seq, |item| {
            let line = match item {
                Item::Checkpoint(c) => ExportLine::Checkpoint(c),
                Item::Record(r) => {
                    records += 1;
                    ExportLine::Record(r.clone())
                }
            };
            write_line(out, &line)
        })
        .await?;
        write_line(
            out,
            &ExportLine::Head {
                seq: head_seq,
                hash: head_hash,
            },
        )?;
        out.flush()
            .map_err(|e| StoreError::Io(format!("writing the export: {e}")))?;
        Ok(records)
    }
}

/// Verifies an export read from `input` against the server key `pin`:
/// the same checks as [`Store::verify_audit_anchored`]. A line that is not
/// part of the format is an error naming it.
pub fn verify_export(input: impl BufRead, pin: &SpkiPin) -> Result<AuditVerification, StoreError> {
    let mut v = ChainVerifier::full(Some(vec![*pin]));
    let mut head = None;
    for (index, line) in input.lines().enumerate() {
        let n = index + 1;
        let line = line.map_err(|e| StoreError::Io(format!("reading line {n}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ExportLine = serde_json::from_str(&line).map_err(|e| {
            StoreError::Invalid(format!("line {n} is not part of an audit export: {e}"))
        })?;
        match parsed {
            ExportLine::Header { format, .. } if n == 1 && format == EXPORT_FORMAT => {}
            ExportLine::Header { format, .. } => {
                return Err(StoreError::Invalid(format!(
                    "line {n}: unexpected header {format:?} (want {EXPORT_FORMAT:?} on line 1)"
                )));
            }
            _ if n == 1 => {
                return Err(StoreError::Invalid(
                    "line 1 is not an audit export header".into(),
                ));
            }
            ExportLine::Checkpoint(c) => v.checkpoint(c),
            ExportLine::Record(r) => v.record(&r),
            ExportLine::Head { seq, hash } => head = Some((seq, hash)),
        }
    }
    Ok(match head {
        Some((seq, hash)) => v.finish(seq, &hash),
        None => {
            let mut out = v.finish_file();
            if out.first_broken.is_none() {
                out.first_broken = Some(out.records + 1);
                out.reason = Some("the export ends without its head line: it was cut short".into());
            }
            out
        }
    })
}
