//! A certificate's validity window read straight from its DER, without
//! parsing the rest. The server re-checks the validity of every request's
//! certificate (a resumed TLS session skips the handshake's check), and
//! a connection keeps only these two times: a full parse per connection
//! cost allocations the allocator kept (about 17 KiB per idle connection).

use std::time::{Duration, SystemTime};

use crate::der::{DerError, read_tlv};

/// `(notBefore, notAfter)` of the X.509 certificate `der`.
pub fn certificate_validity(der: &[u8]) -> Result<(SystemTime, SystemTime), DerError> {
    let (tag, certificate, _) = read_tlv(der)?;
    expect(tag, 0x30, "Certificate is not a SEQUENCE")?;
    let (tag, tbs, _) = read_tlv(certificate)?;
    expect(tag, 0x30, "TBSCertificate is not a SEQUENCE")?;
    let mut rest = tbs;
    // [0] version, optional.
    if rest.first() == Some(&0xa0) {
        rest = read_tlv(rest)?.2;
    }
    for what in ["serialNumber", "signature", "issuer"] {
        let (_, _, after) = read_tlv(rest).map_err(|_| DerError::Malformed(what))?;
        rest = after;
    }
    let (tag, validity, _) = read_tlv(rest)?;
    expect(tag, 0x30, "Validity is not a SEQUENCE")?;
    let (tag, not_before, rest) = read_tlv(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = read_tlv(rest)?;
    Ok((not_before, time(tag, not_after)?))
}

fn expect(tag: u8, wanted: u8, what: &'static str) -> Result<(), DerError> {
    if tag == wanted {
        Ok(())
    } else {
        Err(DerError::Malformed(what))
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), as RFC 5280 requires them.
fn time(tag: u8, text: &[u8]) -> Result<SystemTime, DerError> {
    let bad = || DerError::Malformed("time is not YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ");
    let (year_digits, expected_len) = match tag {
        0x17 => (2, 13),
        0x18 => (4, 15),
        _ => return Err(bad()),
    };
    if text.len() != expected_len || text.last() != Some(&b'Z') {
        return Err(bad());
    }
    let (year, rest) = text.split_at(year_digits);
    let year = digits(year).ok_or_else(bad)?;
    let year = match year_digits {
        2 if year >= 50 => 1900 + year,
        2 => 2000 + year,
        _ => year,
    };
    let field = |i: usize| rest.get(i..i + 2).and_then(digits);
    let (Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (field(0), field(2), field(4), field(6), field(8))
    else {
        return Err(bad());
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(u64::try_from(seconds).map_or(SystemTime::UNIX_EPOCH, |s| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }))
}

fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::CertificateInfo;

    fn certificate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn matches_the_full_parse_for_utc_and_generalized_times() {
        for (from, to) in [
            ((1975, 1, 1), (4096, 1, 1)),
            ((2000, 2, 29), (2049, 12, 31)),
            ((2024, 3, 1), (2050, 1, 1)),
            ((1950, 1, 1), (1999, 12, 31)),
        ] {
            let der = certificate(from, to);
            let full = CertificateInfo::parse(&der).unwrap().validity();
            assert_eq!(certificate_validity(&der).unwrap(), full, "{from:?} {to:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_certificate() {
        assert!(certificate_validity(&[]).is_err());
        assert!(certificate_validity(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
        let der = certificate((2024, 1, 1), (2025, 1, 1));
        for cut in [1, 10, 40, der.len() / 2] {
            assert!(
                certificate_validity(der.get(..cut).unwrap()).is_err(),
                "{cut}"
            );
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
